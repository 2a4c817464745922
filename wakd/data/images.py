"""Image loading with clear errors, and the resize rule for evaluation queries."""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError

from wakd.data.base import DatasetError


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image as RGB.

    Raises:
        DatasetError: naming the file, when it is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: refused, too many pixels for a photo ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None


def resize_to(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to ``size`` = (height, width), bilinear: how every network stage resizes with ``--size``
    (and :mod:`wakd.inference` at the checkpoint's size, so both describe an image alike)."""
    return img.resize((size[1], size[0]), resample=Image.BILINEAR)


def resize_shorter_side(img: Image.Image, shorter: int | None) -> Image.Image:
    """Resize so the shorter side has ``shorter`` pixels, keeping the aspect ratio (None: as is)."""
    if shorter is None:
        return img
    w, h = img.size
    scale = shorter / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if size == (w, h) else img.resize(size, Image.BILINEAR)
