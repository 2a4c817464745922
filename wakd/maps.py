"""Maps of where a model localises queries: ``wakd evaluate --map`` and ``wakd query --map``.

An evaluation map has one panel per capture condition (one panel when the split records none): the
database positions as a light trace, each query as a dot, green when its top-1 is a positive (within
the dataset's evaluation radius, 25 m: so a panel's green dots are its R@1 × queries), red otherwise,
with a thin red line from a red dot to its top-1's position; the panel title gives the condition, R@1
and counts, and a scale bar gives metres. Positions are UTM metres relative to the database's south-west
corner. Marker sizes shrink with the number of points and the database is drawn rasterised, so a
Pitts250k split (254k database images, 8k queries) stays legible and the PNG small.
"""

from __future__ import annotations

import os

import numpy as np

from wakd.data.base import PlaceDataset
from wakd.recall import condition_groups, top1_correct
from wakd.report import CONDITION_ORDER, GREEN, RED, _pyplot, _save
from wakd.utils import WakdError


def _nice_length(extent: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k metres) near a fifth of ``extent``."""
    target = max(extent / 5, 1e-3)
    base = 10 ** np.floor(np.log10(target))
    return float(max(m * base for m in (1, 2, 5) if m * base <= target) if target >= base else base)


def _trace(ax, db: np.ndarray) -> None:
    ax.scatter(db[:, 0], db[:, 1], s=max(0.05, min(4.0, 4000 / len(db))), c="0.78", linewidths=0, rasterized=True,
               zorder=1)


def _scale_bar(ax, extent: float) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = _nice_length(extent)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.add_artist(AnchoredSizeBar(ax.transData, length, label, "lower left", pad=0.4, frameon=False, size_vertical=0))


def evaluation_map(ds: PlaceDataset, pred: np.ndarray, out: str | os.PathLike, title: str = "") -> dict[str, tuple]:
    """Draw the map of ``pred`` (``[Nq, k]`` database indices, best first) on the split ``ds`` to ``out``.

    Returns:
        ``{panel: (green dots, queries)}``, one entry per panel (each condition, or ``all``).
    """
    from matplotlib.collections import LineCollection

    if len(pred) != ds.num_queries:
        raise WakdError(f"{out}: {len(pred)} prediction rows for {ds.num_queries} queries")
    correct = top1_correct(pred, ds.positives())
    order = {c: i for i, c in enumerate(CONDITION_ORDER)}
    groups = sorted([g for g in condition_groups(ds) if g[0] != "all"] or condition_groups(ds),
                    key=lambda g: (order.get(g[0], len(order)), g[0]))
    origin = ds.db_utm.min(0)
    db, q = ds.db_utm - origin, ds.q_utm - origin
    top = db[np.maximum(pred[:, 0], 0)]
    both = np.concatenate([db, q])
    extent = float(np.ptp(both, axis=0).max()) or 1.0
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.4 * len(groups), 5.6), squeeze=False, sharex=True,
                             sharey=True)
    size = max(1.0, min(14.0, 4000 / ds.num_queries))
    counts = {}
    for ax, (cond, sel) in zip(axes[0], groups):
        _trace(ax, db)
        ok, bad = sel[correct[sel]], sel[~correct[sel]]
        if len(bad):
            # fainter the more there are: thousands of lines must not hide the dots
            ax.add_collection(LineCollection(np.stack([q[bad], top[bad]], 1), colors=RED, linewidths=0.4,
                                             alpha=float(np.clip(40 / len(bad), 0.02, 0.35)), zorder=2))
        ax.scatter(q[bad, 0], q[bad, 1], s=size, c=RED, linewidths=0, zorder=3, label=f"wrong top-1 ({len(bad)})")
        ax.scatter(q[ok, 0], q[ok, 1], s=size, c=GREEN, linewidths=0, zorder=4, label=f"top-1 within "
                   f"{ds.pos_dist_thr:g} m ({len(ok)})")
        counts[cond] = (len(ok), len(sel))
        r1 = 100 * len(ok) / max(len(sel), 1)
        ax.set_title(f"{cond}: R@1 {r1:.1f} % ({len(ok)} of {len(sel)} queries)", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        _scale_bar(ax, extent)
        ax.legend(loc="upper right", fontsize=7, markerscale=max(1.0, 6 / size))
    if title:
        fig.suptitle(f"{title}: light grey = database, line = wrong top-1's place", fontsize=11)
    fig.tight_layout()
    _save(fig, out)
    return counts


def query_map(db_xy: np.ndarray, names: list[str], matches: np.ndarray, out: str | os.PathLike,
              title: str = "", query_xy: np.ndarray | None = None) -> None:
    """Draw an index's positions (metres; rows without one are left out) and each query photo's top matches
    (``matches``: ``[Nq, k]`` row indices, best first): the top-1 as a numbered dot per photo, the others as
    rings, and where ``query_xy`` knows the photo's own position a star there, with a line to its top-1."""
    known = np.isfinite(db_xy).all(1)
    if not known.any():
        raise WakdError(f"{out}: the index records no positions of its images; a map needs them (wakd index "
                        "--positions)")
    origin = db_xy[known].min(0)
    db = db_xy - origin
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 7))
    _trace(ax, db[known])
    for i, row in enumerate(matches):
        row = row[(row >= 0)]
        row = row[known[row]]
        if not len(row):
            continue
        if query_xy is not None and np.isfinite(query_xy[i]).all():
            q = query_xy[i] - origin
            ax.scatter(*q, s=90, marker="*", c=f"C{i % 10}", edgecolors="k", linewidths=0.5, zorder=4)
            ax.plot([q[0], db[row[0], 0]], [q[1], db[row[0], 1]], color=f"C{i % 10}", linewidth=0.8, zorder=2)
        ax.scatter(db[row[1:], 0], db[row[1:], 1], s=30, facecolors="none", edgecolors=f"C{i % 10}", zorder=2)
        ax.scatter(db[row[0], 0], db[row[0], 1], s=60, c=f"C{i % 10}", zorder=3, label=f"{i + 1}: {names[i]}")
        ax.annotate(str(i + 1), db[row[0]], textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])
    _scale_bar(ax, float(np.ptp(db[known], axis=0).max()) or 1.0)
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title or "top matches of each photo (dot: top-1, rings: the next, star: the photo's own place)",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, out)
