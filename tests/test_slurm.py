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

The run starts with the test session, in the background (tests/slurm_pipeline.py, started by
conftest), since most of its time is waiting; this test is ordered last, waits for it and checks it.
"""

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from slurm_pipeline import GPU_RULES

pytestmark = pytest.mark.slurm


def test_pipeline_runs_as_slurm_jobs(slurm_pipeline):
    import h5py
    import numpy as np
    import torch

    if slurm_pipeline is None:
        pytest.skip("the one-node SLURM cluster needs Linux, root and apt-get")
    run = slurm_pipeline.wait()
    assert run.error is None, run.error
    assert run.up.returncode == 0, run.up.stdout[-3000:] + run.up.stderr[-3000:]
    repo, killed, env, work = run.repo, run.killed, run.env, run.work
    text = run.log.read_text()
    assert run.rc == 0, text[-8000:]
    assert len(pd.read_csv(repo / "results/synthetic_recall.csv")) > 0

    acct = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "--starttime", "now-2hours",
                           "--format=JobID,JobName,Comment,State,AllocTRES,WorkDir"],
                          env=env, capture_output=True, text=True, check=True).stdout
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

    # the resumed teacher = an uninterrupted run of the job's own command, outside SLURM (bitwise on CPU)
    assert run.teacher_ref.returncode == 0, run.teacher_ref.stderr[-3000:]
    a = torch.load(work / "ref/checkpoint.pth.tar", weights_only=True)
    b = torch.load(repo / "results/train/synthetic/teacher/checkpoint.pth.tar", weights_only=True)
    assert b["epoch"] == a["epoch"] == 1
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not (repo / "results/resume/synthetic/teacher").exists()

    # the gathered descriptors = one unsharded extraction (the job's own options), bit for bit
    assert run.extract_ref.returncode == 0, run.extract_ref.stderr[-3000:]
    gathered = repo / "results/descriptors/teacher_synthetic_test.hdf5"
    with h5py.File(work / "whole.hdf5") as w, h5py.File(gathered) as g:
        for key in ("db/descriptors", "queries/descriptors", "db/paths", "queries/utm"):
            assert np.array_equal(w[key][:], g[key][:]), key
    assert not list((repo / "results/descriptors/shards").glob("*.hdf5"))  # temporary, removed once gathered

