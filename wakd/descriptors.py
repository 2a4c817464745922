"""The descriptor file written by ``wakd extract`` and read by ``wakd evaluate`` and the figures.

Layout (one file per model x dataset x split)::

    /db/descriptors        [N, D]  float16 or float32, L2-normalised, chunked by rows
    /db/paths              [N]     UTF-8 image paths
    /db/utm                [N, 2]  float64 easting, northing
    /db/yaw                [N]     degrees (only where the dataset records yaws)
    /queries/descriptors   [Nq, D]
    /queries/paths, /queries/utm, /queries/yaw
    /queries/conditions    [Nq]    day / sunset / night (only where known)
    attrs: dataset, split, pos_dist_thr, train_pos_dist_thr, dim, dtype, precision, model (JSON),
           provenance (JSON)
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from wakd.data.base import PlaceDataset
from wakd.utils import WakdError

STR = h5py.string_dtype("utf-8")


def read_ground_truth(path: str | os.PathLike) -> PlaceDataset:
    """The dataset split recorded in a descriptor file (paths, positions, yaws, conditions).

    Raises:
        WakdError: the file is missing or lacks a required dataset.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WakdError(f"{path}: not a readable descriptor HDF5 file ({exc})") from None
    with f:
        for key in ("db/descriptors", "db/utm", "db/paths", "queries/descriptors", "queries/utm", "queries/paths"):
            if key not in f:
                raise WakdError(f"{path}: missing dataset /{key} (expected a file written by 'wakd extract')")

        def opt(key, fn):
            return fn(f[key][:]) if key in f else None

        def strings(a):
            return [s.decode() if isinstance(s, bytes) else str(s) for s in a]

        return PlaceDataset(
            name=str(f.attrs.get("dataset", "")), split=str(f.attrs.get("split", "")),
            db_paths=strings(f["db/paths"][:]), db_utm=f["db/utm"][:],
            q_paths=strings(f["queries/paths"][:]), q_utm=f["queries/utm"][:],
            pos_dist_thr=float(f.attrs.get("pos_dist_thr", 25.0)),
            train_pos_dist_thr=float(f.attrs.get("train_pos_dist_thr", 10.0)),
            q_conditions=opt("queries/conditions", strings),
            db_yaw=opt("db/yaw", np.asarray), q_yaw=opt("queries/yaw", np.asarray), source=str(path),
        )
