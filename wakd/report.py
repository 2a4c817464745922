"""Figures: Recall@N curves comparing models, and qualitative grids of queries with predictions."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from wakd.data.images import load_image  # noqa: E402
from wakd.utils import WakdError, atomic_path  # noqa: E402

TABLE_COLUMNS = ("model", "dataset", "split", "rule", "condition", "queries")


def read_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate recall CSVs, checking their columns."""
    frames = []
    for p in paths:
        try:
            df = pd.read_csv(p)
        except (OSError, ValueError) as exc:
            raise WakdError(f"{p}: not a readable CSV table ({str(exc).splitlines()[0]})") from None
        missing = [c for c in TABLE_COLUMNS if c not in df.columns]
        if missing or not any(c.startswith("R@") for c in df.columns):
            raise WakdError(f"{p}: not a recall table (missing columns {', '.join(missing) or 'R@N'})")
        for c in [c for c in df.columns if c.startswith("R@")]:
            values = pd.to_numeric(df[c], errors="coerce")
            if values.isna().any() or not values.between(0, 1).all():
                raise WakdError(f"{p}: column {c} holds {df[c][values.isna() | ~values.between(0, 1)].iloc[0]!r}; "
                                "expected recalls as fractions in [0, 1]")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _save(fig, out: str | os.PathLike) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


CONDITION_ORDER = ("all", "day", "sunset", "night")


def recall_curves(table: pd.DataFrame, out: str | os.PathLike, rule: str = "25m",
                  condition: str = "each") -> list[str]:
    """Recall@N against N, one line per model: one row of panels per dataset and, with
    ``condition="each"`` (default), one panel per query condition (all, day, sunset, night where
    known), so a difference hidden in ``all`` shows; a condition name plots only that one.

    Returns:
        The panels' titles, row by row.
    """
    sel = table[table["rule"] == rule]
    if condition != "each":
        sel = sel[sel["condition"] == condition]
    if sel.empty:
        raise WakdError(f"no rows with rule={rule!r} and condition={condition!r} to plot")
    ncols = sorted((c for c in sel.columns if c.startswith("R@")), key=lambda c: int(c[2:]))
    ns = [int(c[2:]) for c in ncols]
    datasets = sorted(sel["dataset"].unique())
    present = set(sel["condition"])
    conditions = [c for c in CONDITION_ORDER if c in present] + sorted(present - set(CONDITION_ORDER))
    # one colour per model in every panel (a model missing from a panel must not shift the others')
    colours = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(sel["model"]))}
    fig, axes = plt.subplots(len(datasets), len(conditions), figsize=(4.2 * len(conditions), 3.6 * len(datasets)),
                             squeeze=False)
    for row_axes, dsname in zip(axes, datasets):
        for ax, cond in zip(row_axes, conditions):
            part = sel[(sel["dataset"] == dsname) & (sel["condition"] == cond)]
            for _, row in part.iterrows():
                ax.plot(ns, [100 * row[c] for c in ncols], marker="o", label=row["model"], color=colours[row["model"]])
            queries = int(part["queries"].iloc[0]) if len(part) and "queries" in part else 0
            ax.set_xscale("log")
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.set_xlabel("N (number of top database candidates)")
            ax.set_ylabel("Recall@N (%)")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.set_title(f"{dsname}: {cond} ({queries} queries, {rule})", fontsize=10)
            if len(part):
                ax.legend(fontsize=7)
    fig.tight_layout()
    titles = [ax.get_title() for ax in axes.flat]
    _save(fig, out)
    return titles


def prediction_grid(q_paths: Sequence[str], db_paths: Sequence[str], pred: np.ndarray, positives: list[np.ndarray],
                    out: str | os.PathLike, num_queries: int = 8, num_preds: int = 5, only_wrong: bool = False,
                    seed: int = 0, title: str = "") -> int:
    """Rows of (query, top predictions), each prediction framed green (correct) or red (wrong).

    Returns:
        The number of query rows drawn.

    Raises:
        WakdError: no query to show (e.g. ``only_wrong`` and every query is right at R@1).
    """
    wrong = np.array([pred[i, 0] not in positives[i] for i in range(len(pred))])
    cand = np.flatnonzero(wrong) if only_wrong else np.arange(len(pred))
    if not len(cand):
        raise WakdError("no query to show" + (" (every query is correct at R@1)" if only_wrong else ""))
    rows = np.sort(np.random.default_rng(seed).choice(cand, min(num_queries, len(cand)), replace=False))
    fig, axes = plt.subplots(len(rows), num_preds + 1, figsize=(2.2 * (num_preds + 1), 1.8 * len(rows)),
                             squeeze=False)
    for r, qi in enumerate(rows):
        axes[r, 0].imshow(np.asarray(load_image(q_paths[qi])))
        axes[r, 0].set_title(f"query {qi}", fontsize=8)
        for c in range(num_preds):
            ax = axes[r, c + 1]
            ax.axis("off")
            if c >= pred.shape[1] or pred[qi, c] < 0:
                continue
            img = np.asarray(load_image(db_paths[pred[qi, c]]))
            ax.imshow(img)
            ok = pred[qi, c] in positives[qi]
            h, w = img.shape[:2]
            ax.add_patch(Rectangle((0, 0), w - 1, h - 1, fill=False, lw=4, edgecolor="#1a9850" if ok else "#d73027"))
            ax.set_title(f"#{c + 1} db {pred[qi, c]}", fontsize=8)
        axes[r, 0].axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    return len(rows)
