"""The dataset model shared by every format: database and query images with UTM positions.

Every loader in this package (Pittsburgh, Tokyo 24/7, Tokyo Time Machine, the gmberton folder
format, the synthetic city) returns a :class:`PlaceDataset`. Ground truth follows the Pittsburgh
protocol:

* evaluation positives: database images within ``pos_dist_thr`` metres (25 m) of the query;
  queries with none are kept and count as misses (the gmberton convention);
* training positives: database images within ``train_pos_dist_thr`` metres (10 m,
  ``sqrt(nonTrivPosDistSqThr)``); training negatives: farther than ``pos_dist_thr``; queries
  without a training positive are dropped from training.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from wakd.utils import WakdError

log = logging.getLogger(__name__)

CONDITIONS = ("day", "sunset", "night")


class DatasetError(WakdError):
    """A dataset file or folder is missing or does not have the expected layout."""


@dataclass
class PlaceDataset:
    """One split of a place-recognition dataset.

    Attributes:
        name: dataset name (``pitts30k``, ``tokyo247``, ...).
        split: split name (``train``, ``val``, ``test``).
        db_paths: absolute paths of the database images.
        db_utm: ``[N, 2]`` float64 UTM easting / northing in metres.
        q_paths: absolute paths of the query images.
        q_utm: ``[Nq, 2]`` UTM of the queries.
        pos_dist_thr: evaluation positive radius in metres (25).
        train_pos_dist_thr: training positive radius in metres (10).
        q_conditions: capture condition of each query (``day``/``sunset``/``night``), or None.
        db_yaw, q_yaw: camera heading in degrees per image, where known (synthetic city).
        db_time, q_time: capture time stamps, where known (Tokyo Time Machine).
        train_pos_other_time: training positives must have another time stamp than the query
            (Tokyo Time Machine: the same place at another time).
        query_resize_shorter: evaluation queries are resized so their shorter side has this many
            pixels (Tokyo 24/7: 640), or None to keep the dataset's common size.
        source: the file the split was read from.
    """

    name: str
    split: str
    db_paths: list[str]
    db_utm: np.ndarray
    q_paths: list[str]
    q_utm: np.ndarray
    pos_dist_thr: float = 25.0
    train_pos_dist_thr: float = 10.0
    q_conditions: list[str] | None = None
    db_yaw: np.ndarray | None = None
    q_yaw: np.ndarray | None = None
    db_time: np.ndarray | None = None
    q_time: np.ndarray | None = None
    query_resize_shorter: int | None = None
    train_pos_other_time: bool = False
    source: str = ""
    _tree: cKDTree | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.db_utm = np.asarray(self.db_utm, dtype=np.float64).reshape(-1, 2)
        self.q_utm = np.asarray(self.q_utm, dtype=np.float64).reshape(-1, 2)
        where = self.source or self.name
        if len(self.db_paths) != len(self.db_utm):
            raise DatasetError(f"{where}: {len(self.db_paths)} database images but "
                               f"{len(self.db_utm)} database UTM positions; expected equal counts")
        if len(self.q_paths) != len(self.q_utm):
            raise DatasetError(f"{where}: {len(self.q_paths)} query images but "
                               f"{len(self.q_utm)} query UTM positions; expected equal counts")
        if self.q_conditions is not None and len(self.q_conditions) != len(self.q_paths):
            raise DatasetError(f"{where}: {len(self.q_conditions)} query conditions for "
                               f"{len(self.q_paths)} queries")
        for label, thr in (("pos_dist_thr (the evaluation positive radius)", self.pos_dist_thr),
                           ("train_pos_dist_thr (the training positive radius)", self.train_pos_dist_thr)):
            if not (np.isfinite(thr) and thr > 0):
                raise DatasetError(f"{where}: {label} is {thr}; expected a positive number of metres")
        for label, arr in (("database", self.db_utm), ("query", self.q_utm)):
            if not np.isfinite(arr).all():
                raise DatasetError(f"{where}: {label} UTM positions contain NaN or inf")
        for label, yaw, n in (("database", self.db_yaw, self.num_db), ("query", self.q_yaw, self.num_queries)):
            if yaw is None:
                continue
            yaw = np.asarray(yaw, dtype=np.float64)
            if yaw.shape != (n,) or not np.isfinite(yaw).all():
                raise DatasetError(f"{where}: {label} yaws: expected {n} finite headings in degrees, got shape "
                                   f"{yaw.shape} with {int((~np.isfinite(yaw)).sum())} NaN/inf")

    @property
    def num_db(self) -> int:
        return len(self.db_paths)

    @property
    def num_queries(self) -> int:
        return len(self.q_paths)

    @property
    def db_tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.db_utm)
        return self._tree

    def positives(self, radius: float | None = None, max_yaw_diff: float | None = None) -> list[np.ndarray]:
        """Database indices within ``radius`` metres of each query (default: ``pos_dist_thr``).

        Args:
            radius: distance threshold in metres.
            max_yaw_diff: if given, also require the heading difference to be below this many
                degrees (the view-aware rule; needs ``db_yaw`` and ``q_yaw``).

        Returns:
            One sorted int64 array per query (possibly empty).
        """
        radius = self.pos_dist_thr if radius is None else radius
        hits = self.db_tree.query_ball_point(self.q_utm, r=radius, return_sorted=True)
        out = [np.asarray(h, dtype=np.int64) for h in hits]
        if max_yaw_diff is not None:
            if self.db_yaw is None or self.q_yaw is None:
                raise DatasetError(f"{self.name}: the view-aware rule needs image yaws, "
                                   "which this dataset does not provide")
            out = [p[yaw_difference(self.db_yaw[p], self.q_yaw[i]) < max_yaw_diff]
                   for i, p in enumerate(out)]
        return out

    def train_positives(self) -> list[np.ndarray]:
        """Training positives: database images within ``train_pos_dist_thr`` (10 m).

        With ``train_pos_other_time``, images taken at the query's own time stamp are excluded.
        """
        pos = self.positives(self.train_pos_dist_thr)
        if self.train_pos_other_time and self.db_time is not None and self.q_time is not None:
            pos = [p[self.db_time[p] != self.q_time[i]] for i, p in enumerate(pos)]
        return pos

    def non_negatives(self) -> list[np.ndarray]:
        """Database images *not* usable as negatives (within ``pos_dist_thr``); the rest are."""
        return self.positives(self.pos_dist_thr)

    def summary(self) -> dict:
        """Counts and thresholds, as printed by ``wakd data inspect``."""
        pos = self.positives()
        n_pos = np.array([len(p) for p in pos])
        out = {
            "dataset": self.name,
            "split": self.split,
            "source": self.source,
            "num_db": self.num_db,
            "num_queries": self.num_queries,
            "queries_with_positive": int((n_pos > 0).sum()),
            "mean_positives_per_query": float(n_pos.mean()) if len(n_pos) else 0.0,
            "queries_with_train_positive": int(sum(len(p) > 0 for p in self.train_positives())),
            "pos_dist_thr": self.pos_dist_thr,
            "train_pos_dist_thr": self.train_pos_dist_thr,
            "query_resize_shorter": self.query_resize_shorter,
        }
        if self.q_conditions is not None:
            conds, counts = np.unique(np.asarray(self.q_conditions), return_counts=True)
            out["query_conditions"] = {str(c): int(n) for c, n in zip(conds, counts)}
        return out


def yaw_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Absolute heading difference in degrees, in [0, 180]."""
    d = np.abs((np.asarray(a, dtype=np.float64) - b + 180.0) % 360.0 - 180.0)
    return d


def list_files(root: str | os.PathLike) -> set[str]:
    """All file paths under ``root``, relative to it with '/' separators, from one directory walk."""
    root = os.fspath(root)
    found: set[str] = set()
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.update(prefix + f for f in files)
    return found


def safe_relpath(rel: str, source: str) -> str:
    """Normalise a listed image path; refuse absolute paths and paths escaping the dataset root."""
    norm = os.path.normpath(rel.strip().replace("\\", "/")).replace(os.sep, "/")
    if os.path.isabs(norm) or norm == ".." or norm.startswith("../") or not norm or norm == ".":
        raise DatasetError(f"{source}: image path {rel!r} escapes the dataset root "
                           "(expected a relative path inside it)")
    return norm


def resolve_images(rel_paths: list[str], image_dir: str | os.PathLike, source: str,
                   alt_exts: tuple[str, ...] = (), check: bool = True) -> list[str]:
    """Turn listed relative paths into absolute ones under ``image_dir``, checking they exist.

    Existence is checked against one directory walk, not a stat per file.

    Args:
        rel_paths: paths as listed in the dataset file.
        image_dir: folder the paths are relative to.
        source: the dataset file (named in errors).
        alt_exts: other extensions to accept when the listed one is absent (Tokyo 24/7 lists
            ``.jpg`` for files stored as ``.png``).
        check: verify existence (disable only for planning without images).

    Raises:
        DatasetError: a path escapes the root, the folder is missing, or images are absent.
    """
    image_dir = Path(image_dir)
    norm = [safe_relpath(p, source) for p in rel_paths]
    if not check:
        return [str(image_dir / p) for p in norm]
    if not image_dir.is_dir():
        raise DatasetError(f"{source}: image folder {image_dir} does not exist "
                           f"(expected the {len(norm)} images listed in {Path(source).name} there)")
    present = list_files(image_dir)
    out, missing = [], []
    for p in norm:
        if p in present:
            out.append(p)
            continue
        stem, _ext = os.path.splitext(p)
        alt = next((stem + e for e in alt_exts if stem + e in present), None)
        if alt is None:
            missing.append(p)
        else:
            out.append(alt)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DatasetError(f"{source}: {len(missing)} of {len(norm)} listed images are absent under "
                           f"{image_dir}: {shown}")
    return [str(image_dir / p) for p in out]
