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
           provenance (JSON), base_dir (the folder relative image paths start from)
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from wakd.data.base import PlaceDataset
from wakd.utils import WakdError, require_file

STR = h5py.string_dtype("utf-8")


def read_ground_truth(path: str | os.PathLike) -> PlaceDataset:
    """The dataset split recorded in a descriptor file (paths, positions, yaws, conditions).

    Raises:
        WakdError: the file is missing or lacks a required dataset.
    """
    require_file(path, "a descriptor HDF5 file (wakd extract)")
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

        for group in ("db", "queries"):
            rows, paths = f[f"{group}/descriptors"].shape, len(f[f"{group}/paths"])
            if len(rows) != 2 or rows[0] != paths:
                raise WakdError(f"{path}: /{group}/descriptors has shape {'x'.join(map(str, rows))} for {paths} "
                                f"paths; expected {paths} rows")
        if f["db/descriptors"].shape[1] != f["queries/descriptors"].shape[1]:
            raise WakdError(f"{path}: database descriptors are {f['db/descriptors'].shape[1]}-d, queries "
                            f"{f['queries/descriptors'].shape[1]}-d; expected one dimension")
        if not len(f["db/paths"]) or not len(f["queries/paths"]):
            raise WakdError(f"{path}: {len(f['db/paths'])} database and {len(f['queries/paths'])} query rows; "
                            "expected both non-empty")
        base = str(f.attrs.get("base_dir", ""))
        try:
            return PlaceDataset(
                name=str(f.attrs.get("dataset", "")), split=str(f.attrs.get("split", "")),
                db_paths=resolve(strings(f["db/paths"][:]), base), db_utm=f["db/utm"][:],
                q_paths=resolve(strings(f["queries/paths"][:]), base), q_utm=f["queries/utm"][:],
                pos_dist_thr=float(f.attrs.get("pos_dist_thr", 25.0)),
                train_pos_dist_thr=float(f.attrs.get("train_pos_dist_thr", 10.0)),
                q_conditions=opt("queries/conditions", strings),
                db_yaw=opt("db/yaw", np.asarray), q_yaw=opt("queries/yaw", np.asarray), source=str(path),
            )
        except ValueError as exc:  # utm of the wrong shape
            raise WakdError(f"{path}: {exc}") from None


def resolve(paths: list[str], base: str) -> list[str]:
    """Image paths as recorded (relative to the folder ``wakd extract`` ran in, ``base``): made
    absolute against ``base`` when they do not exist from here, so figures work from any folder."""
    if not base or not paths or os.path.isabs(paths[0]) or os.path.exists(paths[0]):
        return paths
    return [os.path.join(base, p) for p in paths]
