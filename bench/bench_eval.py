"""Evaluation at Pitts250k scale with random unit descriptors: time and peak memory of `wakd evaluate`.

    python bench/bench_eval.py --db 83952 --queries 8280 --dim 4096          # Pitts250k test scale
    python bench/bench_eval.py --db 250000 --queries 8280 --dim 4096         # 250k database images
    python bench/bench_eval.py ... --device cuda                             # on a GPU machine

A descriptor file in the `wakd extract` layout is written (random unit vectors, random UTM
positions in a 3 km square), then `wakd evaluate` runs in a child process whose wall time and peak
RSS are recorded against the size of the stored descriptors. With ``--baseline``, a bare faiss flat
search of the same file runs first in another child (both sets read whole into float32, one
``faiss.knn`` for the top 20): the floor that chunked, memory-bounded evaluation is compared to
(issue 15: within 1.1x on CPU). It holds the whole database in float32: leave it out at 1M images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import exit_on_sigterm, machine_info, run_child, write_json  # noqa: E402

STR = h5py.string_dtype("utf-8")


def write_random(path: Path, n_db: int, n_q: int, dim: int, dtype: str, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset": "random", "split": "test", "pos_dist_thr": 25.0, "train_pos_dist_thr": 10.0})
        for group, n in (("db", n_db), ("queries", n_q)):
            g = f.create_group(group)
            g.create_dataset("paths", data=np.array([f"{group}/{i:07d}.jpg" for i in range(n)], dtype=object),
                             dtype=STR)
            g.create_dataset("utm", data=rng.uniform(0, 3000, (n, 2)))
            d = g.create_dataset("descriptors", shape=(n, dim), dtype=dtype, chunks=(min(n, 256), dim))
            for s in range(0, n, 8192):
                x = rng.standard_normal((min(8192, n - s), dim), dtype=np.float32)
                d[s:s + len(x)] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)
    return (n_db + n_q) * dim * np.dtype(dtype).itemsize


BARE_FAISS = """
import sys, time, h5py, numpy as np, faiss
t0 = time.perf_counter()
with h5py.File(sys.argv[1]) as f:
    db = f["db/descriptors"][:].astype(np.float32)
    q = f["queries/descriptors"][:].astype(np.float32)
t1 = time.perf_counter()
faiss.knn(q, db, 20, metric=faiss.METRIC_INNER_PRODUCT)
print(round(t1 - t0, 2), round(time.perf_counter() - t1, 2))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=int, default=83952)
    ap.add_argument("--queries", type=int, default=8280)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--dtype", default="float32", choices=["float16", "float32"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-rows", type=int, default=None)
    ap.add_argument("--tmp", default=None, help="folder for the descriptor file (default: a temporary one)")
    ap.add_argument("--baseline", action="store_true",
                    help="also time a bare faiss flat search of the same file (whole database in float32)")
    ap.add_argument("--json", "--out", dest="out", default="results/bench/eval.json")
    args = ap.parse_args()
    exit_on_sigterm()

    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="wakd-bench-eval-"))
    tmp.mkdir(parents=True, exist_ok=True)
    desc = tmp / f"random_{args.db}x{args.dim}_{args.dtype}.hdf5"
    t0 = time.perf_counter()
    nbytes = write_random(desc, args.db, args.queries, args.dim, args.dtype)
    write_s = time.perf_counter() - t0
    res = {"bench": "eval", "db": args.db, "queries": args.queries,
           "dim": args.dim, "dtype": args.dtype, "device": args.device,
           "descriptor_bytes_gb": round(nbytes / 2**30, 3), "write_seconds": round(write_s, 1)}
    try:
        if args.baseline:
            wall, peak, out = run_child([sys.executable, "-c", BARE_FAISS, str(desc)])
            read_s, search_s = (float(v) for v in out.split())
            res["bare_faiss"] = {"seconds": round(wall, 1), "read_seconds": read_s, "search_seconds": search_s,
                                 "peak_rss_gb": round(peak / 2**30, 3)}
        cmd = [sys.executable, "-m", "wakd", "evaluate", "--descriptors", str(desc), "--model", "random",
               "--out", str(tmp / "recall.csv"), "--device", args.device]
        if args.chunk_rows:
            cmd += ["--chunk-rows", str(args.chunk_rows)]
        wall, peak, _ = run_child(cmd)
        res.update({"evaluate_seconds": round(wall, 1), "evaluate_peak_rss_gb": round(peak / 2**30, 3),
                    "peak_over_descriptor_bytes": round(peak / nbytes, 2)})
        if args.baseline:
            res["evaluate_over_bare_faiss"] = round(wall / res["bare_faiss"]["seconds"], 2)
        print(res)
    finally:
        desc.unlink()
        # after the children: a child forked from a parent holding torch would count its pages in its peak RSS
        res["machine"] = machine_info(args.device)
        write_json(Path(args.out), res)


if __name__ == "__main__":
    main()
