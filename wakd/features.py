"""Running a network over an image list: global descriptors or sampled local features."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from wakd.data.loader import image_loader
from wakd.device import autocast, prepare, resolve_precision, to_input

log = logging.getLogger(__name__)


@torch.no_grad()
def map_images(fn: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module, paths: Sequence[str],
               device: torch.device, batch_size: int = 16, workers: int = 2, precision: str = "auto",
               size: tuple[int, int] | None = None, desc: str = "images") -> list[np.ndarray]:
    """Apply ``fn(model_output_of_batch)`` to every batch of images; return per-batch float32 arrays."""
    model = prepare(model, device).eval()
    precision = resolve_precision(device, precision)
    loader = image_loader(paths, batch_size, workers, size=size, pin_memory=device.type == "cuda")
    out = []
    with tqdm(total=len(paths), unit="img", desc=desc, mininterval=2.0) as bar:
        for x, _idx in loader:
            with autocast(device, precision):
                y = fn(model(to_input(x, device)))
            out.append(y.float().cpu().numpy())
            bar.update(len(x))
    return out


def describe_images(model: torch.nn.Module, paths: Sequence[str], device: torch.device, **kw) -> np.ndarray:
    """``[len(paths), D]`` global descriptors of a model whose forward returns them."""
    parts = map_images(lambda y: y, model, paths, device, desc="describe", **kw)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
