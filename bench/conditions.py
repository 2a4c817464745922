"""Day, sunset and night (issue 26): keep every recipe run's files, recompute every figure from them.

    python bench/conditions.py collect RUN_DIR... [--out bench/results/conditions]
    python bench/conditions.py demo RECALL_CSV... --name NAME [--out bench/results/conditions]
    python bench/conditions.py report [--out bench/results/conditions] [--write]

``collect`` copies each training run folder's ``history.csv`` and its recorded options (the ``config`` of
its ``checkpoint.pth.tar``: seed, city, every option) to ``OUT/recipes/<run>/`` and the machine (CPU model
and flags, versions, commit, date) to ``OUT/machine-<date>.json``.

``demo`` joins recall tables (a pipeline's ``results/synthetic_recall.csv``, or per-model tables of
``wakd evaluate`` / ``wakd baseline``) into ``OUT/demo/<NAME>.csv`` and their ``.info.json`` records into
``OUT/demo/<NAME>.csv.info.json``: the test split per condition, with ``hub_share``. (``OUT/demo/histories/``
holds the demo runs' ``history.csv`` files, validation R@1 per condition each epoch, copied by hand.)

``report`` recomputes, into ``OUT/recipes.csv``, ``OUT/demo.csv`` and ``OUT/demo_validation.csv``, and prints
as Markdown:

* per recipe run, the validation epoch that selects ``model_best`` (highest R@5, the first on ties), its
  R@1 / R@5 over all queries and its R@1 per condition: what the demo recipe is chosen on;
* per demo table, the test split's R@1 per condition and ``hub_share`` of each model;
* per demo run's history, the validation epoch that selects ``model_best`` and its R@5 / R@1;
* per pair of demo runs in :data:`PAIRS` (the same city and seed, before and after a change), the
  differences after − before of each trained model's validation R@5 and test R@1, and per change their
  mean over the pairs with a 95 % t interval (``OUT/demo_pairs.csv``).

With ``--write`` it also replaces the parts of BENCHMARKS.md between ``<!-- conditions:NAME -->`` and
``<!-- /conditions:NAME -->``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from datetime import date
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model_and_flags  # noqa: E402

CONDITIONS = ("day", "sunset", "night")
# (change, city, seed, before table, after table): demo runs that differ in that change only
PAIRS = (
    ("one precise-BN choice (1b1144e)", 0, 0, "after_city0", "bnchoice_city0"),
    ("one precise-BN choice (1b1144e)", 0, 1, "before_bnchoice_city0_seed1", "bnchoice_city0_seed1"),
    ("one precise-BN choice (1b1144e)", 0, 2, "before_bnchoice_city0_seed2", "bnchoice_city0_seed2"),
    ("one precise-BN choice (1b1144e)", 0, 3, "before_bnchoice_city0_seed3", "bnchoice_city0_seed3"),
    ("one precise-BN choice (1b1144e)", 1, 0, "after_city1", "bnchoice_city1"),
)
TRAINED = ("teacher", "student_kd", "student_nokd")
RECIPE_OPTIONS = ("root", "seed", "epochs", "queries_per_epoch", "jitter", "relight", "query_balance", "lr",
                  "num_clusters")


def _machine(out: Path) -> None:
    from wakd.provenance import git_commit

    model, flags = cpu_model_and_flags()
    (out / f"machine-{date.today().isoformat()}.json").write_text(json.dumps(
        {"date": date.today().isoformat(), "commit": git_commit(REPO), "cpu": model, "cpu_flags": flags}, indent=1)
        + "\n")


def collect(runs: list[Path], out: Path) -> None:
    """Copy each run's history and recorded options to ``out/recipes/<run name>/``."""
    from wakd.models.weights import load_trusted

    for run in runs:
        dest = out / "recipes" / run.name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run / "history.csv", dest / "history.csv")
        ck = load_trusted(run / "checkpoint.pth.tar")
        (dest / "options.json").write_text(json.dumps({"config": ck["config"], "provenance": ck.get("provenance")},
                                                      indent=1, default=str) + "\n")
        print(f"{run} -> {dest}")
    _machine(out)


def demo(tables: list[Path], name: str, out: Path) -> None:
    """Join recall tables (a pipeline's ``results/synthetic_recall.csv``, or per-model ``wakd evaluate`` /
    ``wakd baseline`` tables) into ``out/demo/<name>.csv``, their records into ``<name>.csv.info.json``."""
    dest = out / "demo"
    dest.mkdir(parents=True, exist_ok=True)
    pd.concat([pd.read_csv(t) for t in tables], ignore_index=True).to_csv(dest / f"{name}.csv", index=False)
    records = {str(t): json.loads(Path(f"{t}.info.json").read_text()) for t in tables
               if Path(f"{t}.info.json").exists()}
    (dest / f"{name}.csv.info.json").write_text(json.dumps(records, indent=1) + "\n")
    _machine(out)


def recipe_rows(out: Path) -> pd.DataFrame:
    """One row per recipe run: its options and the validation figures of its selected epoch."""
    rows = []
    for run in sorted((out / "recipes").iterdir()):
        hist = pd.read_csv(run / "history.csv")
        cfg = json.loads((run / "options.json").read_text())["config"]
        best = hist.loc[hist["R@5"].idxmax()]  # model_best: the first epoch with the highest R@5
        row = {"run": run.name, **{k: cfg.get(k) for k in RECIPE_OPTIONS}, "best_epoch": int(best["epoch"]),
               "epochs_run": len(hist), "val_R@1": best["R@1"], "val_R@5": best["R@5"],
               **{f"val_{c}_R@1": best.get(f"{c}_R@1") for c in CONDITIONS},
               "minutes": round(hist[["cache_seconds", "train_seconds", "val_seconds"]].to_numpy().sum() / 60, 1)}
        row["input_norm"] = (cfg.get("arch_kwargs") or {}).get("input_norm", "none")
        row["jitter"] = " ".join(f"{v:g}" for v in row["jitter"] or ()) if any(row["jitter"] or ()) else "–"
        row["root"] = Path(str(row["root"])).name
        rows.append(row)
    return pd.DataFrame(rows)


def demo_rows(out: Path) -> pd.DataFrame:
    """Per demo table and model: the test split's R@1 per condition (25 m rule) and hub_share."""
    rows = []
    for f in sorted((out / "demo").glob("*.csv")):
        t = pd.read_csv(f)
        t = t[(t["rule"] == "25m") & (t["split"] == "test")]
        for model, part in t.groupby("model", sort=False):
            by = part.set_index("condition")
            row = {"table": f.stem, "model": model}
            for c in ("all", *CONDITIONS):
                row[f"{c}_R@1"] = by.loc[c, "R@1"] if c in by.index else float("nan")
                row[f"{c}_hub"] = by.loc[c, "hub_share"] if c in by.index and "hub_share" in by else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def _pct(v) -> str:
    return "–" if pd.isna(v) else f"{100 * v:.1f}"


def recipes_markdown(t: pd.DataFrame) -> str:
    lines = ["| run | city | input norm | jitter | relight | balance | epochs × queries | selected epoch | val R@1 | "
             "val R@5 | day R@1 | sunset R@1 | night R@1 | minutes |", "|" + "---|" * 14]
    for _, r in t.iterrows():
        lines.append(f"| `{r['run']}` | {r['root']} | {r['input_norm']} | {r['jitter']} | {r['relight']:g} | "
                     f"{r['query_balance']} "
                     f"| {r['epochs']} × {r['queries_per_epoch']} | {r['best_epoch'] + 1} of {r['epochs_run']} | "
                     f"{_pct(r['val_R@1'])} | {_pct(r['val_R@5'])} | {_pct(r['val_day_R@1'])} | "
                     f"{_pct(r['val_sunset_R@1'])} | {_pct(r['val_night_R@1'])} | {r['minutes']} |")
    return "\n".join(lines)


def demo_markdown(t: pd.DataFrame) -> str:
    lines = ["| table | model | all R@1 | day R@1 | sunset R@1 | night R@1 | hub share day / sunset / night |",
             "|" + "---|" * 7]
    for _, r in t.iterrows():
        hubs = " / ".join(_pct(r[f"{c}_hub"]) for c in CONDITIONS)
        lines.append(f"| {r['table']} | `{r['model']}` | {_pct(r['all_R@1'])} | {_pct(r['day_R@1'])} | "
                     f"{_pct(r['sunset_R@1'])} | {_pct(r['night_R@1'])} | {hubs} |")
    return "\n".join(lines)


def replace_marked(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- conditions:name -->`` and ``<!-- /conditions:name -->`` in ``path``."""
    src = path.read_text()
    pattern = re.compile(rf"(<!-- conditions:{name} -->\n).*?(<!-- /conditions:{name} -->)", re.S)
    if not pattern.search(src):
        raise SystemExit(f"{path}: no <!-- conditions:{name} --> ... <!-- /conditions:{name} --> markers")
    path.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), src))


def history_rows(out: Path) -> pd.DataFrame:
    """Per demo run's ``history.csv`` (``demo/histories/<table>_<model>_history.csv``): the validation epoch
    that selects ``model_best`` (highest R@5, the first on ties) and its R@5 / R@1."""
    rows = []
    for f in sorted((out / "demo/histories").glob("*_history.csv")):
        hist = pd.read_csv(f)
        best = hist.loc[hist["R@5"].idxmax()]
        table, model = re.match(r"(.+?_city\d+(?:_seed\d+)?)_(.+)_history", f.stem).groups()
        rows.append({"table": table, "model": model, "best_epoch": int(best["epoch"]), "epochs": len(hist),
                     "val_R@5": best["R@5"], "val_R@1": best["R@1"]})
    return pd.DataFrame(rows)


def histories_markdown(t: pd.DataFrame) -> str:
    lines = ["| table | model | model_best epoch (of) | validation R@5 | validation R@1 |", "|---|---|---|---|---|"]
    lines += [f"| {r.table} | {r.model} | {r.best_epoch} ({r.epochs}) | {100 * r['val_R@5']:.1f} | "
              f"{100 * r['val_R@1']:.1f} |" for _, r in t.iterrows()]
    return "\n".join(lines)


def pair_rows(val: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Per pair of :data:`PAIRS` whose runs are all in ``val`` (:func:`history_rows`) and ``test``
    (:func:`demo_rows`), per trained model: after − before of the validation R@5 (the selection metric)
    and of the test R@1 over all queries."""
    val = val.set_index(["table", "model"])
    test = test.assign(model=test["model"].str.split("-").str[0]).set_index(["table", "model"])
    rows = []
    for change, city, seed, before, after in PAIRS:
        for model in TRAINED:
            keys = [(before, model), (after, model)]
            if not all(k in val.index and k in test.index for k in keys):
                continue
            rows.append({"change": change, "city": city, "seed": seed, "model": model,
                         "val_R@5_before": val.loc[keys[0], "val_R@5"], "val_R@5_after": val.loc[keys[1], "val_R@5"],
                         "test_R@1_before": test.loc[keys[0], "all_R@1"],
                         "test_R@1_after": test.loc[keys[1], "all_R@1"]})
    t = pd.DataFrame(rows)
    if len(t):
        t["val_R@5_diff"] = t["val_R@5_after"] - t["val_R@5_before"]
        t["test_R@1_diff"] = t["test_R@1_after"] - t["test_R@1_before"]
    return t


def _mean_ci(x: pd.Series) -> str:
    """Mean and 95 % t interval ``mean [low, high]``, in points (one value: the mean alone)."""
    from scipy import stats

    x = 100 * x.to_numpy()
    if len(x) < 2:
        return f"{x.mean():+.1f} (one pair)"
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / len(x) ** 0.5
    return f"{x.mean():+.1f} [{x.mean() - half:+.1f}, {x.mean() + half:+.1f}]"


def pairs_markdown(t: pd.DataFrame) -> str:
    lines = ["| change | city | seeds | model | validation R@5, after − before | mean [95 % CI] "
             "| test R@1, after − before | mean [95 % CI] |", "|" + "---|" * 8]
    for (change, city, model), part in t.groupby(["change", "city", "model"], sort=False):
        each = " / ".join(f"{100 * v:+.1f}" for v in part["val_R@5_diff"])
        each_test = " / ".join(f"{100 * v:+.1f}" for v in part["test_R@1_diff"])
        seeds = ", ".join(str(s) for s in part["seed"])
        lines.append(f"| {change} | {city} | {seeds} | {model} | {each} | {_mean_ci(part['val_R@5_diff'])} | "
                     f"{each_test} | {_mean_ci(part['test_R@1_diff'])} |")
    return "\n".join(lines)


def report(out: Path, write: bool) -> None:
    parts = {}
    if (out / "recipes").is_dir():
        t = recipe_rows(out)
        t.to_csv(out / "recipes.csv", index=False, float_format="%.4f")
        parts["recipes"] = recipes_markdown(t)
    if (out / "demo").is_dir():
        test = demo_rows(out)
        test.to_csv(out / "demo.csv", index=False, float_format="%.4f")
        parts["demo"] = demo_markdown(test)
    if (out / "demo/histories").is_dir():
        val = history_rows(out)
        val.to_csv(out / "demo_validation.csv", index=False, float_format="%.4f")
        parts["demo-validation"] = histories_markdown(val)
        t = pair_rows(val, test)
        t.to_csv(out / "demo_pairs.csv", index=False, float_format="%.4f")
        parts["demo-pairs"] = pairs_markdown(t)
    for name, text in parts.items():
        print(text + "\n")
        if write:
            replace_marked(REPO / "BENCHMARKS.md", name, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("runs", nargs="+", type=Path)
    d = sub.add_parser("demo")
    d.add_argument("tables", nargs="+", type=Path)
    d.add_argument("--name", required=True)
    r = sub.add_parser("report")
    r.add_argument("--write", action="store_true")
    for s in (c, d, r):
        s.add_argument("--out", type=Path, default=REPO / "bench/results/conditions")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.cmd == "collect":
        collect(a.runs, a.out)
    elif a.cmd == "demo":
        demo(a.tables, a.name, a.out)
    else:
        report(a.out, a.write)


if __name__ == "__main__":
    main()
