"""Pittsburgh 30k / 250k (Torii et al.; the NetVLAD release), read from the distributed files.

Files (see :mod:`wakd.data.matfile` for the ``dbStruct`` layout)::

    {root}/pitts/raw/pitts{30k,250k}_{train,val,test}.mat
    {root}/pitts/raw/Pittsburgh/images/000/000000_pitch1_yaw1.jpg   database, as listed in dbImageFns
    {root}/pitts/raw/Pittsburgh/queries/000/000000_pitch1_yaw1.jpg  queries, as listed in qImageFns

``{root}`` is the data root (default ``datasets/data``). The original distribution's layout is
accepted too: ``Pittsburgh/000/...`` for the database and ``Pittsburgh/queries_real/...`` for the
queries, with the ``.mat`` files in ``Pittsburgh/datasets/`` or beside ``Pittsburgh/``. Database
images of one panorama share a file-name prefix (12 yaws x 2 pitches) and one UTM position.
"""

from __future__ import annotations

import os
from pathlib import Path

from wakd.data.base import DatasetError, PlaceDataset, resolve_images
from wakd.data.matfile import PITTS_FIELDS, load_db_struct, thresholds

SCALES = ("30k", "250k")
SPLITS = ("train", "val", "test")
# (database folder, query folder) relative to a base folder, in the order they are tried.
IMAGE_LAYOUTS = (("Pittsburgh/images", "Pittsburgh/queries"), ("Pittsburgh", "Pittsburgh/queries_real"))


def find_pitts_files(root: str | os.PathLike, scale: str, split: str) -> tuple[Path, Path, Path]:
    """Locate the ``.mat`` file and the image folders of one Pittsburgh split.

    Returns:
        (mat file, database image folder, query image folder).

    Raises:
        DatasetError: naming every place that was looked in.
    """
    if scale not in SCALES:
        raise DatasetError(f"Pittsburgh scale {scale!r} is unknown; expected one of {', '.join(SCALES)}")
    if split not in SPLITS:
        raise DatasetError(f"Pittsburgh split {split!r} is unknown; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    name = f"pitts{scale}_{split}.mat"
    bases = [root / "pitts" / "raw", root]
    tried = []
    for base in bases:
        for mat in (base / name, base / "Pittsburgh" / "datasets" / name, base / "datasets" / name):
            tried.append(str(mat))
            if mat.is_file():
                for db_dir, q_dir in IMAGE_LAYOUTS:
                    if (base / db_dir).is_dir() and (base / q_dir).is_dir():
                        return mat, base / db_dir, base / q_dir
                layouts = " or ".join(f"{base / d}/ + {base / q}/" for d, q in IMAGE_LAYOUTS)
                raise DatasetError(f"{mat}: found, but no image folders beside it (expected {layouts})")
    raise DatasetError(f"Pittsburgh {scale} {split}: {name} not found; looked for "
                       + ", ".join(tried) + f". Put the files under {root}/pitts/raw/ "
                       "(see README, 'Real datasets')")


def load_pittsburgh(root: str | os.PathLike, scale: str = "30k", split: str = "test",
                    check_images: bool = True) -> PlaceDataset:
    """Load one split of Pittsburgh 30k or 250k.

    Args:
        root: data root (the folder holding ``pitts/raw``).
        scale: ``30k`` or ``250k``.
        split: ``train``, ``val`` or ``test``.
        check_images: verify that every listed image exists (one directory walk).
    """
    mat, db_dir, q_dir = find_pitts_files(root, scale, split)
    return load_pitts_style(mat, db_dir, q_dir, name=f"pitts{scale}", split=split, check_images=check_images)


def load_pitts_style(mat: str | os.PathLike, db_dir: str | os.PathLike, q_dir: str | os.PathLike, name: str,
                     split: str, check_images: bool = True, alt_exts: tuple[str, ...] = (),
                     query_resize_shorter: int | None = None) -> PlaceDataset:
    """Load any dataset distributed as a Pittsburgh-layout ``dbStruct`` plus two image folders."""
    db = load_db_struct(mat, PITTS_FIELDS)
    pos_thr, train_thr = thresholds(db)
    src = str(mat)
    return PlaceDataset(
        name=name,
        split=split,
        db_paths=resolve_images(db["dbImageFns"], db_dir, src, alt_exts, check_images),
        db_utm=db["utmDb"],
        q_paths=resolve_images(db["qImageFns"], q_dir, src, alt_exts, check_images),
        q_utm=db["utmQ"],
        pos_dist_thr=pos_thr,
        train_pos_dist_thr=train_thr,
        query_resize_shorter=query_resize_shorter,
        source=src,
    )
