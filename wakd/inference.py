"""A trained network on anyone's photos: :func:`load_model` and :func:`describe`.

    import wakd
    model = wakd.load_model("results/train/synthetic/student_kd/model_best.pth.tar")
    desc = wakd.describe(model, ["a.jpg", "b.jpg"])       # [2, D] float32, L2-normalised

The checkpoint (``wakd train`` / ``wakd distill``) says everything needed: the backbone and its
options, NetVLAD's K and the input size; a PCA whitening from ``wakd pca`` can be added. The model
takes RGB images as floats in [0, 1] (``[B, 3, H, W]``) and applies the ImageNet normalisation
itself, so an exported copy (``wakd export``) needs no preprocessing but the resize.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF

from wakd.data.base import DatasetError
from wakd.data.images import load_image, resize_to
from wakd.data.loader import IMAGENET_MEAN, IMAGENET_STD
from wakd.models.build import network_from_checkpoint
from wakd.models.netvlad import EmbedNet
from wakd.progress import Progress
from wakd.utils import WakdError

log = logging.getLogger(__name__)

class DescriptorModel(torch.nn.Module):
    """A trained descriptor network with its preprocessing.

    ``forward(x)``: ``x`` RGB ``[B, 3, H, W]`` floats in [0, 1] (resized to :attr:`size`) ->
    L2-normalised descriptors ``[B, dim]``. :meth:`preprocess` turns a PIL image into such an ``x``.
    """

    def __init__(self, net: EmbedNet, size: tuple[int, int] | None, info: dict[str, Any]) -> None:
        super().__init__()
        self.net, self.size, self.info = net, size, info
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def dim(self) -> int:
        return self.net.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """An RGB PIL image -> ``[3, H, W]`` floats in [0, 1], resized as in training (bilinear)."""
        img = img.convert("RGB")
        return TF.to_tensor(resize_to(img, self.size) if self.size is not None else img)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: str | os.PathLike, pca: str | os.PathLike | None = None,
               device: str | torch.device = "cpu") -> DescriptorModel:
    """The network of a wakd checkpoint, ready for inference (eval mode, on ``device``).

    Args:
        path: ``model_best.pth.tar`` (or ``checkpoint.pth.tar``) of ``wakd train`` / ``wakd distill``.
        pca: a PCA-whitening HDF5 of ``wakd pca`` for this network (optional).
        device: where the model runs.

    Raises:
        WakdError: a missing, foreign or refused checkpoint, or one whose tensors do not fit the
            network its config names.
    """
    net, ck = network_from_checkpoint(path, pca=pca, exact=True, unrecorded=(
        f"{path}: not a wakd checkpoint: expected 'model' (state dict) and 'config' naming arch and num_clusters "
        "(model_best.pth.tar of wakd train / distill)"))
    cfg = ck["config"]
    kwargs = dict(cfg.get("arch_kwargs") or {})
    size = tuple(cfg["size"]) if cfg.get("size") else None
    info = {"checkpoint": str(Path(path).resolve()), "checkpoint_sha256": file_sha256(path),
            "pca": str(Path(pca).resolve()) if pca else "", "pca_sha256": file_sha256(pca) if pca else "",
            "arch": cfg["arch"], "arch_kwargs": kwargs, "num_clusters": int(cfg["num_clusters"]),
            "size": list(size) if size else None, "dim": net.out_dim, "epoch": ck.get("epoch")}
    model = DescriptorModel(net, size, info).eval()
    return model.to(device=torch.device(device), memory_format=torch.channels_last)


class _Images(Dataset):
    """Images (paths or PIL images) preprocessed for ``model``, with their index and an error message
    (empty when the image was read; an unreadable file gives a placeholder tensor and the message)."""

    def __init__(self, images: Sequence, model: DescriptorModel) -> None:
        self.images, self.preprocess = list(images), model.preprocess
        self.shape = (3, *model.size) if model.size else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        item = self.images[i]
        try:
            img = item if isinstance(item, Image.Image) else load_image(item)
        except DatasetError as exc:
            return torch.zeros(self.shape or (3, 8, 8)), i, str(exc)
        return self.preprocess(img), i, ""


def iter_descriptors(model: DescriptorModel, images: Sequence, batch_size: int = 32, workers: int = 0,
                     precision: str = "fp32", skip_unreadable: bool = False, desc: str = "describe"):
    """Yield ``(indices, descriptors [b, D] float32)`` batch by batch; unreadable images are logged and
    left out with ``skip_unreadable``, else raise a WakdError naming the file."""

    from wakd.device import autocast, resolve_precision, to_input

    device = next(model.parameters()).device
    precision = resolve_precision(device, precision, model=model, size=model.size)
    ds = _Images(images, model)
    loader = DataLoader(ds, batch_size=batch_size if model.size else 1, num_workers=workers,
                        pin_memory=device.type == "cuda")
    with torch.inference_mode(), Progress(len(ds), desc, "img", quiet_off_terminal=True, logger=log) as bar:
        for x, idx, errors in loader:
            good = [j for j, e in enumerate(errors) if not e]
            for e in errors:
                if e and not skip_unreadable:
                    raise WakdError(e)
                if e:
                    log.warning("skipped: %s", e)
            bar.update(len(idx))
            if not good:
                continue
            with autocast(device, precision):
                y = model(to_input(x[good], device))
            yield idx[good].numpy(), y.float().cpu().numpy()


def describe(model: DescriptorModel, images: Iterable, batch_size: int = 32, workers: int = 0,
             precision: str = "fp32") -> np.ndarray:
    """``[N, D]`` float32 descriptors of ``images`` (file paths or PIL images), in order.

    Raises:
        WakdError: an unreadable image (named).
    """
    parts = [y for _idx, y in iter_descriptors(model, list(images), batch_size, workers, precision)]
    return np.concatenate(parts) if parts else np.zeros((0, model.dim), np.float32)
