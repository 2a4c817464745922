"""Running a network over an image list: global descriptors or sampled local features."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from wakd.data.base import PlaceDataset
from wakd.data.loader import decode_batch, encoded_loader, image_loader
from wakd.device import autocast, prepare, resolve_precision, to_input
from wakd.progress import Progress
from wakd.utils import WakdError

log = logging.getLogger(__name__)


def sample_paths(paths: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` of ``paths`` drawn without replacement with ``seed`` (all if fewer), in their original order."""
    rng = np.random.default_rng(seed)
    n = min(n, len(paths))
    return [paths[i] for i in np.sort(rng.choice(len(paths), n, replace=False))]


@torch.no_grad()
def iter_images(fn: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module, paths: Sequence[str],
                device: torch.device, batch_size: int = 16, workers: int = 2, precision: str = "auto",
                size: tuple[int, int] | None = None, shorter_side: int | None = None,
                desc: str = "images", decode: str = "pil") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(image indices, fn(model(batch)) as float32)`` batch by batch, in order.

    The model runs in eval mode, channels_last, under the chosen autocast; images are loaded by
    ``workers`` processes (pinned memory on CUDA). Images of varying size (``shorter_side``) need
    ``batch_size=1``. ``decode="torchvision"`` reads JPEG files as bytes in the workers and decodes
    and resizes them on ``device`` (:func:`wakd.data.loader.decode_batch`; needs ``size``).
    """
    model = prepare(model, device).eval()
    precision = resolve_precision(device, precision, model=model, size=size)
    if decode == "torchvision":
        if size is None:
            raise WakdError("--decode torchvision needs --size (one size for every image)")
        loader = ((decode_batch(data, [paths[i] for i in idx], size, device), idx)
                  for data, idx in encoded_loader(paths, batch_size, workers))
    elif decode == "pil":
        loader = image_loader(paths, batch_size, workers, size=size, shorter_side=shorter_side,
                              pin_memory=device.type == "cuda")
    else:
        raise WakdError(f"--decode {decode!r}: expected pil or torchvision")
    # one input shape: let cuDNN time its kernels once and keep the fastest (restored afterwards)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark or (device.type == "cuda" and size is not None)
    try:
        yield from _run(fn, model, loader, device, precision, len(paths), desc)
    finally:
        torch.backends.cudnn.benchmark = benchmark


@torch.no_grad()
def _run(fn, model, loader, device, precision, total, desc):
    with Progress(total, desc, "img", quiet_off_terminal=True, logger=log) as bar:
        for x, idx in loader:
            with autocast(device, precision):
                y = fn(model(to_input(x, device)))
            yield idx.numpy(), y.float().cpu().numpy()
            bar.update(len(x))


def map_images(fn: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module, paths: Sequence[str],
               device: torch.device, **kw) -> list[np.ndarray]:
    """:func:`iter_images` collected: the per-batch outputs, in order."""
    return [y for _idx, y in iter_images(fn, model, paths, device, **kw)]


def describe_images(model: torch.nn.Module, paths: Sequence[str], device: torch.device, desc: str = "describe",
                    **kw) -> np.ndarray:
    """``[len(paths), D]`` global descriptors of a model whose forward returns them (``desc``: the
    progress bar's label)."""
    parts = map_images(lambda y: y, model, paths, device, desc=desc, **kw)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def precise_bn_paths(ds: PlaceDataset, num_images: int, seed: int, draw: tuple[int, ...] = ()) -> list[str]:
    """The images of precise BN, one choice for every stage: ``num_images`` of the training split's
    database and query images (all capture conditions the network will see), drawn without replacement
    by a generator seeded with ``(seed, *draw)``. ``wakd cluster`` and ``wakd extract`` (a network as
    initialised) draw with ``draw=()``, so they calibrate on the same images; training draws anew at each
    calibration with ``draw=(epoch, step)`` (generation starts: ``(generation, 1)``)."""
    rng = np.random.default_rng([seed, *draw])
    return sample_paths(ds.db_paths + ds.q_paths, num_images, int(rng.integers(2**31)))


def calibrate_bn(model: torch.nn.Module, ds: PlaceDataset, num_images: int, seed: int, device: torch.device,
                 draw: tuple[int, ...] = (), batch_size: int = 32, workers: int = 0, precision: str = "fp32",
                 size: tuple[int, int] | None = None) -> int:
    """Precise BN (:func:`wakd.models.bn.recalibrate_bn`) over the images :func:`precise_bn_paths` chooses,
    read in batches of ``max(2, batch_size)``; returns the number of BN layers re-estimated (0 when there
    are no images or no BN layer)."""
    from wakd.models.bn import bn_layers, recalibrate_bn

    paths = precise_bn_paths(ds, num_images, seed, draw)
    if not paths or not bn_layers(model):
        return 0
    loader = image_loader(paths, max(2, batch_size), workers, size=size, pin_memory=device.type == "cuda")
    return recalibrate_bn(model, (x for x, _ in loader), device, precision=precision, size=size)
