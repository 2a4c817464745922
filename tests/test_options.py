"""Each option is declared once (a field of its stage's dataclass): the command line, the checks
and the config schema follow from it; cli.py only parses and calls; stage fingerprints are the
closure of what a stage imports."""

import ast
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wakd.cli import build_parser, main, parse_options
from wakd.fingerprint import fingerprint, stage_modules
from wakd.options import option_fields
from wakd.stages import COMMANDS, STAGES
from wakd.stages.distill import DistillConfig
from wakd.stages.train import TrainConfig
from wakd.utils import WakdError

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--arch", "resnet18", "--dataset", "synthetic", "--out-dir", "x"]


def _subparser(command: str):
    parser = build_parser(command.split())
    action = next(a for a in parser._actions if a.dest == "command")
    sub = action.choices[command.split()[0]]
    if " " in command:
        sub = next(a for a in sub._actions if a.dest.endswith("_command")).choices[command.split()[1]]
    return sub


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_line_option_is_a_dataclass_field(command):
    cls, run = command.load()
    dests = {a.dest for a in _subparser(command.name)._actions if a.dest != "help"}
    assert dests == set(option_fields(cls))
    assert callable(run)


def test_a_new_field_is_a_new_option(monkeypatch):
    """Adding an option is adding a field: the parser, the defaults and the checks follow."""
    import wakd.stages.train as train_module
    from wakd.options import option

    @dataclasses.dataclass(kw_only=True)
    class Extended(TrainConfig):
        warmup_epochs: int = option(2, "epochs of linear warm-up", low=0)

    monkeypatch.setattr(train_module, "TrainConfig", Extended)
    cfg = parse_options("train", [*TRAIN, "--warmup-epochs", "3"])
    assert cfg.warmup_epochs == 3 and parse_options("train", TRAIN).warmup_epochs == 2
    with pytest.raises(WakdError, match="--warmup-epochs -1: expected a value >= 0"):
        parse_options("train", [*TRAIN, "--warmup-epochs", "-1"])


def test_defaults_come_from_the_dataclass():
    cfg = parse_options("train", TRAIN)
    assert cfg == TrainConfig(arch="resnet18", dataset="synthetic", out_dir="x")
    assert cfg.batch_size == 16 and cfg.split == "train" and cfg.loss == "triplet" and cfg.temperature is None
    student = parse_options("distill", [*TRAIN, "--teacher", "t.pth.tar"])
    assert student.loss == "sare_ind" and student.temperature == 0.07 and student.kd_weight == 100.0
    assert parse_options("distill", [*TRAIN, "--teacher", "t", "--temperature", "0"]).temperature is None
    assert parse_options("train", [*TRAIN, "--size", "96x128"]).size == (96, 128)
    assert parse_options("evaluate", ["--descriptors", "d", "--model", "m", "--out", "o", "--recall-values", "1",
                                      "5"]).recall_values == (1, 5)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size 0: expected a value >= 1"),
    (["--workers", "-1"], "--workers -1: expected a value >= 0"),
    (["--num-clusters", "0"], "--num-clusters 0: expected a value >= 1"),
    (["--select-metric", "R@7"], "invalid choice: 'R@7'"),
    (["--size", "97x128"], "multiples of 8"),
    (["--neg-num", "0"], "--neg-num 0: expected a value >= 1"),
    (["--lr", "nan"], "--lr nan: expected a finite number"),
    (["--loss", "sare_ind", "--margin", "0.2"], "margin"),
])
def test_bad_training_options_are_refused_before_any_work(args, message):
    with pytest.raises(WakdError, match=message.replace("(", r"\(")):
        parse_options("train", [*TRAIN, *args])


@pytest.mark.parametrize("argv, message", [
    (["pca", "--arch", "resnet18", "--dataset", "synthetic", "--out", "p.h5", "--dim", "0"], "--dim 0"),
    (["evaluate", "--descriptors", "d", "--model", "m", "--out", "o.csv", "--recall-values", "-1"],
     "--recall-values -1"),
    (["cluster", "--arch", "resnet18", "--dataset", "synthetic", "--out", "c.h5", "--precise-bn", "-1"],
     "--precise-bn -1"),
])
def test_bad_options_exit_2_with_one_line_and_nothing_written(tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_options_are_declared_once_not_in_the_schema():
    """The config schema declares no training option's type, choices or bounds: the dataclasses do,
    and the pipeline parses every training block with the command's parser (test_snakemake_layout:
    a bad value is refused at planning, named). The network block names fields too."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    train = schema["definitions"]["train"]
    assert "properties" not in train and train["type"] == "object"
    fields = option_fields(DistillConfig)
    model = schema["definitions"]["model"]["properties"]
    assert set(model["arch_options"]["properties"]) <= set(fields)
    assert set(model["arch"]["enum"]) == set(fields["arch"].metadata["choices"])


def test_cli_holds_no_stage_logic():
    tree = ast.parse((ROOT / "wakd/cli.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "wakd", "wakd.options", "wakd.stages", "wakd.utils"}
    assert len((ROOT / "wakd/cli.py").read_text().splitlines()) < 180  # CosPlace: no file over ~180 lines


def test_python_dash_m_wakd():
    res = subprocess.run([sys.executable, "-m", "wakd", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("wakd ")


def _package_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "wakd"
    shutil.copytree(ROOT / "wakd", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_fingerprints_follow_exactly_what_a_stage_runs(tmp_path):
    pkg = _package_copy(tmp_path)

    def prints():
        return {(s, d): fingerprint(s, pkg, d) for s in STAGES for d in ((), ("synthetic",), ("tokyo247",))}

    before = prints()
    # a loader the synthetic city does not use: nothing on the city reruns
    (pkg / "data/tokyo.py").write_text((pkg / "data/tokyo.py").read_text() + "\n\ndef unused():\n    return 1\n")
    after = prints()
    assert all(after[k] == before[k] for k in before if "tokyo247" not in k[1])
    assert after["train", ("tokyo247",)] != before["train", ("tokyo247",)]
    # docstrings and comments are not code
    _edit(pkg / "stages/train.py", '"""``wakd train``:', '"""``wakd train`` (edited docstring):')
    _edit(pkg / "training/loop.py", "import csv\n", "import csv  # a comment\n")
    assert prints() == after
    # the distillation code reruns distillation only
    _edit(pkg / "training/distill.py", "SOFT_TEMPERATURE = 0.07", "SOFT_TEMPERATURE = 0.05")
    changed = {k[0] for k, v in prints().items() if v != after[k]}
    assert changed == {"distill"}
    # the stage modules hold what each stage runs
    files = {p.relative_to(pkg).as_posix() for p in stage_modules("pca", pkg, ("synthetic",))}
    assert {"stages/pca.py", "models/build.py", "models/pca.py", "data/synthetic.py"} <= files
    assert "data/tokyo.py" not in files and "cli.py" not in files
    # the training stage's lazily imported loop is its code too
    files = {p.relative_to(pkg).as_posix() for p in stage_modules("train", pkg, ("synthetic",))}
    assert {"stages/train.py", "training/loop.py", "losses.py", "models/regions.py"} <= files


def test_torch_free_names_mirror_the_code():
    """The names the options use without importing torch are those of the code that uses them."""
    from wakd.loss_names import LOSS_NAMES
    from wakd.losses import LOSSES
    from wakd.models import PRECISE_BN_IMAGES, REGION_LAYOUTS
    from wakd.models.bn import DEFAULT_IMAGES
    from wakd.models.regions import REGIONS

    assert tuple(LOSSES) == LOSS_NAMES and set(REGIONS) == set(REGION_LAYOUTS)
    assert DEFAULT_IMAGES == PRECISE_BN_IMAGES == TrainConfig.__dataclass_fields__["precise_bn"].default
