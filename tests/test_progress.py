"""Progress: bars on a terminal, readable lines (no carriage return) in logs, chosen by --progress."""

import logging
import subprocess
import sys

import pytest

from wakd.progress import Progress, StepProgress


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.INFO)
    return caplog


def test_off_a_terminal_steps_log_lines_and_image_loops_stay_quiet(monkeypatch, records, capsys):
    monkeypatch.delenv("WAKD_PROGRESS", raising=False)  # auto; stderr is captured, not a terminal
    steps = StepProgress(20, "epoch 1/2 train")
    for i in range(20):
        steps.update(1.0 / (i + 1))
    steps.close()
    lines = [r.getMessage() for r in records.records]
    assert len(lines) == 10 and lines[0].startswith("epoch 1/2 train: step 2/20, loss 0.7500, ")
    assert "ETA" in lines[0] and lines[-1].startswith("epoch 1/2 train: step 20/20")
    records.clear()
    with Progress(100, "mining: database", "img", quiet_off_terminal=True) as bar:
        bar.update(60), bar.update(40)
    assert records.records == [] and "\r" not in capsys.readouterr().err


def test_lines_bar_and_off_as_asked(monkeypatch, records, capsys):
    monkeypatch.setenv("WAKD_PROGRESS", "lines")
    with Progress(100, "validation: queries", "img", quiet_off_terminal=True) as bar:
        for _ in range(4):
            bar.update(25)
    assert [r.getMessage().split(",")[0] for r in records.records] == [
        f"validation: queries: img {n}/100" for n in (25, 50, 75, 100)]
    assert "\r" not in capsys.readouterr().err
    monkeypatch.setenv("WAKD_PROGRESS", "bar")
    with Progress(10, "synth", "img") as bar:
        bar.update(10)
    assert "synth" in capsys.readouterr().err
    records.clear()
    monkeypatch.setenv("WAKD_PROGRESS", "off")
    steps = StepProgress(10, "epoch 1/1 train")
    for _ in range(10):
        steps.update(0.5)
    assert records.records == [] and capsys.readouterr().err == ""


def test_a_command_logged_to_a_file_has_no_carriage_return(tiny_city, tmp_path):
    """What SLURM keeps: stderr of a real command to a file, by default and with --progress lines."""
    cmd = [sys.executable, "-m", "wakd", "extract", "--arch", "mobilenetv3_small", "--num-clusters", "4",
           "--dataset", "synthetic", "--root", str(tiny_city), "--split", "val", "--size", "48x64", "--workers", "0",
           "--precise-bn", "0"]
    for extra, expect_lines in (([], False), (["--progress", "lines"], True)):
        log = tmp_path / "stderr.log"
        with open(log, "w") as err:
            rc = subprocess.run([*cmd[:3], *extra, *cmd[3:], "--out", str(tmp_path / f"d{len(extra)}.h5")],
                                stderr=err, stdout=subprocess.DEVNULL).returncode
        text = log.read_text()
        assert rc == 0 and "\r" not in text, text[-500:]
        assert (": img " in text) == expect_lines, text[-500:]
