"""Wall time of one split's descriptors extracted by 1, 2, 4, ... shard jobs (scatter/gather).

Run from a workflow folder (a checkout) whose inputs of the target exist (for the default target,
the city and the teacher's NetVLAD centres: `snakemake --cores all results/clusters/...`); anything
after `--` goes to Snakemake, e.g. the SLURM profile:

    python bench/shard_scaling.py --shards 1 2 4 --json shards.json -- --profile slurm
    python bench/shard_scaling.py --shards 1 2 -- --cores 2

For each N the target is deleted and rebuilt with config `shards: {DATASET: N}` (N = 1: one `extract`
job; N > 1: N `extract_shard` jobs and `gather`). Reports Snakemake's wall time, the jobs' own times
(their `benchmark:` files) and whether the descriptors equal those of N = 1 bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

DESCRIPTOR = re.compile(r"results/descriptors/(?P<model>\w+?)_(?P<dataset>synthetic|pitts30k|pitts250k|tokyo247)_"
                        r"(?P<split>train|val|test)\.hdf5$")


def _same(a: Path, b: Path) -> bool:
    with h5py.File(a) as x, h5py.File(b) as y:
        return all(np.array_equal(x[k][:], y[k][:]) for k in ("db/descriptors", "queries/descriptors", "db/paths"))


def _job_seconds(stem: str) -> dict[str, float]:
    """Seconds of each job of this target, from the rules' benchmark files."""
    out = {}
    for tsv in Path("results/benchmarks").glob(f"*{stem}*.tsv"):
        out[tsv.stem] = float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="results/descriptors/teacher_init_synthetic_test.hdf5")
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--configfile", nargs="*", default=[], help="config files laid over config/config.yaml")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("snakemake", nargs=argparse.REMAINDER, help="-- then Snakemake's options (--cores N, --profile P)")
    a = p.parse_args()
    m = DESCRIPTOR.search(a.target)
    if not m:
        p.error(f"--target {a.target}: expected results/descriptors/MODEL_DATASET_SPLIT.hdf5")
    extra = [x for x in a.snakemake if x != "--"]
    target, keep = Path(a.target), Path(tempfile.mkdtemp(prefix="shards-"))
    stem = f"{m['model']}_{m['dataset']}_{m['split']}"
    rows = []
    for n in a.shards:
        overlay = keep / f"shards{n}.yaml"
        overlay.write_text(f"shards:\n  {m['dataset']}: {n}\n")
        target.unlink(missing_ok=True)
        for tsv in Path("results/benchmarks").glob(f"*{stem}*.tsv"):
            tsv.unlink()
        cmd = [sys.executable, "-m", "snakemake", a.target, *extra, "--configfile", *a.configfile, str(overlay)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode:
            print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)
            return 1
        jobs = _job_seconds(stem)
        shutil.copy(target, keep / f"{n}.hdf5")
        with h5py.File(target) as f:
            images = len(f["db/paths"]) + len(f["queries/paths"])
        row = {"shards": n, "wall_s": round(wall, 1), "images": images, "jobs": len(jobs),
               "job_s": {k: round(v, 1) for k, v in sorted(jobs.items())},
               "equal_to_one_job": _same(keep / f"{a.shards[0]}.hdf5", target)}
        rows.append(row)
        print(json.dumps(row))
    info = {"command": " ".join(sys.argv), "target": a.target, "snakemake": extra, "runs": rows,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}
    if a.json:
        a.json.write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(keep)
    return 0 if all(r["equal_to_one_job"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
