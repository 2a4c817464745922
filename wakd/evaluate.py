"""``wakd evaluate``: exact nearest-neighbour search of a descriptor file and its Recall@N table.

The metric itself is :mod:`wakd.recall`.

A query counts as correct at N when any of its top-N predictions is a positive; queries without
any positive count as misses (the gmberton convention), so recall never exceeds the fraction of
queries that have a positive. Ties in similarity are ranked by lower database index.

Results are a tidy table, one row per (model, dataset, split, rule, condition) with columns
``R@1, R@5, R@10, R@20`` (fractions in [0, 1]) and ``queries``. ``rule`` is ``25m`` (the
Pittsburgh protocol; radius from the dataset's ``posDistThr``) and, where image yaws are known
(the synthetic city), also ``25m+yaw45`` (heading within 45 degrees too). ``condition`` is
``all`` plus each capture condition present (``day``, ``sunset``, ``night``).

Tokyo 24/7 convention (``dedup_panoramas``): predictions are de-duplicated per database panorama
(images sharing one UTM position), keeping the best-ranked image of each, before Recall@N.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from wakd.recall import RECALL_VALUES, recall_rows

log = logging.getLogger(__name__)

def panorama_ids(db_utm: np.ndarray) -> np.ndarray:
    """Panorama index of each database image: images at the same UTM position (to the centimetre)."""
    _, inverse = np.unique(np.round(np.asarray(db_utm) * 100).astype(np.int64), axis=0, return_inverse=True)
    return inverse.reshape(-1)


def dedup_predictions(pred: np.ndarray, pano: np.ndarray, k: int) -> np.ndarray:
    """Keep the best-ranked image of each panorama, in order; rows padded with -1 to ``k``."""
    out = np.full((len(pred), k), -1, dtype=np.int64)
    for r, row in enumerate(pred):
        _, first = np.unique(pano[row], return_index=True)
        keep = row[np.sort(first)][:k]
        out[r, :len(keep)] = keep
    return out


def evaluate_file(descriptors: str | os.PathLike, model: str, ns: tuple[int, ...] = RECALL_VALUES,
                  dedup_panoramas: bool = False, chunk_rows: int | None = None, device: str = "cpu",
                  keep: int | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Recall@N of a descriptor file written by ``wakd extract``.

    Args:
        descriptors: the HDF5 descriptor file.
        model: the name recorded in the ``model`` column.
        ns: the N of Recall@N.
        dedup_panoramas: Tokyo 24/7 per-panorama de-duplication of predictions.
        chunk_rows: database rows searched at a time (default: a 256 MiB float32 chunk).
        device: ``cpu`` or ``cuda``.
        keep: predictions kept per query (default ``max(ns)``).

    Returns:
        (table, predictions ``[Nq, keep]``, scores ``[Nq, keep]``).
    """
    import h5py

    from wakd.extract import read_ground_truth
    from wakd.search import knn

    ds = read_ground_truth(descriptors)
    k = max(max(ns), keep or 0)
    pano = panorama_ids(ds.db_utm) if dedup_panoramas else None
    search_k = k * int(np.bincount(pano).max()) if pano is not None else k
    with h5py.File(descriptors, "r") as f:
        queries = f["queries/descriptors"][:]
        scores, pred = knn(f["db/descriptors"], queries, search_k, chunk_rows, device)
    if pano is not None:
        full_pred, full_scores = pred, scores
        pred = dedup_predictions(full_pred, pano, k)
        scores = np.full(pred.shape, np.nan, dtype=np.float32)  # NaN where a row is padded (-1)
        for r, row in enumerate(pred):
            score_of = dict(zip(full_pred[r].tolist(), full_scores[r].tolist()))
            scores[r] = [score_of.get(j, np.nan) for j in row.tolist()]
    table = pd.DataFrame(recall_rows(pred[:, :max(ns)], ds, model, ns))
    return table, pred[:, :k], scores[:, :k]
