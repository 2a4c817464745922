"""The demo pipeline per stage, from Snakemake's `benchmark:` files (results/benchmarks/*.tsv).

    python bench/demo_stages.py results/benchmarks --json demo_stages.json     # after `snakemake --cores all`
    python bench/demo_stages.py results/benchmarks --wall 912                  # with the run's wall time

Prints a Markdown table (job, seconds, max RSS MB, CPU seconds) grouped by rule, the sum of the
jobs' seconds and, with ``--wall`` (seconds of the whole `snakemake` command, e.g. from `time`),
how much the jobs overlapped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_json  # noqa: E402


def read_stages(folder: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(folder.glob("*.tsv")):
        t = pd.read_csv(f, sep="\t")
        last = t.iloc[-1]  # a `repeat` benchmark has several rows; the last run is the one kept
        rows.append({"job": f.stem, "seconds": round(float(last["s"]), 1),
                     "max_rss_mb": round(float(last["max_rss"]), 0) if str(last["max_rss"]) != "-" else None,
                     "cpu_seconds": round(float(last["cpu_time"]), 1) if str(last["cpu_time"]) != "-" else None})
    if not rows:
        raise SystemExit(f"{folder}: no Snakemake benchmark files (*.tsv) there; run the pipeline first")
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, nargs="?", default=Path("results/benchmarks"))
    ap.add_argument("--wall", type=float, help="wall seconds of the whole snakemake command")
    ap.add_argument("--json", "--out", dest="json", type=Path)
    args = ap.parse_args()
    df = read_stages(args.folder)
    total = float(df["seconds"].sum())
    print("| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns))
    for row in df.itertuples(index=False):
        print("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    print(f"\n{len(df)} jobs, {total:.0f} s of job time" +
          (f"; wall {args.wall:.0f} s ({total / args.wall:.2f} jobs at a time on average)" if args.wall else ""))
    write_json(args.json, {"bench": "demo_stages", "machine": machine_info(), "wall_s": args.wall,
                           "job_seconds": round(total, 1), "jobs": df.to_dict("records")})


if __name__ == "__main__":
    main()
