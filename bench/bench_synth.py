"""Benchmark of the synthetic city: generation speed per preset, and baseline recalls.

Usage (figures go to BENCHMARKS.md by hand, with the machine and the date):

    python bench/bench_synth.py --presets tiny demo --out results/bench/synth.json
    python bench/bench_synth.py --presets large --no-baseline --out results/bench/synth_large.json

Each preset is rendered into a temporary folder with all CPU cores (or --workers), timed end to
end, and (unless --no-baseline) the thumbnail / colour-histogram Recall@N of its test split is
computed under the 25 m rule and the view-aware rule, per query condition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from wakd.data import load_dataset
from wakd.synth.baseline import baseline_table
from wakd.synth.generate import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "demo"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--keep", help="keep the rendered cities under this folder")
    ap.add_argument("--json", "--out", dest="out", default="results/bench/synth.json")
    args = ap.parse_args()

    report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d"), "presets": {}}
    for preset in args.presets:
        tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wakd-bench-"))
        out = tmp / preset
        t0 = time.perf_counter()
        info = generate(out, preset=preset, seed=args.seed, workers=args.workers, overwrite=True)
        wall = time.perf_counter() - t0
        du = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        entry = {"images": info["images"], "counts": info["counts"], "wall_seconds": round(wall, 1),
                 "render_images_per_second": info["images_per_second"], "workers": info["workers"],
                 "size": info["params"]["size"], "disk_mb": round(du / 2**20, 1)}
        if not args.no_baseline:
            ds = load_dataset("synthetic", "test", out)
            t1 = time.perf_counter()
            table = baseline_table(ds, ns=(1, 5, 10))
            entry["baseline_seconds"] = round(time.perf_counter() - t1, 1)
            entry["baseline"] = table.to_dict(orient="records")
            print(table.to_string(index=False))
        report["presets"][preset] = entry
        print(json.dumps({k: v for k, v in entry.items() if k != "baseline"}, indent=1))
        if not args.keep:
            shutil.rmtree(tmp)
    report["max_rss_mb_main"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
