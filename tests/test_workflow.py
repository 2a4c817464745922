"""The Snakemake pipeline on the tiny synthetic city: a full run, then exact invalidation.

The repository (Snakefile, workflow/, config/, .test/, wakd/) is copied to a temporary folder with the
tiny config (.test/config/config.yaml, written there as config/tiny.yaml); the chain runs there once,
then each change below is made to the copy and ``snakemake -n`` must plan exactly the stages it
invalidates (code fingerprints, config params), and nothing else.
"""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import slurm_cluster_possible, tiny_workflow_config, workflow_copy


def _snakemake(repo: Path, *args: str) -> subprocess.CompletedProcess:
    # --configfile takes several files: targets and other options go before it
    cmd = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "config/tiny.yaml"]
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True)


def planned(repo: Path) -> dict[str, int]:
    """``{rule: jobs}`` that ``snakemake -n`` plans (``all`` left out)."""
    res = _snakemake(repo, "-n")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = res.stdout + res.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    return {rule: int(n) for rule, n in jobs.items() if rule not in ("all", "total")}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    repo = workflow_copy(tmp_path_factory.mktemp("wf") / "repo", tiny_workflow_config())
    res = _snakemake(repo)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return repo


def test_pipeline_runs_end_to_end(pipeline):
    table = pd.read_csv(pipeline / "results/synthetic_recall.csv")
    models = set(table["model"])
    assert {"teacher_init-resnet18", "teacher-resnet18", "student_kd-mobilenetv3_small",
            "student_nokd-mobilenetv3_small", "thumbnail"} <= models
    assert table[["R@1", "R@5"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (pipeline / "results/synthetic_recall.png").stat().st_size > 0
    steps = pd.read_csv(pipeline / "results/train/synthetic/student_nokd/steps.csv")
    assert (steps["loss"] == steps["hard_loss"]).all()  # the ablation trains without KD
    assert planned(pipeline) == {}


def _provenance(path: Path) -> dict:
    """The provenance record an output carries: HDF5 attribute, checkpoint entry, JSON key, or
    the declared ``.info.json`` beside a CSV."""
    import json

    import h5py
    import torch

    if path.suffix == ".hdf5":
        with h5py.File(path) as f:
            return json.loads(f.attrs["provenance"])
    if path.name.endswith(".pth.tar"):
        return torch.load(path, weights_only=True)["provenance"]
    if path.suffix == ".csv":
        return json.loads(Path(f"{path}.info.json").read_text())
    data = json.loads(path.read_text())
    return data.get("provenance", data)


def test_every_stage_records_provenance(pipeline):
    outputs = ["results/synthetic/inspect_test.json", "results/synthetic_baseline_recall.csv",
               "results/clusters/resnet18-inputnorminstance_synthetic_8_desc_cen.hdf5",
               "results/train/synthetic/teacher/model_best.pth.tar",
               "results/train/synthetic/student_kd/checkpoint.pth.tar",
               "results/descriptors/student_kd_synthetic_test.hdf5",
               "results/synthetic/student_kd_test_predictions.hdf5",
               "results/synthetic/student_kd_test_recall.csv", "results/synthetic_recall.csv",
               "resources/synthetic/tiny-seed0/synth_info.json"]
    for rel in outputs:
        info = _provenance(pipeline / rel)
        assert {"config", "packages", "git_commit", "date"} <= set(info), rel
        assert "torch" in info["packages"], rel
    assert _provenance(pipeline / outputs[4])["config"]["kd_weight"] == 100.0


def test_no_undeclared_files(pipeline):
    """Everything the pipeline wrote under results/ is a declared output (Snakemake lists the files
    of `log:` and `benchmark:` directives as untracked: they are declared too)."""
    res = _snakemake(pipeline, "--list-untracked")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = (res.stdout + res.stderr).splitlines()
    assert any(line.startswith("results/benchmarks/") for line in lines)  # the listing is what we think it is
    untracked = [line for line in lines if line.startswith("results/")
                 and not line.startswith(("results/logs/", "results/benchmarks/"))]
    assert untracked == []


def test_report_holds_the_recall_table_and_figures(pipeline):
    res = _snakemake(pipeline, "--report", "report.html")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    html = (pipeline / "report.html").read_text()
    assert "synthetic_recall.csv" in html and "synthetic_recall.png" in html
    assert "student_kd_test_predictions.png" in html
    for name in ("student_kd_test_map.png", "curves.png", "preview.png", "Maps", "Training and distillation",
                 "The city", "Evaluation per condition"):
        assert name in html, name


def test_ablation_target_tabulates_every_run(pipeline):
    """results/synthetic_ablation.csv on the tiny city (one city, one seed, two of the variants: the no-KD
    student and the authors' WAKD setup, distilled from it in two generations): one row per (variant,
    rule, condition), whose means are the runs' own recall CSVs; a new variant reruns only its own jobs."""
    path = pipeline / "config/config.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    variants = cfg["ablation"]["variants"]
    kept = ("student_nokd", "student_wakd_sfrs")
    cfg["ablation"].update(cities=[0], seeds=[0], variants={k: variants[k] for k in kept})
    path.write_text(yaml.safe_dump(cfg))
    # the tiny config's overrides are merged into the variants: keep only those of the kept ones
    tiny = pipeline / "config/tiny.yaml"
    tiny_original = tiny.read_text()
    tiny_cfg = yaml.safe_load(tiny_original)
    tiny_cfg["ablation"]["variants"] = {k: v for k, v in tiny_cfg["ablation"]["variants"].items() if k in kept}
    tiny.write_text(yaml.safe_dump(tiny_cfg))
    try:
        res = _snakemake(pipeline, "results/synthetic_ablation.csv")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
        table = pd.read_csv(pipeline / "results/synthetic_ablation.csv")
        arms = ["teacher_init", "teacher", "student_init", "student_nokd", "student_wakd_sfrs"]
        assert list(dict.fromkeys(table["variant"]))[:3] == arms[:3] and set(table["variant"]) == set(arms)
        for arm in arms:
            own = pd.read_csv(pipeline / f"results/ablation/city0/seed0/{arm}_test_recall.csv")
            assert set(own["model"]) == {f"{arm}@city0-seed0"}
            merged = own.merge(table[table["variant"] == arm], on=["rule", "condition"])
            assert len(merged) == len(own) and (merged["runs"] == 1).all()
            assert (merged["R@1"] - merged["R@1_mean"]).abs().max() < 1e-6
        run = pipeline / "results/ablation/city0/seed0"
        steps = pd.read_csv(run / "student_wakd_sfrs/steps.csv")
        assert (steps["gshare_kd_rank"] == 0).all() and (steps["gshare_kd_vlad"] > 0).all()
        assert list(pd.read_csv(run / "student_wakd_sfrs/history.csv")["generation"]) == [0, 1]
        assert (steps[steps["epoch"] == 1]["soft_loss"] > 0).all()
        log = (pipeline / "results/logs/ablation/distill_student_wakd_sfrs_city0_seed0.log").read_text()
        assert f"every generation starts from {run.relative_to(pipeline)}/student_nokd/model_best.pth.tar" in log
        cfg["ablation"]["variants"]["student_gram_att"] = {"kd_weight": 100.0, "kd_terms": ["att"], "rank_weight": 0.0}
        path.write_text(yaml.safe_dump(cfg))
        res = _snakemake(pipeline, "-n", "results/synthetic_ablation.csv")
        jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", (res.stdout + res.stderr).split("Job stats:", 1)[1], flags=re.M))
        assert {k: int(v) for k, v in jobs.items() if k != "total"} == {
            "ablation_student": 1, "ablation_extract": 1, "ablation_evaluate": 1, "ablation_table": 1}
    finally:
        path.write_text(original)
        tiny.write_text(tiny_original)


def _edit(path: Path, text: str = "\n_EDITED_BY_TEST_WORKFLOW = 1\n"):
    """Append code (by default; comments and docstrings are not code) to a module; returns the undo."""
    original = path.read_text()
    path.write_text(original + text)
    return lambda: path.write_text(original)


def test_editing_what_the_run_does_not_run_reruns_nothing(pipeline):
    """A loader the city does not use (wakd/data/tokyo.py), a comment, a docstring: nothing reruns."""
    utils = pipeline / "wakd/utils.py"
    original = utils.read_text()
    utils.write_text(original.replace('"""', '"""Edited docstring. ', 1))
    undo = [_edit(pipeline / "wakd/data/tokyo.py"), _edit(pipeline / "wakd/stages/train.py", "\n# a comment\n"),
            lambda: utils.write_text(original)]
    try:
        plan = planned(pipeline)
    finally:
        for u in undo:
            u()
    assert plan == {}


def test_editing_distillation_code_reruns_distillation_onward(pipeline):
    undo = _edit(pipeline / "wakd/models/attention.py")
    try:
        assert planned(pipeline) == {"distill_student": 2, "pca": 2, "extract": 2, "evaluate": 2,
                                     "summarize": 1, "curves": 1}
    finally:
        undo()
    assert planned(pipeline) == {}


def test_editing_evaluation_code_reruns_evaluation_only(pipeline):
    undo = _edit(pipeline / "wakd/stages/evaluate.py")
    try:
        assert planned(pipeline) == {"evaluate": 4, "summarize": 1}
    finally:
        undo()


def test_editing_training_code_reruns_teacher_and_students(pipeline):
    undo = _edit(pipeline / "wakd/losses.py")
    try:
        plan = planned(pipeline)
    finally:
        undo()
    assert plan == {"train_teacher": 1, "distill_student": 2, "pca": 3, "extract": 3, "evaluate": 3,
                    "summarize": 1, "curves": 1}


def _with_config(repo: Path, change) -> dict[str, int]:
    path = repo / "config/tiny.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    change(cfg["models"]["synthetic"])
    path.write_text(yaml.safe_dump(cfg))
    try:
        return planned(repo)
    finally:
        path.write_text(original)


def test_kd_weight_reruns_the_distilled_student_only(pipeline):
    plan = _with_config(pipeline, lambda m: m["student"]["train"].update(kd_weight=50.0))
    # the no-KD ablation runs with kd_weight 0 whatever the config says
    assert plan == {"distill_student": 1, "pca": 1, "extract": 1, "evaluate": 1, "summarize": 1, "curves": 1}


def test_teacher_backbone_reruns_everything_downstream(pipeline):
    plan = _with_config(pipeline, lambda m: m["teacher"].update(arch="resnet50"))
    assert plan == {"cluster": 1, "train_teacher": 1, "distill_student": 2, "pca": 3, "extract": 4,
                    "evaluate": 4, "summarize": 1, "curves": 1}


def test_real_benchmark_fails_fast_without_data_then_plans_the_chain(tmp_path):
    from conftest import make_pitts_root

    cfg = tiny_workflow_config()
    cfg["data_root"] = str(tmp_path / "data")
    cfg["models"]["benchmark"] = {"teacher": {"arch": "vgg16", "weights": ""},
                                  "student": {"arch": "mobilenetv3_large", "weights": ""}}
    repo = workflow_copy(tmp_path / "repo", cfg)
    res = _snakemake(repo, "-n", "results/pitts250k_recall.csv")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "pitts250k is not in the data root" in out and "pitts250k_test.mat not found" in out
    assert "Put the files under" in out
    for split in ("train", "val", "test"):
        make_pitts_root(tmp_path / "data", "30k", split)
    make_pitts_root(tmp_path / "data", "250k", "test")
    res = _snakemake(repo, "-n", "results/pitts250k_recall.csv")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    plan = dict(re.findall(r"^(\w+)\s+(\d+)$", (res.stdout + res.stderr).split("Job stats:", 1)[1], flags=re.M))
    assert {k: int(v) for k, v in plan.items() if k != "total"} == {
        "cluster": 2, "train_teacher": 1, "distill_student": 2, "pca": 3, "extract": 4, "evaluate": 4,
        "summarize": 1}
    assert "results/clusters/vgg16_pitts30k_64_desc_cen.hdf5" in res.stdout + res.stderr


@pytest.mark.parametrize("option,needle", [
    ("seed=-1", "config key seed: -1 is less than the minimum of 0"),
    ("synthetic={'preset': 'demo', 'seed': 'x'}", "config key synthetic.seed: 'x' is not of type 'integer'"),
    ("precision=fp64", "config key precision: 'fp64' is not one of"),
])
def test_a_bad_config_value_names_its_key(tmp_path, option, needle):
    repo = workflow_copy(tmp_path / "repo", tiny_workflow_config())
    res = _snakemake(repo, "-n", "--config", option)
    assert res.returncode != 0 and needle in res.stdout + res.stderr, res.stdout[-2000:] + res.stderr[-2000:]


def test_a_killed_training_job_resumes_to_the_same_weights(tmp_path, request):
    """The teacher's job is killed mid-epoch (as a cluster's time limit does: SIGTERM); Snakemake
    deletes its outputs, the state under results/resume/ stays; the rerun resumes from it and ends
    with the weights of an uninterrupted run (bitwise on CPU), and the state is removed.

    Where the SLURM test runs, it checks the same inside the cluster (a job killed, resubmitted by
    Snakemake, compared with an uninterrupted run), so this local copy runs only without it."""
    if slurm_cluster_possible() and any(item.get_closest_marker("slurm") for item in request.session.items):
        pytest.skip("checked inside the one-node SLURM cluster by tests/test_slurm.py, which runs in this session")
    import time

    import torch

    cfg = tiny_workflow_config()
    cfg["models"]["synthetic"]["teacher"]["train"]["epochs"] = 2
    target = "results/train/synthetic/teacher/checkpoint.pth.tar"
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile", "config/tiny.yaml"]
    whole = workflow_copy(tmp_path / "whole", cfg)
    assert subprocess.run(cmd, cwd=whole, capture_output=True).returncode == 0

    repo = workflow_copy(tmp_path / "killed", cfg)
    state = repo / "results/resume/synthetic/teacher/checkpoint.pth.tar"
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not state.exists() and proc.poll() is None and time.time() - t0 < 600:
        time.sleep(0.05)
    assert state.exists() and proc.poll() is None, "the job ended before its first epoch was saved"
    subprocess.run(["pkill", "-TERM", "-f", f"train .*--state-dir {state.parent.relative_to(repo)}"], check=True)
    assert proc.wait(timeout=300) != 0
    assert state.exists() and not (repo / target).exists()  # outputs deleted, the state kept
    assert torch.load(state, weights_only=True)["epoch"] == 0

    assert subprocess.run(cmd, cwd=repo, capture_output=True).returncode == 0
    a = torch.load(whole / target, weights_only=True)
    b = torch.load(repo / target, weights_only=True)
    assert b["epoch"] == 1 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not state.parent.exists()
