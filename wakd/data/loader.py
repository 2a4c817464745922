"""Torch datasets over image lists, with ImageNet normalisation and the datasets' resize rules."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF

from wakd.data.images import load_image, resize_shorter_side, resize_to

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    return DataLoader(ImageList(paths, size, shorter_side), batch_size=batch_size, shuffle=False,
                      num_workers=workers, pin_memory=pin_memory, persistent_workers=False)
