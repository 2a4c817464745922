"""``wakd curves``: the training curves of one or more runs (``history.csv`` of ``wakd train`` / ``wakd distill``)
on one page: one row per run, with per epoch

* its loss terms (the optimised loss, the ranking loss, and each KD / soft term a run logs; log scale),
* its validation Recall@1/5/10 over all queries (solid) and R@1 per capture condition (dashed), the epoch
  selecting ``model_best`` marked,
* the re-mining share of its training time and, for distillation, each weighted term's share of the gradient
  norm (``gshare_*``).

Generation boundaries (``--generations``) are drawn as vertical lines. The plotted values are the history's,
unchanged (epochs counted from 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from wakd.options import Options, option

LOSS_COLUMNS = ("loss", "hard_loss", "kd_vlad", "kd_att", "kd_rank", "soft_loss")


@dataclass(kw_only=True)
class CurvesConfig(Options):
    """training curves of runs (history.csv) on one page

    Per run and epoch: loss terms, validation Recall@1/5/10 (and R@1 per condition), the re-mining share of
    the training time and, for distillation, each term's share of the gradient.
    """

    history: tuple[str, ...] = option(help="history.csv of each run (wakd train / distill --out-dir)", path="in")
    labels: tuple[str, ...] | None = option(None, "a name per run (default: each history's folder name)")
    out: str = option(help="PNG to write", path="out")
    select_metric: str = option("R@5", "the validation metric that selected model_best (marked)")


def read_history(path: str | os.PathLike):
    """A run's history as a DataFrame, checked: an epoch column and at least one row."""
    import io

    import pandas as pd

    from wakd.utils import WakdError, read_csv_text, require_file

    require_file(path, "a training history (history.csv of wakd train / distill)")
    try:
        table = pd.read_csv(io.StringIO(read_csv_text(path)))
    except (OSError, ValueError) as exc:
        raise WakdError(f"{path}: not a readable CSV table ({str(exc).splitlines()[0]})") from None
    if table.empty or "epoch" not in table or "loss" not in table:
        raise WakdError(f"{path}: expected a history.csv with rows and the columns epoch and loss")
    for c in table.columns:
        if not pd.api.types.is_numeric_dtype(table[c]):
            raise WakdError(f"{path}: column {c} holds {table[c].iloc[0]!r}; expected numbers")
    return table


def training_curves(runs: list[tuple[str, object]], out: str | os.PathLike, select_metric: str = "R@5") -> dict:
    """Draw ``runs`` (``(label, history DataFrame)``) to ``out``; returns ``{(label, column): y values}`` of every
    line drawn (epochs are ``epoch + 1``)."""
    from wakd.report import _pyplot, _save

    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(runs), 3, figsize=(15, 3.3 * len(runs)), squeeze=False)
    drawn: dict = {}

    def line(ax, label, hist, col, **kw):
        x, y = hist["epoch"] + 1, hist[col]
        shown = 100 * y if kw.pop("percent", False) else y
        if kw.pop("log", False):
            shown = shown.where(shown > 0)  # a term that is 0 (before generation 1) has no place on a log axis
        ax.plot(x, shown, marker="o", ms=3, label=col, **kw)
        drawn[(label, col)] = y.tolist()

    for (label, hist), (ax_loss, ax_rec, ax_share) in zip(runs, axes):
        for col in [c for c in LOSS_COLUMNS if c in hist and (hist[c] > 0).any()]:
            line(ax_loss, label, hist, col, log=True)
        ax_loss.set_yscale("log")
        ax_loss.set_title(f"{label}: loss terms (epoch means)", fontsize=10)
        for i, col in enumerate(c for c in ("R@1", "R@5", "R@10") if c in hist):
            line(ax_rec, label, hist, col, percent=True, color=f"C{i}")
        for i, col in enumerate(c for c in hist.columns if c.endswith("_R@1") and not c.startswith("R@")):
            line(ax_rec, label, hist, col, percent=True, color=f"C{i + 3}", linestyle="--")
        if select_metric in hist:
            best = hist.loc[hist[select_metric].idxmax()]
            ax_rec.axvline(best["epoch"] + 1, color="0.5", linewidth=0.8, linestyle=":")
        ax_rec.set_ylim(0, 100)
        ax_rec.set_title(f"{label}: validation recall (%; dotted: model_best by {select_metric})", fontsize=10)
        for col in [c for c in ("cache_share", *(c for c in hist.columns if c.startswith("gshare_"))) if c in hist]:
            line(ax_share, label, hist, col, percent=True)
        ax_share.set_ylim(0, 100)
        ax_share.set_title(f"{label}: re-mining share of time, gradient shares (%)", fontsize=10)
        for ax in (ax_loss, ax_rec, ax_share):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            if "generation" in hist:
                for e in hist["epoch"][hist["generation"].diff() > 0]:
                    ax.axvline(e + 0.5, color="k", linewidth=0.6)
    fig.tight_layout()
    _save(fig, out)
    return drawn


def run(cfg: CurvesConfig) -> dict:
    """Read the histories, draw the page."""
    from pathlib import Path

    from wakd.utils import WakdError

    labels = cfg.labels or tuple(Path(h).parent.name or Path(h).stem for h in cfg.history)
    if len(labels) != len(cfg.history):
        raise WakdError(f"--labels: {len(labels)} names for {len(cfg.history)} --history files; expected one each")
    runs = [(label, read_history(h)) for label, h in zip(labels, cfg.history)]
    return training_curves(runs, cfg.out, cfg.select_metric)
