"""The tiny pipeline on a real one-node SLURM cluster, run in the background from the test session's start.

Most of that run's ~6 minutes are spent waiting: for its one-CPU jobs, and for the executor plugin's
status polls (snakemake-executor-plugin-slurm adds 10 s to the interval after every poll that finds no
job finished, up to 180 s; not configurable). So when tests/test_slurm.py is selected, conftest starts
this run with the session (:class:`SlurmPipeline`, a thread), the other tests use the CPU meanwhile,
and the SLURM test, ordered last, waits for it and checks everything it did. Nothing is left out of
the run or its checks; only its waiting overlaps the rest of the suite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import yaml
from conftest import REPO, tiny_workflow_config, workflow_copy

SCRIPTS = REPO / "tests/slurm"
GPU_RULES = {"train_teacher", "distill_student", "extract_shard", "pca"}


def write_profile(dest: Path) -> Path:
    """profiles/slurm with the test cluster's partition, CI-speed status checks and small jobs,
    written over the copy's profiles/slurm/config.yaml (which `--profile slurm` reaches through the
    repository's `slurm` link)."""
    prof = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    prof["default-resources"].update(slurm_partition="debug", mem_mb=1000, runtime=20)
    prof["set-threads"] = {rule: 1 for rule in prof["set-threads"]}
    prof["max-threads"] = 2  # the test node has 2 CPUs: no rule may ask for more (it would pend forever)
    prof["set-resources"] = {rule: {"mem_mb": 2000} for rule in GPU_RULES}
    prof.update({"jobs": 4, "slurm-init-seconds-before-status-checks": 1, "slurm-status-command": "sacct",
                 "slurm-keep-successful-logs": True})
    (dest / "config.yaml").write_text(yaml.safe_dump(prof))
    return dest


def cancel_teacher_mid_epoch(repo: Path, proc: subprocess.Popen, env: dict) -> str:
    """Wait for the teacher's first epoch to be saved, then send its SLURM job SIGTERM (mid second
    epoch), as a time limit or preemption does; return the job id. (A plain ``scancel`` leaves the
    job CANCELLED "by UID", which snakemake-executor-plugin-slurm 2.8 does not read as failed: the run
    would wait for it for ever.)"""
    state = repo / "results/resume/synthetic/teacher/checkpoint.pth.tar"
    t0 = time.time()
    while not state.exists() and proc.poll() is None and time.time() - t0 < 1200:
        time.sleep(0.1)
    assert state.exists() and proc.poll() is None, "the pipeline ended before the teacher's first epoch was saved"
    queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], env=env, capture_output=True, text=True,
                           check=True).stdout
    job = next(m.group(1) for m in re.finditer(r"^(\d+) rule_train_teacher", queue, flags=re.M))
    subprocess.run(["scancel", "--signal=TERM", "--full", job], env=env, check=True)
    return job


def _job_command(text: str, *markers: str) -> list[str]:
    """The ``wakd`` arguments of the first job line of the Snakemake log holding every one of ``markers``."""
    line = next(ln for ln in text.splitlines() if all(m in ln for m in (*markers, "--log-file")))
    return shlex.split(line[line.index("--log-file"):])


class SlurmPipeline:
    """Bring up the cluster, run the tiny pipeline through the project's SLURM profile (the teacher's job
    sent SIGTERM mid-epoch), then rerun two of its jobs' commands outside SLURM as references: the
    teacher uninterrupted, one split's descriptors unsharded. All in a thread; :meth:`wait` returns."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.base = Path(tempfile.mkdtemp(prefix="wakd-slurm-"))  # not 0700: MariaDB runs as the mysql user
        self.base.chmod(0o755)
        self.env = {**os.environ, "SLURM_CI_BASE": str(self.base), "FAKE_GPUS": "2"}
        self.repo = work / "repo"
        self.log = work / "snakemake.log"
        self.proc: subprocess.Popen | None = None
        self.up = self.rc = self.killed = self.error = None
        self.seconds: dict[str, float] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="slurm-pipeline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            t0 = time.time()
            self.up = subprocess.run(["bash", str(SCRIPTS / "slurm-up.sh")], env=self.env, capture_output=True,
                                     text=True, timeout=900)
            self.seconds["cluster_up"] = time.time() - t0
            if self.up.returncode != 0 or self._stopping:
                return
            self._pipeline()
            if self.rc == 0 and not self._stopping:
                self._references()
        except BaseException:  # reported by the test that waits for the run
            self.error = traceback.format_exc()

    def _pipeline(self) -> None:
        cfg = tiny_workflow_config()
        cfg["gpus"] = {"cluster": 0, "train": 1, "distill": 1, "extract": 1}
        cfg["shards"] = {"synthetic": 2}
        cfg["models"]["synthetic"]["teacher"]["train"]["epochs"] = 2  # killed in its second epoch
        workflow_copy(self.repo, cfg)
        write_profile(self.repo / "profiles/slurm")
        # the README's command, verbatim, from the repository root (plus the tiny config)
        cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--configfile", "config/tiny.yaml"]
        t0 = time.time()
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.repo, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         text=True)
            try:
                self.killed = cancel_teacher_mid_epoch(self.repo, self.proc, self.env)
            finally:
                self.rc = self.proc.wait(timeout=2400)
        self.seconds["pipeline"] = time.time() - t0

    def _references(self) -> None:
        """The killed-and-resumed teacher's and the sharded extraction's own commands, run here in one go."""
        text = self.log.read_text()
        one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the jobs' (Snakemake sets it to the threads)
        args = _job_command(text, " train ", "--state-dir")
        swap = {"--log-file": str(self.work / "ref.log"), "--out-dir": str(self.work / "ref"),
                "--state-dir": str(self.work / "ref-state")}
        args = [swap.get(flag, a) for flag, a in zip(["", *args], args)]
        self.teacher_ref = subprocess.run([sys.executable, "-m", "wakd", *args], cwd=self.repo, env=one_thread,
                                          capture_output=True, text=True)
        args = _job_command(text, " extract ", "teacher_synthetic_test.1-of-2")
        args = args[:args.index("--shard")] + ["--out", str(self.work / "whole.hdf5")]
        self.extract_ref = subprocess.run([sys.executable, "-m", "wakd", *args], cwd=self.repo, env=one_thread,
                                          capture_output=True, text=True)

    def wait(self, timeout: float = 3600) -> SlurmPipeline:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the SLURM pipeline still runs after {timeout} s"
        return self

    def stop(self) -> None:
        """End the run (SIGINT, as Snakemake wants: its jobs are cancelled) and take the cluster down."""
        self._stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._thread.join(300)
        subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh")], env=self.env, capture_output=True, timeout=300)
        shutil.rmtree(self.base, ignore_errors=True)
