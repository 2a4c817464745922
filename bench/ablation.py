"""The KD ablation over training seeds: teacher / student + KD / student without KD, mean and spread.

    python bench/ablation.py run --seeds 0 1 2 --out-dir results/ablation --cores 2 [-- snakemake options]
    python bench/ablation.py table --out-dir results/ablation [--json ablation.json]

``run`` runs the demo pipeline (`snakemake --cores N`, the default targets) once per seed in
``OUT_DIR/seed<N>`` with ``--config seed=N`` (clustering, training and distillation seed; the city
is the configured one, rendered once into ``--resources`` (default: the checkout's) and shared
through a symlink). ``table`` reads every
``seed*/results/synthetic_recall.csv`` and prints, per model and condition, the mean and the
spread (min-max) of test Recall@1 and @5 (25 m rule) over the seeds, as Markdown, plus the
goal checks of issue 12 (KD student's day R@1 vs teacher and vs no-KD student), per seed too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MODELS = ["teacher_init", "teacher", "student_kd", "student_nokd"]
CONDITIONS = ["all", "day", "sunset", "night"]


def run(seeds: list[int], out_dir: Path, cores: int, extra: list[str], resources: Path) -> None:
    """One pipeline per seed in OUT_DIR/seed<N>, every one reading the city from ``resources``."""
    resources.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        work = out_dir / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        for name, target in (("resources", resources), ("config", REPO / "config")):
            if not (work / name).exists():  # the city, and the configfile the Snakefile names
                (work / name).symlink_to(target.resolve())
        cmd = ["snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", str(cores),
               "--config", f"seed={seed}", *extra]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def table(out_dir: Path, runs: list[Path] | None = None) -> dict:
    """The table over ``OUT_DIR/seed*`` (or the given run folders, each holding results/synthetic_recall.csv)."""
    rows = []
    folders = runs or sorted(out_dir.glob("seed*"))
    for folder in folders:
        csv = folder / "results/synthetic_recall.csv"
        if not csv.exists():
            sys.exit(f"{csv}: no such file (run the pipeline there first)")
        df = pd.read_csv(csv)
        df = df[(df["rule"] == "25m") & (df["split"] == "test")].copy()
        df["seed"] = folder.name
        rows.append(df)
    if not rows:
        sys.exit(f"no seed*/results/synthetic_recall.csv under {out_dir}")
    df = pd.concat(rows)
    df = df[df["model"].str.split("-").str[0].isin(MODELS)]
    df["model"] = df["model"].str.split("-").str[0]
    seeds = sorted(df["seed"].unique())
    print(f"runs: {seeds}\n")
    print("| model | " + " | ".join(f"R@1 {c} | R@5 {c}" for c in CONDITIONS) + " |")
    print("|---|" + "---|" * (2 * len(CONDITIONS)))
    summary = {}
    for model in MODELS:
        cells = []
        for cond in CONDITIONS:
            part = df[(df["model"] == model) & (df["condition"] == cond)]
            for col in ("R@1", "R@5"):
                v = 100 * part[col]
                summary[f"{model} {col} {cond}"] = {"mean": v.mean(), "min": v.min(), "max": v.max(),
                                                    "per_seed": dict(zip(part["seed"].tolist(), v.round(1)))}
                cells.append(f"{v.mean():.1f} ({v.min():.1f}–{v.max():.1f})")
        print(f"| {model} | " + " | ".join(cells) + " |")
    day = df[df["condition"] == "day"].pivot(index="seed", columns="model", values="R@1") * 100
    print("\nday R@1 per seed:\n" + day.round(1).to_string())
    kd, nokd, teacher = day["student_kd"].mean(), day["student_nokd"].mean(), day["teacher"].mean()
    checks = {"kd_over_teacher": kd / teacher, "kd_minus_nokd_points": kd - nokd,
              "kd_beats_nokd_seeds": int((day["student_kd"] > day["student_nokd"]).sum()), "seeds": len(seeds)}
    print(f"\nKD student day R@1 = {100 * checks['kd_over_teacher']:.0f} % of the teacher's (goal >= 85 %); "
          f"{checks['kd_minus_nokd_points']:+.1f} points over the no-KD student (goal >= +3); KD ahead in "
          f"{checks['kd_beats_nokd_seeds']} of {len(seeds)} seeds")
    return {"summary": summary, "checks": checks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--out-dir", type=Path, default=Path("results/ablation"))
    r.add_argument("--cores", type=int, default=2)
    r.add_argument("--resources", type=Path, default=REPO / "resources",
                   help="folder holding (or receiving) the rendered city, shared by every seed")
    r.add_argument("extra", nargs="*", help="more snakemake options (after --)")
    t = sub.add_parser("table")
    t.add_argument("--out-dir", type=Path, default=Path("results/ablation"))
    t.add_argument("--json", type=Path)
    t.add_argument("--runs", type=Path, nargs="+", help="run folders to tabulate instead of OUT_DIR/seed*")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.seeds, args.out_dir, args.cores, args.extra, args.resources)
    else:
        out = table(args.out_dir, args.runs)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
