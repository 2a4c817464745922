"""The KD ablation's evidence: keep every run's files, recompute every figure from them.

    python bench/ablation.py collect [--results results] [--out bench/results/ablation]
    python bench/ablation.py report  [--out bench/results/ablation] [--write]
    python bench/ablation.py search  [--out bench/results/ablation] [--write]
    python bench/ablation.py recheck [--out bench/results/ablation] [--write]
    python bench/ablation.py pairs [--out bench/results/ablation] [--write]

``collect`` copies, from the pipeline's ``results/ablation/city*/seed*/`` (the target
``results/synthetic_ablation.csv``, see README "The KD ablation"), each run's recall CSVs with
their ``.info.json`` (options, seed, versions, commit, date) and each trained network's
``history.csv`` into ``OUT/runs/city*/seed*/``, and records the machine (CPU model and flags,
versions, commit, date) in ``OUT/machine-<date>.json``. Files already there are kept unless the
new one differs (then it is replaced and named).

``report`` recomputes the ablation table from ``OUT/runs`` with the pipeline's own code
(:mod:`wakd.stages.ablation`: the variants of ``config/config.yaml``, paired to ``student_nokd``)
into ``OUT/table.csv`` and prints it as Markdown; with ``--write`` it also replaces the parts of
BENCHMARKS.md and README.md between ``<!-- ablation:NAME -->`` and ``<!-- /ablation:NAME -->``.

``pairs`` gives paired differences between two student variants (the two soft-label sources of the
authors' WAKD setup, and each against ``kd_rank``) into ``OUT/pairs.csv``; ``--write`` puts them in
BENCHMARKS.md.

``search`` tabulates the no-KD recipe search (``config/nokd_search.yaml``): per variant, the best
validation R@5 of each run (what selects its ``model_best``) and R@1 at that epoch, the mean over
runs, and the pick (highest mean R@5), into ``OUT/nokd_search.csv``; ``--write`` puts it in
BENCHMARKS.md as well. ``recheck`` does the same for the teacher's learning rate on validation
(``results/recheck/teacher_lr*``, copied by ``collect``).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model_and_flags  # noqa: E402

from wakd.stages.ablation import ablation_table, markdown, read_runs  # noqa: E402


def collect(results: Path, out: Path) -> None:
    """Copy each run's recall CSVs (+ .info.json) and histories from ``results/ablation`` to ``out/runs``."""
    copied = replaced = 0
    for run in sorted((results / "ablation").glob("city*/seed*")):
        dest = out / "runs" / run.relative_to(results / "ablation")
        files = [*run.glob("*_test_recall.csv"), *run.glob("*_test_recall.csv.info.json"), *run.glob("*/history.csv")]
        for f in files:
            target = dest / f.relative_to(run)
            if target.exists() and filecmp.cmp(f, target, shallow=False):
                continue
            if target.exists():
                print(f"replaced: {target}")
                replaced += 1
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            copied += 1
    for hist in sorted((results / "recheck").glob("*/history.csv")):  # the teacher's learning-rate re-check
        target = out / "recheck" / hist.relative_to(results / "recheck")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(hist, target)
        copied += 1
    import torch

    from wakd.provenance import git_commit

    model, flags = cpu_model_and_flags()
    machine = {"date": date.today().isoformat(), "commit": git_commit(), "cpu": model, "cpu_flags": flags,
               "torch": torch.__version__, "cores": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"machine-{machine['date']}.json").write_text(json.dumps(machine, indent=2) + "\n")
    print(f"{copied} file(s) copied ({replaced} replaced) into {out / 'runs'}")


def variants() -> list[str]:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return ["teacher_init", "teacher", "student_init", *cfg["ablation"]["variants"]]


def report(out: Path) -> tuple[pd.DataFrame, str]:
    """The table of the configured variants over every committed run, and its Markdown."""
    wanted = variants()
    arm = lambda p: p.name.removesuffix("_test_recall.csv")  # noqa: E731
    paths = sorted((p for p in (out / "runs").glob("city*/seed*/*_test_recall.csv") if arm(p) in wanted),
                   key=lambda p: (wanted.index(arm(p)), str(p)))
    runs = read_runs(paths)
    table = ablation_table(runs, "student_nokd", "teacher")
    table.to_csv(out / "table.csv", index=False, float_format="%.6f")
    listing = ", ".join(sorted(runs["run"].unique()))
    text = (f"Runs ({runs['run'].nunique()}): {listing}. Test split, 25 m rule, % of queries; mean [95 % "
            "t-interval] over runs; Δ: paired difference to `student_nokd` [95 % t-interval]; / teacher: "
            "ratio of means over the same runs. Raw files: `bench/results/ablation/runs/`; this table: "
            "`python bench/ablation.py report` (`bench/results/ablation/table.csv`).\n\n" + markdown(table))
    return table, text


def search(out: Path) -> tuple[pd.DataFrame, str]:
    """Best validation R@5 per run of each search variant, its mean over runs, and the pick."""
    cfg = yaml.safe_load((REPO / "config/nokd_search.yaml").read_text())
    rows = []
    for name, block in cfg["ablation"]["variants"].items():
        for hist in sorted((out / "runs").glob(f"city*/seed*/{name}/history.csv")):
            h = pd.read_csv(hist)
            best = h.loc[h["R@5"].idxmax()]  # the first epoch reaching the maximum, as model_best keeps
            rows.append({"variant": name, "run": "-".join(hist.parts[-4:-2]), "lr": block["lr"],
                         "steps": block["epochs"] * 100, "best_epoch": int(best["epoch"]),
                         "val_R@5": best["R@5"], "val_R@1": best["R@1"], "epochs_run": len(h)})
    if not rows:
        sys.exit(f"no search histories under {out / 'runs'} (run the search, then collect)")
    df = pd.DataFrame(rows)
    df.to_csv(out / "nokd_search.csv", index=False, float_format="%.4f")
    mean = df.groupby("variant", sort=False).agg(lr=("lr", "first"), steps=("steps", "first"),
                                                 runs=("run", "count"), val_R5=("val_R@5", "mean"),
                                                 val_R1=("val_R@1", "mean"))
    pick = mean["val_R5"].idxmax()
    per_run = df.pivot(index="variant", columns="run", values="val_R@5").reindex(mean.index)
    lines = ["| variant | lr | steps | " + " | ".join(f"val R@5 {r}" for r in per_run.columns) +
             " | mean val R@5 | mean val R@1 at it |", "|" + "---|" * (5 + len(per_run.columns))]
    for name, r in mean.iterrows():
        cells = [f"**{name}**" if name == pick else name, f"{r['lr']:g}", str(int(r["steps"]))]
        cells += [f"{100 * v:.1f}" for v in per_run.loc[name]]
        cells += [f"{100 * r['val_R5']:.1f}", f"{100 * r['val_R1']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = ("Validation split (300 queries of all conditions, 25 m), best epoch of each run by R@5 (what "
            "selects `model_best`); raw: `bench/results/ablation/runs/*/*/student_nokd_*/history.csv`, table: "
            f"`python bench/ablation.py search` (`bench/results/ablation/nokd_search.csv`). Pick: **{pick}**.\n\n"
            + "\n".join(lines) + "\n")
    return df, text


def recheck(out: Path) -> tuple[pd.DataFrame, str]:
    """The teacher's Adam learning rate on validation: the ablation's teacher of city 0, training seed 0
    (lr 3e-4) against the same run at other rates (``results/recheck/teacher_lr*``, same options otherwise)."""
    runs = {"0.0003 (the recipe; the ablation's teacher)": out / "runs/city0/seed0/teacher/history.csv"}
    runs.update({f"{p.parent.name.removeprefix('teacher_lr')}": p for p in sorted((out / "recheck").glob(
        "teacher_lr*/history.csv"))})
    rows, lines = [], ["| Adam lr | val R@5 by epoch | best val R@5 | val R@1 at it |", "|---|---|---|---|"]
    for lr, path in runs.items():
        if not path.exists():
            continue
        h = pd.read_csv(path)
        best = h.loc[h["R@5"].idxmax()]
        rows.append({"lr": lr.split()[0], "best_epoch": int(best["epoch"]), "val_R@5": best["R@5"],
                     "val_R@1": best["R@1"], "epochs_run": len(h)})
        lines.append(f"| {lr} | {' '.join(f'{100 * v:.1f}' for v in h['R@5'])} | {100 * best['R@5']:.1f} | "
                     f"{100 * best['R@1']:.1f} |")
    df = pd.DataFrame(rows)
    df.to_csv(out / "teacher_lr_recheck.csv", index=False, float_format="%.4f")
    text = ("Teacher learning rate on the validation split (city 0, training seed 0, the demo recipe otherwise; one "
            "run each, so a difference under ~5 points is within one seed's spread): raw "
            "`bench/results/ablation/recheck/teacher_lr*/history.csv` and the ablation teacher's history; table: "
            "`python bench/ablation.py recheck` (`bench/results/ablation/teacher_lr_recheck.csv`).\n\n"
            + "\n".join(lines) + "\n")
    return df, text


PAIRS = (("student_wakd_sfrs", "student_wakd_script"), ("student_wakd_sfrs", "student_kd_rank"),
         ("student_wakd_script", "student_kd_rank"))


def pairs(out: Path) -> tuple[pd.DataFrame, str]:
    """Paired differences between two variants (``PAIRS``: the soft-label sources of the authors' setup, and
    each against ``kd_rank``), R@1 by condition, over the runs both have."""
    runs = read_runs(sorted((out / "runs").glob("city*/seed*/*_test_recall.csv")))
    rows = []
    lines = ["| A − B | pairs | Δ R@1 day | Δ R@1 sunset | Δ R@1 night | Δ R@1 all |", "|---|---|---|---|---|---|"]
    for a, b in PAIRS:
        if not {a, b} <= set(runs["variant"]):
            continue
        t = ablation_table(runs[runs["variant"].isin([a, b, "teacher"])], b, "teacher")
        t = t[(t["variant"] == a) & (t["rule"] == "25m")].set_index("condition")
        rows += [{"a": a, "b": b, "condition": c, "pairs": int(r["pairs"]), "diff_R@1": r["R@1_diff"],
                  "lo": r["R@1_diff_lo"], "hi": r["R@1_diff_hi"]} for c, r in t.iterrows()]
        cells = [f"{100 * t.loc[c, 'R@1_diff']:+.1f} [{100 * t.loc[c, 'R@1_diff_lo']:+.1f}, "
                 f"{100 * t.loc[c, 'R@1_diff_hi']:+.1f}]" for c in ("day", "sunset", "night", "all")]
        lines.append(f"| `{a}` − `{b}` | {int(t['pairs'].iloc[0])} | " + " | ".join(cells) + " |")
    df = pd.DataFrame(rows)
    df.to_csv(out / "pairs.csv", index=False, float_format="%.6f")
    text = ("Paired differences between variants (test, 25 m, R@1 points, 95 % t-interval over the runs both have); "
            "raw: `bench/results/ablation/runs/`, table: `python bench/ablation.py pairs` "
            "(`bench/results/ablation/pairs.csv`).\n\n" + "\n".join(lines) + "\n")
    return df, text


def replace_between(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- ablation:NAME -->`` and ``<!-- /ablation:NAME -->`` in ``path``."""
    doc = path.read_text()
    start, end = f"<!-- ablation:{name} -->", f"<!-- /ablation:{name} -->"
    if start not in doc or end not in doc:
        sys.exit(f"{path}: no {start} ... {end} markers")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("collect", "report", "search", "recheck", "pairs"))
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/ablation")
    ap.add_argument("--write", action="store_true", help="also update BENCHMARKS.md (and README.md)")
    args = ap.parse_args()
    if args.command == "collect":
        collect(args.results, args.out)
        return
    if args.command in ("search", "recheck", "pairs"):
        _, text = {"search": search, "recheck": recheck, "pairs": pairs}[args.command](args.out)
        print(text)
        if args.write:
            replace_between(REPO / "BENCHMARKS.md", args.command, text)
        return
    table, text = report(args.out)
    print(text)
    if args.write:
        replace_between(REPO / "BENCHMARKS.md", "table", text)
        replace_between(REPO / "README.md", "headline", headline(table, validation_best(args.out)))


def validation_best(out: Path) -> pd.Series:
    """Each trained variant's best validation R@5 (what selects its model_best), mean over its runs."""
    rows = [{"variant": h.parent.name, "R@5": pd.read_csv(h)["R@5"].max()}
            for h in (out / "runs").glob("city*/seed*/*/history.csv")]
    return pd.DataFrame(rows).groupby("variant")["R@5"].mean()


def headline(table: pd.DataFrame, val: pd.Series) -> str:
    """The README's one-paragraph summary: the KD variant with the best mean validation R@5 (chosen on
    validation, not on the test figures it reports) against no KD and the teacher."""
    part = table[(table["rule"] == "25m")].set_index(["variant", "condition"])
    kd = [v for v in part.index.get_level_values(0).unique() if v.startswith("student_") and v not in
          ("student_nokd", "student_init") and v in val.index]
    best = max(kd, key=lambda v: val[v])

    def fmt(v: str, c: str, kind: str = "") -> str:
        r = part.loc[(v, c)]
        m, lo, hi = 100 * r[f"R@1{kind or '_mean'}"], 100 * r[f"R@1{kind}_lo"], 100 * r[f"R@1{kind}_hi"]
        sign, unit = ("+" if m > 0 else "", " points") if kind else ("", " %")
        return f"{sign}{m:.1f}{unit} [{lo:+.1f}, {hi:+.1f}]" if pd.notna(lo) and kind else (
            f"{m:.1f}{unit} [{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else f"{sign}{m:.1f}{unit}")

    n = int(part.loc[(best, "day"), "runs"])
    return (f"KD ablation, {n} runs (test R@1 at 25 m, mean [95 % CI]): the distilled student with the best "
            f"validation recall, `{best}` (mean best validation R@5 {100 * val[best]:.1f} %), "
            f"reaches {fmt(best, 'day')} by day and {fmt(best, 'all')} over all conditions, "
            f"{100 * part.loc[(best, 'day'), 'R@1_teacher']:.0f} % of the teacher's day R@1 "
            f"({fmt('teacher', 'day')}); paired gain over the no-KD student (`student_nokd`, its own recipe): "
            f"{fmt(best, 'day', '_diff')} by day, {fmt(best, 'all', '_diff')} over all conditions. "
            "Every variant, condition and run: BENCHMARKS.md, \"The KD ablation\".")


if __name__ == "__main__":
    main()
