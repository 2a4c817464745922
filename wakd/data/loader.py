"""Torch datasets over image lists, with ImageNet normalisation and the datasets' resize rules.

Training reads the same few thousand images every epoch (mining, training tuples, validation,
precise BN). :class:`DecodedImages` keeps them decoded and resized, as uint8, in the process's
memory for the length of a run, so each is decoded once; the tensors given out are bitwise those
of a fresh decode.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF

from wakd.data.base import DatasetError
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


JPEG_EXTS = (".jpg", ".jpeg")


class EncodedImages(Dataset):
    """Image files as their bytes (uint8 tensors), decoded later by :func:`decode_batch` on the
    run's device: nvjpeg on a GPU, where the CPU's decoders would be the bottleneck."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            with open(self.paths[i], "rb") as fh:
                return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8), i
        except FileNotFoundError:
            raise DatasetError(f"{self.paths[i]}: image file not found") from None
        except (OSError, ValueError) as exc:  # unreadable, or empty (frombuffer of no bytes)
            raise DatasetError(f"{self.paths[i]}: unreadable image file ({exc})") from None


def _collate_encoded(batch: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    return [b[0] for b in batch], torch.tensor([b[1] for b in batch])


def encoded_loader(paths: Sequence[str], batch_size: int, workers: int) -> DataLoader:
    """Batches of ``(list of encoded JPEG files, indices)`` in order (see :func:`decode_batch`).

    Raises:
        DatasetError: a file that is not a JPEG (named).
    """
    other = next((p for p in paths if not str(p).lower().endswith(JPEG_EXTS)), None)
    if other is not None:
        raise DatasetError(f"{other}: --decode torchvision reads JPEG files only (.jpg/.jpeg); use --decode pil")
    return DataLoader(EncodedImages(paths), batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=_collate_encoded, persistent_workers=False)


def _decode_jpeg(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """``torchvision.io.decode_jpeg`` on ``device`` (batched nvjpeg on CUDA). torchvision 0.29 deprecates
    its decoders in favour of TorchCodec, which is not among our dependencies: its warning is silenced
    here, where it would be repeated for every batch."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                                category=DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_batch(data: list[torch.Tensor], paths: Sequence[str], size: tuple[int, int],
                 device: torch.device) -> torch.Tensor:
    """Encoded JPEGs -> ``[B, 3, H, W]`` ImageNet-normalised float on ``device``: decoded by
    ``torchvision.io.decode_jpeg`` there (nvjpeg on CUDA), resized with antialiased bilinear
    interpolation (close to, not bitwise, PIL's bilinear resize)."""
    from torchvision.transforms import InterpolationMode

    if device.type == "cuda":
        # torchvision's GPU decoder writes on its own stream, not ordered after work queued on ours
        # (pytorch/vision#9606): let that work finish before the decoder may reuse its memory
        torch.cuda.current_stream(device).synchronize()
    try:
        imgs = _decode_jpeg(data, device)
    except RuntimeError:
        for d, p in zip(data, paths):  # name the file that fails
            try:
                _decode_jpeg([d], torch.device("cpu"))
            except RuntimeError as exc:
                raise DatasetError(f"{p}: unreadable image ({exc})") from None
        # every file decodes on the CPU (e.g. a JPEG kind the GPU decoder does not take): decode there
        imgs = [img.to(device) for img in _decode_jpeg(data, torch.device("cpu"))]
    x = torch.stack([TF.resize(img, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
                     for img in imgs])
    return TF.normalize(x.float().div(255), IMAGENET_MEAN, IMAGENET_STD)

