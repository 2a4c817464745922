"""Simple global descriptors, used to check that the synthetic city is a real retrieval problem
(and as the floor that learned models must beat; see ``bench/bench_synth.py``).

* ``thumbnail``: the grey image shrunk to 12x16, zero-mean, L2-normalised (normalised
  cross-correlation of tiny images, the classic "tiny image" baseline).
* ``histogram``: a joint RGB colour histogram (4x4x4 bins), square-rooted and L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from wakd.data.base import PlaceDataset
from wakd.data.images import load_image
from wakd.recall import RECALL_VALUES, evaluation_rules, recall_by_condition, recall_rows
from wakd.search import knn

THUMB_SIZE = (16, 12)  # PIL (width, height)


def thumbnail_descriptor(img: Image.Image) -> np.ndarray:
    small = np.asarray(img.convert("L").resize(THUMB_SIZE, Image.BILINEAR), dtype=np.float32).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


def histogram_descriptor(img: Image.Image, bins: int = 4) -> np.ndarray:
    q = (np.asarray(img, dtype=np.int64) * bins) // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = np.sqrt(np.bincount(idx.ravel(), minlength=bins ** 3).astype(np.float32))
    return h / (np.linalg.norm(h) + 1e-6)


DESCRIPTORS = {"thumbnail": thumbnail_descriptor, "histogram": histogram_descriptor}


def describe(paths: Sequence[str], method: str = "thumbnail") -> np.ndarray:
    """``[len(paths), D]`` descriptors of the images at ``paths``."""
    fn = DESCRIPTORS[method]
    return np.stack([fn(load_image(p)) for p in paths])


def baseline_predictions(ds: PlaceDataset, method: str = "thumbnail", k: int = 20) -> np.ndarray:
    """``[Nq, k]`` database indices ranked by a simple descriptor (exact search)."""
    return knn(describe(ds.db_paths, method), describe(ds.q_paths, method), k)[1]


def baseline_recalls(ds: PlaceDataset, method: str = "thumbnail", ns: tuple[int, ...] = RECALL_VALUES,
                     max_yaw_diff: float | None = None) -> dict[str, dict[int, float]]:
    """Recall@N of a simple descriptor, overall and per query condition.

    Returns:
        ``{"all": {N: r}, "day": {...}, ...}`` (conditions only when the dataset records them).
    """
    pred = baseline_predictions(ds, method, max(ns))
    return {cond: r for cond, (_n, r) in recall_by_condition(pred, ds, max_yaw_diff, ns).items()}


def chance_recall(ds: PlaceDataset, n: int = 1, max_yaw_diff: float | None = None) -> float:
    """Expected Recall@n of random predictions (without replacement)."""
    pos = ds.positives(max_yaw_diff=max_yaw_diff)
    N = ds.num_db
    miss = [np.prod([(N - len(p) - i) / (N - i) for i in range(n)]) for p in pos]
    return float(1 - np.mean(miss))


def baseline_table(ds: PlaceDataset, methods: tuple[str, ...] = ("thumbnail", "histogram"),
                   ns: tuple[int, ...] = RECALL_VALUES) -> pd.DataFrame:
    """The tidy recall table of :mod:`wakd.evaluate` for each method, plus the chance rows."""
    rows = []
    for method in methods:
        rows += recall_rows(baseline_predictions(ds, method, max(ns)), ds, method, ns)
    for rule, yaw in evaluation_rules(ds):
        rows.append({"model": "chance", "dataset": ds.name, "split": ds.split, "rule": rule, "condition": "all",
                     **{f"R@{n}": chance_recall(ds, n, yaw) for n in ns}, "queries": ds.num_queries})
    return pd.DataFrame(rows)
