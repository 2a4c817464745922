"""The pipeline on a real one-node SLURM cluster, through profiles/slurm (marked ``slurm``).

tests/slurm/slurm-up.sh brings up Debian's slurmctld + slurmd + munge with slurmdbd + MariaDB (so
``sacct`` works, as the executor plugin expects) and two fake GPUs in gres.conf. The tiny city then
runs through the project's SLURM profile (only the partition and CI timings added) with training
and distillation declared as one-GPU stages, and ``sacct`` must show every stage as a COMPLETED job,
the GPU stages allocated ``gres/gpu``. Needs root and apt (packages are installed on first use).
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_workflow_config, workflow_copy

pytestmark = pytest.mark.slurm

SCRIPTS = REPO / "tests/slurm"
GPU_RULES = {"train_teacher", "distill_student"}


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("the one-node SLURM cluster needs Linux, root and apt-get")
    # not under pytest's private (0700) tmp: MariaDB runs as the mysql user and must reach its folder
    base = Path(tempfile.mkdtemp(prefix="wakd-slurm-"))
    base.chmod(0o755)
    env = {**os.environ, "SLURM_CI_BASE": str(base), "FAKE_GPUS": "2"}
    up = subprocess.run(["bash", str(SCRIPTS / "slurm-up.sh")], env=env, capture_output=True, text=True,
                        timeout=900)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    yield env
    subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh")], env=env, capture_output=True, timeout=300)
    shutil.rmtree(base, ignore_errors=True)


def _profile(dest: Path) -> Path:
    """profiles/slurm with the test cluster's partition, CI-speed status checks and small jobs,
    written over the copy's profiles/slurm/config.yaml (which `--profile slurm` reaches through the
    repository's `slurm` link)."""
    prof = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    prof["default-resources"].update(slurm_partition="debug", mem_mb=1000, runtime=20)
    prof["set-threads"] = {rule: 1 for rule in prof["set-threads"]}
    prof["max-threads"] = 2  # the test node has 2 CPUs: no rule may ask for more (it would pend forever)
    prof["set-resources"] = {rule: {"mem_mb": 2000} for rule in GPU_RULES}
    prof.update({"jobs": 4, "slurm-init-seconds-before-status-checks": 2, "slurm-status-command": "sacct",
                 "slurm-keep-successful-logs": True})
    (dest / "config.yaml").write_text(yaml.safe_dump(prof))
    return dest


def test_pipeline_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    cfg = tiny_workflow_config()
    cfg["gpus"] = {"cluster": 0, "train": 1, "distill": 1, "extract": 0}
    repo = workflow_copy(tmp_path / "repo", cfg)
    _profile(repo / "profiles/slurm")
    # the README's command, verbatim, from the repository root (plus the tiny config)
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--configfile", "config/tiny.yaml"]
    res = subprocess.run(cmd, cwd=repo, env=slurm_cluster, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-6000:]
    assert len(pd.read_csv(repo / "results/synthetic_recall.csv")) > 0

    acct = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "--starttime", "now-2hours",
                           "--format=JobID,JobName,Comment,State,AllocTRES,WorkDir"],
                          env=slurm_cluster, capture_output=True, text=True, check=True).stdout
    jobs = [dict(zip(["id", "name", "comment", "state", "tres", "workdir"], line.split("|")))
            for line in acct.strip().splitlines()]
    jobs = [j for j in jobs if Path(j["workdir"]).resolve() == repo.resolve()]
    ran = {}
    for j in jobs:
        rule = j["comment"].removeprefix("rule_").split("_wildcards_")[0]
        ran.setdefault(rule, []).append(j)
    expected = {"synth", "inspect_synthetic", "baseline_synthetic", "cluster", "train_teacher", "pca",
                "distill_student", "extract", "evaluate", "summarize"}
    assert expected <= set(ran), (sorted(ran), acct)
    assert len(ran["distill_student"]) == 2 and len(ran["extract"]) == 4
    for rule, rule_jobs in ran.items():
        for j in rule_jobs:
            assert j["state"] == "COMPLETED", (rule, j)
            has_gpu = "gres/gpu=1" in j["tres"]
            assert has_gpu == (rule in GPU_RULES), (rule, j["tres"])
