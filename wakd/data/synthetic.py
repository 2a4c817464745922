"""Reading the embedded synthetic city written by ``wakd synth`` (see :mod:`wakd.synth`).

It is stored exactly like Pittsburgh, so it goes through the same ``dbStruct`` parser::

    {root}/raw/synthetic_{train,val,test}.mat         Pittsburgh dbStruct layout
    {root}/raw/images/00042/00042_yaw1.jpg            database: one folder per panorama
    {root}/raw/queries/test/000017_night.jpg          queries of each split
    {root}/raw/synthetic_{split}_images.csv           side table, one row per image:
        set (db|query), image (path as in the .mat), easting, northing, yaw (degrees), condition

The side table adds what the Pittsburgh format has no field for: each image's yaw (for the
view-aware ground truth) and each query's condition (day / sunset / night).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from wakd.data.base import CONDITIONS, DatasetError, PlaceDataset
from wakd.data.pittsburgh import load_pitts_style

SPLITS = ("train", "val", "test")
SIDE_COLUMNS = ("set", "image", "easting", "northing", "yaw", "condition")


def synthetic_raw_dir(root: str | os.PathLike) -> Path:
    """The ``raw`` folder of a synthetic city (``{root}/raw``, or ``{root}/synthetic/raw``)."""
    root = Path(root)
    for cand in (root / "raw", root / "synthetic" / "raw"):
        if cand.is_dir():
            return cand
    raise DatasetError(f"{root}: no synthetic city here (expected {root}/raw/synthetic_*.mat; "
                       f"make one with: wakd synth --out {root} --preset tiny)")


def load_synthetic(root: str | os.PathLike, split: str = "test", check_images: bool = True) -> PlaceDataset:
    """Load one split of a synthetic city, with query conditions and image yaws."""
    if split not in SPLITS:
        raise DatasetError(f"synthetic split {split!r} is unknown; expected one of {', '.join(SPLITS)}")
    raw = synthetic_raw_dir(root)
    ds = load_pitts_style(raw / f"synthetic_{split}.mat", raw / "images", raw / "queries", name="synthetic",
                          split=split, check_images=check_images)
    side = raw / f"synthetic_{split}_images.csv"
    if not side.is_file():
        raise DatasetError(f"{side}: side table not found (expected columns {', '.join(SIDE_COLUMNS)})")
    table = pd.read_csv(side)
    missing = set(SIDE_COLUMNS) - set(table.columns)
    if missing:
        raise DatasetError(f"{side}: missing columns {', '.join(sorted(missing))}")
    db_rows, q_rows = table[table["set"] == "db"], table[table["set"] == "query"]
    if len(db_rows) != ds.num_db or len(q_rows) != ds.num_queries:
        raise DatasetError(f"{side}: {len(db_rows)} db / {len(q_rows)} query rows, but the .mat lists "
                           f"{ds.num_db} / {ds.num_queries} images")
    bad = sorted(set(q_rows["condition"]) - set(CONDITIONS))
    if bad:
        raise DatasetError(f"{side}: unknown query conditions {bad}; expected {', '.join(CONDITIONS)}")
    ds.db_yaw = db_rows["yaw"].to_numpy(np.float64)
    ds.q_yaw = q_rows["yaw"].to_numpy(np.float64)
    ds.q_conditions = q_rows["condition"].astype(str).tolist()
    return ds
