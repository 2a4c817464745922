"""The pipeline on a real one-node SLURM cluster, through profiles/slurm (marked ``slurm``).

tests/slurm/slurm-up.sh brings up Debian's slurmctld + slurmd + munge with slurmdbd + MariaDB (so
``sacct`` works, as the executor plugin expects) and two fake GPUs in gres.conf. The tiny city then
runs through the project's SLURM profile (only the partition and CI timings added) with training,
distillation and extraction declared as one-GPU stages and every split's descriptors extracted by two
shard jobs joined by ``gather``; ``sacct`` must show every stage as a COMPLETED job, the GPU stages
allocated ``gres/gpu``. During the run the teacher's job is sent SIGTERM mid-epoch (``scancel
--signal=TERM --full``: what SLURM sends every process of a job at its time limit or preemption); the
job fails, Snakemake resubmits it (``retries``), it resumes from its state under results/resume/ and
ends with the weights of an uninterrupted run (bitwise on CPU). Needs root and apt
(packages are installed on first use).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, slurm_cluster_possible, tiny_workflow_config, workflow_copy

pytestmark = pytest.mark.slurm

SCRIPTS = REPO / "tests/slurm"
GPU_RULES = {"train_teacher", "distill_student", "extract_shard", "pca"}


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if not slurm_cluster_possible():
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
    import h5py
    import numpy as np
    import torch

    cfg = tiny_workflow_config()
    cfg["gpus"] = {"cluster": 0, "train": 1, "distill": 1, "extract": 1}
    cfg["shards"] = {"synthetic": 2}
    cfg["models"]["synthetic"]["teacher"]["train"]["epochs"] = 2  # killed in its second epoch
    repo = workflow_copy(tmp_path / "repo", cfg)
    _profile(repo / "profiles/slurm")
    # the README's command, verbatim, from the repository root (plus the tiny config)
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--configfile", "config/tiny.yaml"]
    log = tmp_path / "snakemake.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=repo, env=slurm_cluster, stdout=out, stderr=subprocess.STDOUT, text=True)
        killed = _cancel_teacher_mid_epoch(repo, proc, slurm_cluster)
        rc = proc.wait(timeout=1500)
    text = log.read_text()
    assert rc == 0, text[-8000:]
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
                "distill_student", "extract_shard", "gather", "evaluate", "summarize"}
    assert expected <= set(ran) and "extract" not in ran, (sorted(ran), acct)
    assert len(ran["distill_student"]) == 2 and len(ran["extract_shard"]) == 8 and len(ran["gather"]) == 4
    # the teacher: the killed job, then the resubmitted one that resumed and completed
    teacher = {j["id"]: j["state"] for j in ran.pop("train_teacher")}
    assert teacher.pop(killed) == "FAILED" and list(teacher.values()) == ["COMPLETED"], teacher
    assert "resumed from" in (repo / "results/logs/train_teacher_synthetic.log").read_text()
    for rule, rule_jobs in ran.items():
        for j in rule_jobs:
            assert j["state"] == "COMPLETED", (rule, j)
            has_gpu = "gres/gpu=1" in j["tres"]
            assert has_gpu == (rule in GPU_RULES), (rule, j["tres"])

    # the resumed teacher = an uninterrupted run of the job's own command, here (bitwise on CPU)
    line = next(ln for ln in text.splitlines() if " train " in ln and "--state-dir" in ln)
    args = shlex.split(line[line.index("--log-file"):])
    swap = {"--log-file": str(tmp_path / "ref.log"), "--out-dir": str(tmp_path / "ref"),
            "--state-dir": str(tmp_path / "ref-state")}
    args = [swap.get(flag, a) for flag, a in zip(["", *args], args)]
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the job's (Snakemake sets it to the threads)
    ref = subprocess.run([sys.executable, "-m", "wakd", *args], cwd=repo, env=one_thread, capture_output=True,
                         text=True)
    assert ref.returncode == 0, ref.stderr[-3000:]
    a = torch.load(tmp_path / "ref/checkpoint.pth.tar", weights_only=True)
    b = torch.load(repo / "results/train/synthetic/teacher/checkpoint.pth.tar", weights_only=True)
    assert b["epoch"] == a["epoch"] == 1
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not (repo / "results/resume/synthetic/teacher").exists()

    # the gathered descriptors = one unsharded extraction (the job's own options), bit for bit
    line = next(ln for ln in text.splitlines() if " extract " in ln and "teacher_synthetic_test.1-of-2" in ln)
    args = shlex.split(line[line.index("--log-file"):])
    args = args[:args.index("--shard")] + ["--out", str(tmp_path / "whole.hdf5")]
    one = subprocess.run([sys.executable, "-m", "wakd", *args], cwd=repo, env=one_thread, capture_output=True,
                         text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    gathered = repo / "results/descriptors/teacher_synthetic_test.hdf5"
    with h5py.File(tmp_path / "whole.hdf5") as w, h5py.File(gathered) as g:
        for key in ("db/descriptors", "queries/descriptors", "db/paths", "queries/utm"):
            assert np.array_equal(w[key][:], g[key][:]), key
    assert not list((repo / "results/descriptors/shards").glob("*.hdf5"))  # temporary, removed once gathered


def _cancel_teacher_mid_epoch(repo: Path, proc: subprocess.Popen, env: dict) -> str:
    """Wait for the teacher's first epoch to be saved, then send its SLURM job SIGTERM (mid second
    epoch), as a time limit or preemption does; return the job id. (A plain ``scancel`` leaves the
    job CANCELLED "by UID", which snakemake-executor-plugin-slurm 2.8 does not read as failed: the run
    would wait for it for ever.)"""
    state = repo / "results/resume/synthetic/teacher/checkpoint.pth.tar"
    t0 = time.time()
    while not state.exists() and proc.poll() is None and time.time() - t0 < 900:
        time.sleep(0.1)
    assert state.exists() and proc.poll() is None, "the pipeline ended before the teacher's first epoch was saved"
    queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], env=env, capture_output=True, text=True,
                           check=True).stdout
    job = next(m.group(1) for m in re.finditer(r"^(\d+) rule_train_teacher", queue, flags=re.M))
    subprocess.run(["scancel", "--signal=TERM", "--full", job], env=env, check=True)
    return job
