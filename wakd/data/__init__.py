"""The dataset layer: one module per format, all returning :class:`wakd.data.base.PlaceDataset`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from wakd.data.base import CONDITIONS, DatasetError, PlaceDataset
from wakd.data.folder import load_folder
from wakd.data.pittsburgh import find_pitts_files, load_pittsburgh
from wakd.data.synthetic import load_synthetic
from wakd.data.tokyo import load_tokyo247, load_tokyotm

DEFAULT_DATA_ROOT = "datasets/data"

# name -> loader(root, split, check_images); `root` is the data root for the public datasets and
# the dataset folder for `folder` and `synthetic`.
_LOADERS: dict[str, Callable[..., PlaceDataset]] = {
    "pitts30k": lambda root, split, check: load_pittsburgh(root, "30k", split, check),
    "pitts250k": lambda root, split, check: load_pittsburgh(root, "250k", split, check),
    "tokyo247": lambda root, split, check: load_tokyo247(root, split, check),
    "tokyoTM": lambda root, split, check: load_tokyotm(root, split, check),
    "folder": lambda root, split, check: load_folder(root, split),
    "synthetic": lambda root, split, check: load_synthetic(root, split, check),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(_LOADERS)


def load_dataset(name: str, split: str, root: str | os.PathLike = DEFAULT_DATA_ROOT,
                 check_images: bool = True) -> PlaceDataset:
    """Load a split of a dataset by name.

    Raises:
        DatasetError: unknown name (the valid ones are listed) or a bad dataset.
    """
    if name not in _LOADERS:
        raise DatasetError(f"Unknown dataset {name!r}; expected one of {', '.join(_LOADERS)}")
    return _LOADERS[name](root, split, check_images)


def locate_dataset(name: str, split: str, root: str | os.PathLike = DEFAULT_DATA_ROOT) -> Path:
    """The index file (``.mat``) of a public dataset split, without reading it.

    Lets a workflow check, before planning anything, that the data is where the loaders will look.

    Raises:
        DatasetError: the file is missing; the message says where to put which files.
    """
    root = Path(root)
    if name in ("pitts30k", "pitts250k"):
        return find_pitts_files(root, name.removeprefix("pitts"), split)[0]
    if name in ("tokyo247", "tokyoTM"):
        mat = root / "tokyo" / "raw" / ("tokyo247.mat" if name == "tokyo247" else f"tokyoTM_{split}.mat")
        folder = "tokyo247/{images,query}/" if name == "tokyo247" else "tokyoTM/images/"
        if not mat.is_file():
            raise DatasetError(f"{name} {split}: {mat} not found. Put {mat.name} and {folder} under "
                               f"{mat.parent}/ (see README, 'Real datasets')")
        return mat
    raise DatasetError(f"locate_dataset: {name!r} is not a public dataset; expected pitts30k, pitts250k, "
                       "tokyo247 or tokyoTM")


__all__ = ["CONDITIONS", "DEFAULT_DATA_ROOT", "DatasetError", "PlaceDataset", "list_datasets", "load_dataset",
           "locate_dataset"]
