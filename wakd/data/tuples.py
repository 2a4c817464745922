"""Weakly supervised tuple mining from GPS alone, with a feature cache for hard negatives.

For each training query: positives are database images within 10 m (``train_pos_dist_thr``),
negatives are database images farther than 25 m (``pos_dist_thr``); queries without a positive
are dropped. Training runs over the queries in chunks of ``cache_size``; before each chunk the
current model describes the chunk's queries, their positives and a pool of candidate negatives
(``neg_pool`` random far-away images per query plus the query's previous hard negatives), and each
query keeps:

* the positive nearest to it in descriptor space (the "best" positive, as in NetVLAD);
* the ``neg_num`` hardest negatives: the most similar candidates.

Only the images a chunk needs are described, in float16, so a refresh costs a fraction of an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wakd.data.base import DatasetError, PlaceDataset


@dataclass
class MiningSets:
    """Per-query ground truth for training: positive indices and non-negative indices."""

    queries: np.ndarray  # indices of the usable queries (with at least one positive)
    positives: list[np.ndarray]  # per dataset query
    non_negatives: list[np.ndarray]  # per dataset query: within pos_dist_thr (never negatives)


def mining_sets(ds: PlaceDataset, neg_num: int, min_queries: int = 1) -> MiningSets:
    """Ground truth for mining, checked before training starts.

    Raises:
        DatasetError: too few queries with a positive, or too few negatives for ``neg_num``.
    """
    pos = ds.train_positives()
    non_neg = ds.non_negatives()
    usable = np.array([i for i, p in enumerate(pos) if len(p)], dtype=np.int64)
    where = ds.source or ds.name
    if len(usable) < min_queries:
        raise DatasetError(f"{where}: only {len(usable)} of {ds.num_queries} training queries have a database "
                           f"image within {ds.train_pos_dist_thr:g} m; need at least {min_queries}")
    fewest = min(ds.num_db - len(non_neg[i]) for i in usable)
    if fewest < neg_num:
        raise DatasetError(f"{where}: a query has only {fewest} database images farther than "
                           f"{ds.pos_dist_thr:g} m; --neg-num {neg_num} needs at least that many")
    return MiningSets(usable, pos, non_neg)


def negative_pool(rng: np.random.Generator, num_db: int, non_negatives: np.ndarray, size: int,
                  previous: np.ndarray | None = None) -> np.ndarray:
    """``size`` random database indices farther than 25 m, plus the previous hard negatives."""
    cand = rng.choice(num_db, size=min(num_db, size + len(non_negatives)), replace=False)
    cand = cand[~np.isin(cand, non_negatives)][:size]
    if previous is not None and len(previous):
        cand = np.union1d(cand, previous[previous >= 0])
    return cand


def hardest(q_desc: np.ndarray, cand: np.ndarray, cand_desc: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` candidates most similar to the query (descending similarity, ties by index)."""
    sims = cand_desc @ q_desc
    order = np.lexsort((cand, -sims))[:k]
    return cand[order]


def best_positive(q_desc: np.ndarray, positives: np.ndarray, pos_desc: np.ndarray) -> int:
    """The positive nearest to the query in descriptor space."""
    return int(positives[int(np.argmax(pos_desc @ q_desc))])


def difficult_positives(nearest: np.ndarray, reranked: np.ndarray | None, pos_num: int) -> np.ndarray:
    """``pos_num`` difficult positives of a query, as SFRS's sampler chooses them.

    ``nearest`` are the query's ``pos_pool`` nearest positives, nearest first; ``reranked`` their
    re-ranked distances (:mod:`wakd.rerank`; None in generation 0, where the nearest are taken).
    The positives that re-ranking promotes come first, most promoted first, then those it leaves in
    place (OpenIBL ``DistributedRandomDiffTupleSampler``). Ours: where fewer than ``pos_num`` remain,
    the demoted ones follow in re-ranked order, and a query with fewer positives repeats them (the
    authors' tuples would shrink, which fixed-size batches cannot).
    """
    n = len(nearest)
    by_rerank = np.arange(n) if reranked is None else np.argsort(reranked, kind="stable")
    gap = np.arange(n) - by_rerank  # re-ranked place minus original place of the positive there
    promoted = np.flatnonzero(gap < 0)[np.argsort(gap[gap < 0], kind="stable")]
    order = np.concatenate([promoted, np.flatnonzero(gap == 0), np.flatnonzero(gap > 0)])
    return np.resize(nearest[by_rerank[order]], pos_num)
