"""What every benchmark records beside its figures: machine, CPU flags, threads, versions, commit, date."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEP_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model_and_flags() -> tuple[str, str]:
    """The CPU's model name and which of :data:`KEEP_FLAGS` it has (empty where /proc/cpuinfo is not)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine(), ""
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return model, " ".join(f for f in KEEP_FLAGS if f in flags)


def machine_info(device: str = "cpu") -> dict:
    import torch

    from wakd.provenance import git_commit

    model, flags = cpu_model_and_flags()
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": model, "cpu_flags": flags, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "git_commit": git_commit(Path(__file__).resolve().parents[1]), "device": device}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: Path | None, result: dict) -> None:
    """Write a benchmark's result to ``path`` (nothing without one), creating its folder."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")


def exit_on_sigterm() -> None:
    """SIGTERM (a time limit's ``timeout``) unwinds like an error, so a benchmark's ``finally`` still
    writes the figures measured so far."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_child(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes of that process alone, stdout) of ``cmd``; RuntimeError with the tail of
    its stderr if it fails. Output goes to files, not pipes: a long log cannot block the child. Call it before
    importing torch here: a forked child counts the parent's pages in its peak until it execs."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        rc = os.waitstatus_to_exitcode(status)
        if rc:
            raise RuntimeError(f"{' '.join(cmd)} failed ({rc}):\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss * 1024, out.read()
