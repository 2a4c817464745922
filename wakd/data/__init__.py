"""The dataset layer: one module per format, all returning :class:`wakd.data.base.PlaceDataset`."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from wakd.data.base import CONDITIONS, DatasetError, PlaceDataset

DEFAULT_DATA_ROOT = "datasets/data"

# name -> (module, loader, fixed keyword arguments). Loaders are imported by name when a dataset is
# loaded, so a stage's code fingerprint (wakd.fingerprint) holds only the loaders its datasets use.
# `root` is the data root for the public datasets and the dataset folder for folder and synthetic.
LOADERS: dict[str, tuple[str, str, dict]] = {
    "pitts30k": ("wakd.data.pittsburgh", "load_pittsburgh", {"scale": "30k"}),
    "pitts250k": ("wakd.data.pittsburgh", "load_pittsburgh", {"scale": "250k"}),
    "tokyo247": ("wakd.data.tokyo", "load_tokyo247", {}),
    "tokyoTM": ("wakd.data.tokyo", "load_tokyotm", {}),
    "folder": ("wakd.data.folder", "load_folder", {}),
    "synthetic": ("wakd.data.synthetic", "load_synthetic", {}),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(LOADERS)


def load_dataset(name: str, split: str, root: str | os.PathLike = DEFAULT_DATA_ROOT,
                 check_images: bool = True) -> PlaceDataset:
    """Load a split of a dataset by name.

    Raises:
        DatasetError: unknown name (the valid ones are listed) or a bad dataset.
    """
    if name not in LOADERS:
        raise DatasetError(f"Unknown dataset {name!r}; expected one of {', '.join(LOADERS)}")
    module, function, fixed = LOADERS[name]
    loader = getattr(importlib.import_module(module), function)
    if name == "folder":  # a folder of images has nothing to check beyond listing them
        return loader(root, split=split, **fixed)
    return loader(root, split=split, check_images=check_images, **fixed)


def locate_dataset(name: str, split: str, root: str | os.PathLike = DEFAULT_DATA_ROOT) -> Path:
    """The index file (``.mat``) of a public dataset split, without reading it.

    Lets a workflow check, before planning anything, that the data is where the loaders will look.

    Raises:
        DatasetError: the file is missing; the message says where to put which files.
    """
    root = Path(root)
    if name in ("pitts30k", "pitts250k"):
        find_pitts_files = importlib.import_module("wakd.data.pittsburgh").find_pitts_files
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
