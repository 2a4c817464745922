"""The gmberton folder format (deep-visual-geo-localization-benchmark, CosPlace).

Layout, with ``{root}`` the dataset folder (e.g. ``datasets/pitts30k``)::

    {root}/images/{train,val,test}/database/**/@UTM_east@UTM_north@zone@letter@lat@lon@pano_id@...@.jpg
    {root}/images/{train,val,test}/queries/**/@...@.jpg

The position is in the file name: fields are separated by ``@`` and the name starts with one,
so field 1 is the UTM easting and field 2 the UTM northing (metres). Sub-folders are allowed.
Thresholds are the benchmark's: 25 m for evaluation positives, 10 m for training positives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wakd.data.base import DatasetError, PlaceDataset, list_files

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def parse_utm_from_name(name: str) -> tuple[float, float]:
    """UTM (easting, northing) from a ``@east@north@...`` file name.

    Raises:
        DatasetError: the name does not follow the convention.
    """
    fields = os.path.basename(name).split("@")
    try:
        return float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        raise DatasetError(f"{name}: file name does not follow '@UTM_east@UTM_north@...@.jpg' "
                           "(fields 1 and 2 must be numbers)") from None


def _scan(folder: Path) -> tuple[list[str], np.ndarray]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found (expected images named "
                           "'@UTM_east@UTM_north@...@.jpg' there)")
    rel = sorted(p for p in list_files(folder) if p.lower().endswith(IMAGE_EXTS))
    utm = np.array([parse_utm_from_name(p) for p in rel], dtype=np.float64).reshape(-1, 2)
    return [str(folder / p) for p in rel], utm


def load_folder(root: str | os.PathLike, split: str = "test", name: str | None = None) -> PlaceDataset:
    """Load one split of a dataset in the gmberton folder format."""
    root = Path(root)
    split_dir = root / "images" / split
    if not split_dir.is_dir():
        found = sorted(p.name for p in (root / "images").glob("*")) if (root / "images").is_dir() else []
        raise DatasetError(f"{split_dir}: split folder not found (found splits: {', '.join(found) or 'none'}; "
                           "expected {root}/images/{split}/{database,queries}/)")
    db_paths, db_utm = _scan(split_dir / "database")
    q_paths, q_utm = _scan(split_dir / "queries")
    if not db_paths:
        raise DatasetError(f"{split_dir / 'database'}: no images found")
    return PlaceDataset(name=name or root.name, split=split, db_paths=db_paths, db_utm=db_utm,
                        q_paths=q_paths, q_utm=q_utm, source=str(split_dir))
