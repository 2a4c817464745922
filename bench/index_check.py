"""Index a city's test database as "own photos" and query it with its test queries: how often does
a query find a database image within 25 m in its top N, next to the pipeline's Recall@N?

    python bench/index_check.py --checkpoint results/train/synthetic/student_kd/model_best.pth.tar \
        --root resources/synthetic/demo-seed0 --recall-csv results/synthetic/student_kd_test_recall.csv

The database images are linked into a folder under gmberton-style names (``@east@north@...@.jpg``),
so `wakd index` reads their positions from the names, and every query goes through `wakd query
--json` (one process for all of them). Also reports the index build rate (images per second) and a
rebuild of the grown folder (only new images described).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from wakd.data import load_dataset


def _link(src: str, folder: Path, i: int, utm, tag: str) -> Path:
    dst = folder / f"@{utm[0]:.3f}@{utm[1]:.3f}@17@T@@@{tag}{i:05d}@@@@@@@@.jpg"
    os.symlink(os.path.abspath(src), dst)
    return dst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--root", required=True, help="the synthetic city")
    p.add_argument("--recall-csv", help="the pipeline's recall table of this checkpoint, to compare with")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    ds = load_dataset("synthetic", "test", a.root)
    work = Path(tempfile.mkdtemp(prefix="index-check-"))
    db, queries = work / "db", work / "queries"
    db.mkdir()
    queries.mkdir()
    half = ds.num_db // 2
    for i, (src, utm) in enumerate(zip(ds.db_paths[:half], ds.db_utm[:half])):
        _link(src, db, i, utm, "db")
    q = [_link(src, queries, i, utm, "q") for i, (src, utm) in enumerate(zip(ds.q_paths, ds.q_utm))]
    index = work / "city.h5"
    wakd = [sys.executable, "-m", "wakd"]
    t0 = time.perf_counter()
    subprocess.run([*wakd, "index", "--checkpoint", a.checkpoint, "--images", str(db), "--out", str(index),
                    "--device", "cpu"], check=True, capture_output=True)
    first = time.perf_counter() - t0
    for i, (src, utm) in enumerate(zip(ds.db_paths[half:], ds.db_utm[half:]), start=half):  # the folder grows
        _link(src, db, i, utm, "db")
    t0 = time.perf_counter()
    subprocess.run([*wakd, "index", "--checkpoint", a.checkpoint, "--images", str(db), "--out", str(index),
                    "--device", "cpu"], check=True, capture_output=True)
    grown = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = subprocess.run([*wakd, "query", "--index", str(index), *map(str, q), "--top-k", str(a.top_k), "--json",
                          "--device", "cpu"], check=True, capture_output=True, text=True)
    query_s = time.perf_counter() - t0
    results = json.loads(res.stdout)
    thr = ds.pos_dist_thr
    hits = {n: np.mean([any(m["to_query_m"] <= thr for m in r["matches"][:n]) for r in results])
            for n in (1, a.top_k)}
    out = {"queries": len(results), "database": ds.num_db, "hit_at_1": round(float(hits[1]), 4),
           f"hit_at_{a.top_k}": round(float(hits[a.top_k]), 4),
           "index_first_half_s": round(first, 1), "index_grown_s": round(grown, 1),
           "images_per_s_first_half": round(half / first, 1), "query_all_s": round(query_s, 1)}
    if a.recall_csv:
        t = pd.read_csv(a.recall_csv)
        row = t[(t["rule"] == "25m") & (t["condition"] == "all")].iloc[0]
        out.update({"pipeline_R@1": float(row["R@1"]), f"pipeline_R@{a.top_k}": float(row[f"R@{a.top_k}"])})
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
