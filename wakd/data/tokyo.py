"""Tokyo 24/7 (test) and Tokyo Time Machine (train / val), read from the distributed files.

Layout under the data root ``{root}`` (default ``datasets/data``)::

    {root}/tokyo/raw/tokyo247.mat                 Pittsburgh dbStruct layout (see wakd.data.matfile)
    {root}/tokyo/raw/tokyo247/images/...          database; the .mat may say .jpg for .png files
    {root}/tokyo/raw/tokyo247/query/...           1,125 queries (375 places x day/sunset/night)
    {root}/tokyo/raw/tokyo247_conditions.csv      optional side table: columns image,condition
    {root}/tokyo/raw/tokyoTM_{train,val}.mat      dbStruct with dbTimeStamp / qTimeStamp fields
    {root}/tokyo/raw/tokyoTM/images/...           database and query images of Tokyo Time Machine

Tokyo 24/7 evaluation queries are resized so that their shorter side is 640 pixels (the
convention of the NetVLAD paper); the database keeps its size. The capture condition of each query
is read from the side table when present, else from a ``day`` / ``sunset`` / ``night`` token in its
file name; when neither tells, conditions are unknown (recall is then reported overall only).

Tokyo Time Machine training positives are the same place at *another* time: database images
within 10 m whose time stamp differs from the query's.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from wakd.data.base import CONDITIONS, DatasetError, PlaceDataset, resolve_images
from wakd.data.matfile import TOKYOTM_FIELDS, load_db_struct, thresholds
from wakd.data.pittsburgh import load_pitts_style

TOKYO247_QUERY_SHORTER_SIDE = 640
IMAGE_EXTS = (".jpg", ".png", ".jpeg")


def load_tokyo247(root: str | os.PathLike, split: str = "test", check_images: bool = True,
                  query_resize_shorter: int | None = TOKYO247_QUERY_SHORTER_SIDE) -> PlaceDataset:
    """Load the Tokyo 24/7 evaluation set (it has only a ``test`` split)."""
    if split != "test":
        raise DatasetError(f"tokyo247 has only the 'test' split, not {split!r} "
                           "(train on Tokyo Time Machine: --dataset tokyoTM)")
    base = Path(root) / "tokyo" / "raw"
    ds = load_pitts_style(base / "tokyo247.mat", base / "tokyo247" / "images", base / "tokyo247" / "query",
                          name="tokyo247", split=split, check_images=check_images, alt_exts=IMAGE_EXTS,
                          query_resize_shorter=query_resize_shorter)
    rel = [os.path.relpath(p, base / "tokyo247" / "query").replace(os.sep, "/") for p in ds.q_paths]
    ds.q_conditions = query_conditions(rel, base / "tokyo247_conditions.csv")
    return ds


def load_tokyotm(root: str | os.PathLike, split: str = "train", check_images: bool = True) -> PlaceDataset:
    """Load Tokyo Time Machine ``train`` or ``val`` (database and queries share one image folder)."""
    if split not in ("train", "val"):
        raise DatasetError(f"tokyoTM has splits 'train' and 'val', not {split!r}")
    base = Path(root) / "tokyo" / "raw"
    mat = base / f"tokyoTM_{split}.mat"
    db = load_db_struct(mat, TOKYOTM_FIELDS)
    pos_thr, train_thr = thresholds(db)
    img_dir = base / "tokyoTM" / "images"
    src = str(mat)
    return PlaceDataset(
        name="tokyoTM", split=split,
        db_paths=resolve_images(db["dbImageFns"], img_dir, src, IMAGE_EXTS, check_images),
        db_utm=db["utmDb"],
        q_paths=resolve_images(db["qImageFns"], img_dir, src, IMAGE_EXTS, check_images),
        q_utm=db["utmQ"],
        pos_dist_thr=pos_thr, train_pos_dist_thr=train_thr,
        db_time=db.get("dbTimeStamp"), q_time=db.get("qTimeStamp"),
        train_pos_other_time=True, source=src,
    )


def query_conditions(rel_paths: list[str], side_table: Path) -> list[str] | None:
    """Capture condition per query, from a side table ``image,condition`` or the file names.

    Raises:
        DatasetError: the side table lacks a query, or names an unknown condition.
    """
    if side_table.is_file():
        with open(side_table, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"image", "condition"} <= set(reader.fieldnames):
                raise DatasetError(f"{side_table}: expected CSV columns 'image' and 'condition', "
                                   f"got {reader.fieldnames}")
            table = {row["image"].strip(): row["condition"].strip().lower() for row in reader}
        out = []
        for p in rel_paths:
            cond = table.get(p, table.get(os.path.splitext(p)[0]))
            if cond is None:
                raise DatasetError(f"{side_table}: no row for query {p!r}")
            if cond not in CONDITIONS:
                raise DatasetError(f"{side_table}: condition {cond!r} of {p!r} is not one of "
                                   f"{', '.join(CONDITIONS)}")
            out.append(cond)
        return out
    pattern = re.compile(r"(?<![a-z])(" + "|".join(CONDITIONS) + r")(?![a-z])")
    found = [pattern.search(p.lower()) for p in rel_paths]
    if rel_paths and all(found):
        return [m.group(1) for m in found]
    return None

