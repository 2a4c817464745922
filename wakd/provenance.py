"""Provenance: what produced an output (config, seed, package versions, git commit, command line).

Each output carries its own record where its format has room: an HDF5 attribute ``provenance``
(clusters, PCA, descriptors, predictions), the ``provenance`` entry of a checkpoint, a
``provenance`` key of a JSON summary; a CSV table gets ``TABLE.csv.info.json`` beside it, which
the Snakemake rules declare as an output.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from wakd.utils import atomic_path

PACKAGES = ("wakd", "torch", "torchvision", "faiss-cpu", "faiss-gpu", "numpy", "scipy", "h5py",
            "pandas", "matplotlib", "pillow", "snakemake")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change results (absent ones are skipped)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    """The git commit of ``repo`` (default: the wakd source tree), with ``-dirty`` if modified."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def precision_used(config: dict[str, Any]) -> dict[str, Any]:
    """What ``--precision``/``--device`` resolved to on this machine, and the CPU's bf16 units
    (precision changes the trained model, so it is recorded beside every network stage's output)."""
    from wakd.device import bf16_is_fast, resolve_device, resolve_precision

    try:
        device = resolve_device(config.get("device", "auto"))
        used = resolve_precision(device, config["precision"])
    except Exception as exc:  # noqa: BLE001 - provenance must not fail a finished run
        return {"precision_used": f"unknown ({exc})"}
    return {"device_used": str(device), "precision_used": used, "bf16_fast_here": bf16_is_fast(device)}


def run_info(config: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """The provenance record of one run."""
    return {
        "command": sys.argv,
        "config": config,
        **(precision_used(config) if "precision" in config else {}),
        "seed": seed,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_run_info(path: str | os.PathLike, config: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """Write the provenance record as JSON at ``path`` (atomically) and return it."""
    info = run_info(config, seed)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return info


def provenance_attrs(cfg: Any) -> dict[str, str]:
    """The provenance record of a stage's options as an HDF5 attribute (``provenance``, JSON)."""
    return {"provenance": json.dumps(run_info(cfg.record(), getattr(cfg, "seed", None)), default=str)}


def beside(out: str | os.PathLike) -> str:
    """``OUT.info.json``: the record of an output whose format has no room for it (CSV); the rules declare it."""
    return f"{out}.info.json"


def write_record(cfg: Any, path: str | os.PathLike) -> dict[str, Any]:
    """Write the provenance record of a stage's options to ``path``."""
    return write_run_info(path, cfg.record(), getattr(cfg, "seed", None))


def input_identity(cfg, names: tuple[str, ...]) -> dict[str, list[int]]:
    """Size and modification time of the input files that ``cfg``'s options ``names`` point to: a resumed run,
    or the shards of one extraction, must read the same files (e.g. not a teacher retrained since)."""
    files = {k: getattr(cfg, k, None) for k in names}
    return {k: [os.stat(v).st_size, os.stat(v).st_mtime_ns] for k, v in files.items() if v and os.path.isfile(v)}
