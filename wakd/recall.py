"""Recall@N of ranked predictions: the metric shared by ``wakd evaluate``, training validation and
the baselines.

A query counts as correct at N when any of its top-N predictions is a positive; queries without
any positive count as misses (the gmberton convention), so recall never exceeds the fraction of
queries that have a positive. ``rule`` is ``25m`` (the Pittsburgh protocol; radius from the
dataset's ``posDistThr``) and, where image yaws are known (the synthetic city), also ``25m+yaw45``
(heading within 45 degrees too). ``condition`` is ``all`` plus each capture condition present.
:func:`hub_share` measures hubs: database images that many queries retrieve first.
"""

from __future__ import annotations

import numpy as np

from wakd.data.base import PlaceDataset
from wakd.utils import WakdError

RECALL_VALUES = (1, 5, 10, 20)
VIEW_AWARE_YAW = 45.0


def top1_correct(predictions: np.ndarray, positives: list[np.ndarray]) -> np.ndarray:
    """Per query, whether its first prediction is a positive (what R@1 counts; no positive: False)."""
    return np.array([len(p) > 0 and predictions[i, 0] in p for i, p in enumerate(positives)], dtype=bool)


def check_recall_values(ns: tuple[int, ...], places: int, where: str, what: str = "database images") -> None:
    """Refuse an N of Recall@N larger than the database (``places`` images, or panoramas), before searching."""
    if max(ns) > places:
        raise WakdError(f"--recall-values {max(ns)}: {where} has only {places} {what}; expected every N <= {places}")


def recall_at_n(predictions: np.ndarray, positives: list[np.ndarray],
                ns: tuple[int, ...] = RECALL_VALUES) -> dict[int, float]:
    """Fraction of queries with a positive among their first N predictions, for each N.

    Args:
        predictions: ``[Nq, K]`` database indices, best first.
        positives: per query, the database indices that count as correct (may be empty).
        ns: the N values (each at most K).

    Returns:
        ``{N: recall in [0, 1]}``.
    """
    predictions = np.asarray(predictions)
    if len(predictions) != len(positives):
        raise ValueError(f"{len(predictions)} prediction rows for {len(positives)} queries")
    if len(predictions) == 0:
        return {n: 0.0 for n in ns}
    if max(ns) > predictions.shape[1]:
        raise ValueError(f"Recall@{max(ns)} needs at least {max(ns)} predictions per query, "
                         f"got {predictions.shape[1]}")
    first_hit = np.full(len(predictions), np.inf)
    for i, (pred, pos) in enumerate(zip(predictions, positives)):
        hit = np.flatnonzero(np.isin(pred, pos))
        if len(hit):
            first_hit[i] = hit[0]
    return {n: float((first_hit < n).mean()) for n in ns}


def evaluation_rules(ds: PlaceDataset) -> list[tuple[str, float | None]]:
    """(rule name, max yaw difference) pairs that apply to ``ds``."""
    rules: list[tuple[str, float | None]] = [("25m", None)]
    if ds.db_yaw is not None and ds.q_yaw is not None:
        rules.append((f"25m+yaw{VIEW_AWARE_YAW:g}", VIEW_AWARE_YAW))
    return rules


def condition_groups(ds: PlaceDataset) -> list[tuple[str, np.ndarray]]:
    """``(condition, query indices)`` for ``all`` and each recorded capture condition."""
    groups = [("all", np.arange(ds.num_queries))]
    if ds.q_conditions is not None:
        conds = np.asarray(ds.q_conditions)
        groups += [(c, np.flatnonzero(conds == c)) for c in sorted(set(conds.tolist()))]
    return groups


def recall_by_condition(pred: np.ndarray, ds: PlaceDataset, max_yaw_diff: float | None = None,
                        ns: tuple[int, ...] = RECALL_VALUES) -> dict[str, tuple[int, dict[int, float]]]:
    """``{condition: (queries, {N: recall})}`` for ``all`` and each recorded condition, under one rule."""
    pos = ds.positives(max_yaw_diff=max_yaw_diff)
    return {cond: (len(sel), recall_at_n(pred[sel], [pos[i] for i in sel], ns)) for cond, sel in condition_groups(ds)}


def hub_share(top1: np.ndarray) -> float:
    """Hubness of a search: the share of the queries whose top-1 is the database image most often at top-1
    (1 / queries when every query retrieves a different image; 1 when all retrieve one image)."""
    top1 = np.asarray(top1)
    top1 = top1[top1 >= 0]
    return float(np.bincount(top1).max() / len(top1)) if len(top1) else 0.0


def recall_rows(pred: np.ndarray, ds: PlaceDataset, model: str, ns: tuple[int, ...] = RECALL_VALUES) -> list[dict]:
    """Recall@N rows for every rule and condition (see the module docstring), with the condition's
    :func:`hub_share`."""
    hubs = {cond: round(hub_share(pred[sel, 0]), 4) for cond, sel in condition_groups(ds)}
    rows = []
    for rule, yaw in evaluation_rules(ds):
        for cond, (n_q, r) in recall_by_condition(pred, ds, yaw, ns).items():
            rows.append({"model": model, "dataset": ds.name, "split": ds.split, "rule": rule, "condition": cond,
                         **{f"R@{n}": r[n] for n in ns}, "queries": n_q, "hub_share": hubs[cond]})
    return rows
