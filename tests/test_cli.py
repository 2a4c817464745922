import json
import subprocess
import sys

import pytest

from wakd.cli import main


def run_wakd(*args):
    return subprocess.run([sys.executable, "-m", "wakd", *args], capture_output=True, text=True)


def test_help_is_real():
    out = run_wakd("--help")
    assert out.returncode == 0
    for cmd in ("data", "synth", "synth-preview"):
        assert cmd in out.stdout
    out = run_wakd("data", "inspect", "--help")
    assert out.returncode == 0 and "--dataset" in out.stdout and "tokyoTM" in out.stdout


def test_inspect_prints_json(pitts_root, capsys):
    assert main(["data", "inspect", "--dataset", "pitts30k", "--split", "test", "--root", str(pitts_root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "pitts30k" and info["split"] == "test"
    assert (info["num_db"], info["num_queries"], info["queries_with_positive"]) == (4, 3, 2)
    assert info["mean_positives_per_query"] == pytest.approx(4 / 3)
    assert info["pos_dist_thr"] == 25.0


def test_inspect_broken_exits_non_zero(pitts_root):
    (pitts_root / "pitts/raw/Pittsburgh/queries/000/000000_pitch1_yaw3.jpg").unlink()
    out = run_wakd("data", "inspect", "--dataset", "pitts30k", "--root", str(pitts_root))
    assert out.returncode == 2
    assert "000000_pitch1_yaw3.jpg" in out.stderr and "absent" in out.stderr
    assert out.stdout == ""


def test_inspect_unknown_dataset_exits_non_zero(tmp_path):
    out = run_wakd("data", "inspect", "--dataset", "pitts", "--root", str(tmp_path))
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_synth_bad_size(tmp_path):
    out = run_wakd("synth", "--out", str(tmp_path / "c"), "--preset", "tiny", "--size", "100xabc")
    assert out.returncode == 2 and "--size '100xabc'" in out.stderr
    assert not (tmp_path / "c").exists()
