"""Torch datasets over image lists, with ImageNet normalisation and the datasets' resize rules.

Training reads the same few thousand images every epoch (mining, training tuples, validation,
precise BN). :class:`DecodedImages` keeps them decoded and resized, as uint8, in the process's
memory for the length of a run, so each is decoded once; the tensors given out are bitwise those
of a fresh decode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF

from wakd.data.images import load_image, resize_shorter_side, resize_to

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DecodedImages:
    """Fixed-size images kept decoded and resized in memory (uint8 ``[3, H, W]``), up to a budget.

    Only the process that decodes keeps them: a run using it loads with ``workers=0`` (a data-loader
    worker's copies would be lost with it). Images beyond the budget are decoded every time.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget, self.used, self.images = budget_bytes, 0, {}

    def get(self, path: str, size: tuple[int, int]) -> torch.Tensor:
        key = (path, size)
        img = self.images.get(key)
        if img is None:
            img = TF.pil_to_tensor(resize_to(load_image(path), size))
            if self.used + img.numel() <= self.budget:
                self.images[key] = img
                self.used += img.numel()
        return img


_decoded: DecodedImages | None = None


@contextlib.contextmanager
def decoded_images(budget_gb: float, need: int) -> Iterator[bool]:
    """Within the block, fixed-size :class:`ImageList` items come from one in-memory cache of
    ``budget_gb`` GiB, if ``need`` bytes (the images the caller will read) fit in it. Yields whether
    they do (then load with ``workers=0``)."""
    global _decoded
    use = 0 < need <= budget_gb * 2**30 and _decoded is None
    if use:
        _decoded = DecodedImages(need)
    try:
        yield use
    finally:
        if use:
            _decoded = None


def _normalise(img: torch.Tensor) -> torch.Tensor:
    """uint8 ``[3, H, W]`` -> float, ImageNet-normalised (what ``to_tensor`` + ``normalize`` give)."""
    return TF.normalize(img.float().div(255), IMAGENET_MEAN, IMAGENET_STD)


class ImageList(Dataset):
    """Images at ``paths`` as normalised ``[3, H, W]`` tensors, returned with their index.

    Args:
        paths: image files.
        size: resize every image to (height, width); None keeps it (see ``shorter_side``).
        shorter_side: resize so the shorter side has this many pixels (Tokyo 24/7 queries).
    """

    def __init__(self, paths: Sequence[str], size: tuple[int, int] | None = None,
                 shorter_side: int | None = None) -> None:
        self.paths, self.size, self.shorter_side = list(paths), size, shorter_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.size is not None and _decoded is not None:
            return _normalise(_decoded.get(self.paths[i], self.size)), i
        img = load_image(self.paths[i])
        if self.size is not None:
            img = resize_to(img, self.size)
        else:
            img = resize_shorter_side(img, self.shorter_side)
        x = TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)
        return x, i


def image_loader(paths: Sequence[str], batch_size: int, workers: int, size: tuple[int, int] | None = None,
                 shorter_side: int | None = None, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``paths`` in order; images of different sizes need ``batch_size=1``."""
    if size is not None and _decoded is not None:
        workers = 0  # the images are in this process's memory
    return DataLoader(ImageList(paths, size, shorter_side), batch_size=batch_size, shuffle=False,
                      num_workers=workers, pin_memory=pin_memory, persistent_workers=False)
