"""``wakd ablation``: the KD ablation table (mean, 95 % CI, paired differences) from per-run recall CSVs.

Each input is the recall CSV of one network of one run (``wakd evaluate``), whose ``model`` column
names both, as ``VARIANT@RUN`` (the pipeline writes ``student_kd_rank@city0-seed1``): a run is one
(city, training seed) pair, with one teacher and every student variant distilled from it. Per
(variant, rule, condition) and recall column ``R@N`` the table gives, over the variant's runs:

- ``R@N_mean`` and the 95 % confidence interval of the mean, ``R@N_lo`` / ``R@N_hi``: Student's t,
  ``mean ± t(0.975, n-1) · sd / sqrt(n)`` with the sample standard deviation (``ddof=1``); empty
  with one run;
- ``R@N_diff`` and ``R@N_diff_lo`` / ``R@N_diff_hi``: the paired difference to the ``--baseline``
  variant (``variant - baseline`` in each run both have, then the same t-interval over those
  ``pairs`` differences), the comparison a seed-to-seed spread cannot blur;
- ``R@N_teacher``: the ratio of the variant's mean to the ``--teacher`` row's mean over the same runs;
- ``runs``: how many runs the row averages, ``pairs``: how many the difference pairs.

Recalls stay fractions in [0, 1], as in the runs' CSVs, so a row is recomputed from them directly.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wakd.options import Options, option
from wakd.utils import WakdError

LABEL = re.compile(r"^(?P<variant>[A-Za-z0-9_.+-]+)@(?P<run>[A-Za-z0-9_.+-]+)$")
KEYS = ["variant", "rule", "condition"]


@dataclass(kw_only=True)
class AblationConfig(Options):
    """the KD ablation table: mean and confidence interval per variant, paired differences to a baseline

    Read one recall CSV per (network, run) from 'wakd evaluate', with model column VARIANT@RUN, and write
    one row per (variant, rule, condition): mean and t-interval of each R@N over the runs, the paired
    difference to --baseline with its t-interval, the ratio to --teacher and the number of runs.
    """

    recall: tuple[str, ...] = option(help="recall CSVs of every run, model column VARIANT@RUN", path="in")
    out: str = option(help="CSV to write (and OUT.info.json, its provenance)", path="out")
    figure: str | None = option(None, "PNG: each variant's mean --metric and its interval per condition, "
                                      "every run a dot", path="out")
    baseline: str = option("student_nokd", "the variant paired differences are taken against")
    teacher: str = option("teacher", "the variant ratios are taken to")
    split: str = option("test", "the split tabulated")
    rule: str = option("25m", "the rule drawn in --figure")
    metric: str = option("R@1", "the recall drawn in --figure")
    confidence: float = option(0.95, "level of the intervals", choices=(0.9, 0.95, 0.99))


def read_runs(paths: Sequence[str | os.PathLike], split: str = "test") -> pd.DataFrame:
    """The recall rows of ``split`` in ``paths`` with ``variant`` and ``run`` columns from ``VARIANT@RUN``."""
    from wakd.report import read_tables

    frames = []
    for p in paths:
        df = read_tables([p])
        for label in df["model"].unique():
            if not LABEL.match(str(label)):
                raise WakdError(f"{p}: model {label!r} is not VARIANT@RUN (e.g. student_nokd@city0-seed0); "
                                "the ablation reads the recall CSVs its pipeline target writes")
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table = table[table["split"] == split].copy()
    if table.empty:
        raise WakdError(f"--recall: no rows of split {split!r} in the {len(paths)} CSV(s) (--split)")
    parts = table["model"].str.extract(LABEL)
    table["variant"], table["run"] = parts["variant"], parts["run"]
    dup = table.duplicated(["variant", "run", "dataset", "rule", "condition"], keep=False)
    if dup.any():
        row = table[dup].iloc[0]
        raise WakdError(f"--recall: run {row['run']} of {row['variant']} appears twice ({row['rule']}, "
                        f"{row['condition']}); give each run's CSV once")
    return table


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval of the mean; low = high = NaN with fewer than 2 values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def ablation_table(runs: pd.DataFrame, baseline: str, teacher: str, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (variant, rule, condition) of :func:`read_runs`'s rows; see the module's doc."""
    metrics = [c for c in runs.columns if c.startswith("R@")]
    order = list(dict.fromkeys(runs["variant"]))
    rows = []
    for (variant, rule, condition), part in runs.groupby(KEYS, sort=False):
        by_run = part.set_index("run")
        row = {"variant": variant, "rule": rule, "condition": condition, "runs": len(part),
               "queries": int(part["queries"].iloc[0])}
        ref = runs[(runs["variant"] == baseline) & (runs["rule"] == rule) & (runs["condition"] == condition)]
        ref = ref.set_index("run")
        common = by_run.index.intersection(ref.index)
        tch = runs[(runs["variant"] == teacher) & (runs["rule"] == rule) & (runs["condition"] == condition)]
        tch = tch.set_index("run")
        with_teacher = by_run.index.intersection(tch.index)
        row["pairs"] = len(common)
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_lo"], row[f"{m}_hi"] = t_interval(by_run[m], confidence)
            diff = by_run.loc[common, m] - ref.loc[common, m]
            row[f"{m}_diff"], row[f"{m}_diff_lo"], row[f"{m}_diff_hi"] = t_interval(diff, confidence)
            teacher_mean = tch.loc[with_teacher, m].mean() if len(with_teacher) else math.nan
            row[f"{m}_teacher"] = (by_run.loc[with_teacher, m].mean() / teacher_mean
                                   if teacher_mean and not math.isnan(teacher_mean) else math.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["variant"] = pd.Categorical(table["variant"], order, ordered=True)
    return table.sort_values(["rule", "condition", "variant"], kind="stable").reset_index(drop=True)


def markdown(table: pd.DataFrame, rule: str = "25m", metrics: Sequence[str] = ("R@1", "R@5"),
             conditions: Sequence[str] = ("day", "sunset", "night", "all"), baseline: str = "student_nokd") -> str:
    """The table of ``rule`` as Markdown, in %: per metric, the means [CI] with the ratios to the teacher,
    then the paired differences to ``baseline`` [CI]."""
    def pct(v: float, sign: bool = False) -> str:
        return "–" if v is None or math.isnan(v) else (f"{100 * v:+.1f}" if sign else f"{100 * v:.1f}")

    def cell(r: pd.Series, m: str, kind: str = "") -> str:
        mean, lo, hi = r[f"{m}{kind or '_mean'}"], r[f"{m}{kind}_lo"], r[f"{m}{kind}_hi"]
        text = pct(mean, bool(kind))
        return text if math.isnan(lo) else f"{text} [{pct(lo, bool(kind))}, {pct(hi, bool(kind))}]"

    def ratio(v: float) -> str:
        return "–" if math.isnan(v) else f"{100 * v:.0f} %"

    part = table[table["rule"] == rule]
    conditions = [c for c in conditions if c in set(part["condition"])]
    variants = [v for v in dict.fromkeys(part["variant"]) if (part["variant"] == v).any()]
    by = {(r["variant"], r["condition"]): r for _, r in part.iterrows()}
    lines = []
    for m in metrics:
        head = ["variant", "runs", *(f"{m} {c}" for c in conditions), *(f"{c} / teacher" for c in ("day", "all")
                                                                          if c in conditions)]
        lines += [f"**{m}**, mean [95 % CI] over runs, % of queries:", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for v in variants:
            first = next(by[(v, c)] for c in conditions if (v, c) in by)
            cells = [f"`{v}`", str(first["runs"]), *(cell(by[(v, c)], m) if (v, c) in by else "" for c in conditions)]
            cells += [ratio(by[(v, c)][f"{m}_teacher"]) if (v, c) in by else "" for c in ("day", "all")
                      if c in conditions]
            lines.append("| " + " | ".join(cells) + " |")
        head = ["variant", "pairs", *(f"Δ {m} {c}" for c in conditions)]
        lines += ["", f"**{m}, paired difference to `{baseline}`** (variant − no KD in each run, points) [95 % CI]:",
                  "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for v in variants:
            if v == baseline:
                continue
            first = next(by[(v, c)] for c in conditions if (v, c) in by)
            cells = [f"`{v}`", str(first["pairs"])]
            cells += [cell(by[(v, c)], m, "_diff") if (v, c) in by and by[(v, c)]["pairs"] else "" for c in conditions]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def ablation_figure(runs: pd.DataFrame, table: pd.DataFrame, out: str | os.PathLike, rule: str = "25m",
                    metric: str = "R@1", baseline: str = "student_nokd") -> None:
    """One panel per condition: each variant's mean (bar), its CI (error bar), every run (dots) and the
    baseline's mean (dashed line)."""
    from wakd.report import CONDITION_ORDER, _pyplot, _save

    plt = _pyplot()
    part = table[table["rule"] == rule]
    conditions = [c for c in CONDITION_ORDER if c in set(part["condition"])]
    variants = [v for v in part["variant"].cat.categories if v in set(part["variant"])]
    fig, axes = plt.subplots(1, len(conditions), figsize=(3.2 * len(conditions) + 1.5, 0.35 * len(variants) + 1.8),
                             sharey=True, squeeze=False)
    for ax, cond in zip(axes[0], conditions):
        rows = part[part["condition"] == cond].set_index("variant")
        for y, v in enumerate(variants):
            if v not in rows.index:
                continue
            r = rows.loc[v]
            mean, lo, hi = 100 * r[f"{metric}_mean"], 100 * r[f"{metric}_lo"], 100 * r[f"{metric}_hi"]
            ax.barh(y, mean, color="#9ecae1", height=0.6)
            if not math.isnan(lo):
                ax.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], color="k", capsize=3, lw=1)
            dots = runs[(runs["variant"] == v) & (runs["rule"] == rule) & (runs["condition"] == cond)]
            ax.plot(100 * dots[metric], np.full(len(dots), y), "o", color="#d62728", ms=3.5, alpha=0.8)
        if baseline in rows.index:
            ax.axvline(100 * rows.loc[baseline, f"{metric}_mean"], color="0.4", ls="--", lw=0.8)
        ax.set_title(f"{cond} ({int(rows['queries'].iloc[0])} queries/run)", fontsize=9)
        ax.set_xlabel(f"{metric} (%), {rule}")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(variants)), variants, fontsize=8)
    axes[0][0].invert_yaxis()
    n = int(part["runs"].max())
    fig.suptitle(f"KD ablation: mean over runs (bar), 95 % CI (line), each run (dot), {baseline} mean (dashed); "
                 f"up to {n} runs", fontsize=10)
    fig.tight_layout()
    _save(fig, out)


def check_outputs(cfg: AblationConfig) -> None:
    """Refuse an ``OUT.info.json`` (the provenance written beside ``--out``) that is an input or the figure;
    ``--out`` and ``--figure`` themselves are checked by the guard every command has
    (:func:`wakd.options.check_paths`)."""
    from wakd.options import same_file
    from wakd.provenance import beside

    info = beside(cfg.out)
    for flag, path in [*(("--recall", r) for r in cfg.recall), ("--figure", cfg.figure)]:
        if path and same_file(info, path):
            raise WakdError(f"--out {cfg.out}: its provenance {info} is also {flag} {path}; write the table elsewhere")


def run(cfg: AblationConfig) -> pd.DataFrame:
    """Write the table (and figure), print it as Markdown."""
    from wakd.provenance import beside, write_record
    from wakd.utils import atomic_outputs

    check_outputs(cfg)
    runs = read_runs(cfg.recall, cfg.split)
    for name, option_name in ((cfg.baseline, "--baseline"), (cfg.teacher, "--teacher")):
        if name not in set(runs["variant"]):
            raise WakdError(f"{option_name} {name}: no such variant in the CSVs "
                            f"(found: {', '.join(sorted(set(runs['variant'])))})")
    table = ablation_table(runs, cfg.baseline, cfg.teacher, cfg.confidence)
    with atomic_outputs(cfg.out, beside(cfg.out), cfg.figure) as (csv, info, figure):
        if figure:
            ablation_figure(runs, table, figure, cfg.rule, cfg.metric, cfg.baseline)
        write_record(cfg, info)
        table.to_csv(csv, index=False, float_format="%.6f")
    print(markdown(table, cfg.rule, baseline=cfg.baseline))
    return table
