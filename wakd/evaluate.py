"""Recall@N: exact nearest-neighbour search and the Pittsburgh 25 m rule.

A query counts as correct at N when any of its top-N predictions is a positive; queries without
any positive count as misses (the gmberton convention), so recall never exceeds the fraction of
queries that have a positive.
"""

from __future__ import annotations

import numpy as np

RECALL_VALUES = (1, 5, 10, 20)


def knn_search(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` search with faiss (``IndexFlatIP``).

    Args:
        db: ``[N, D]`` database descriptors (L2-normalised for cosine similarity).
        queries: ``[Nq, D]`` query descriptors.
        k: neighbours to return (capped at N).

    Returns:
        (similarities ``[Nq, k]``, database indices ``[Nq, k]``), best first.
    """
    import faiss

    db = np.ascontiguousarray(db, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    index = faiss.IndexFlatIP(db.shape[1])
    index.add(db)
    return index.search(queries, min(k, len(db)))


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
