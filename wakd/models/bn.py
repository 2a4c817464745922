"""Precise BatchNorm: re-estimate a network's BN running statistics on real images before eval().

Every use of a network in ``eval()`` (hard-negative mining, validation, clustering, extraction)
normalises with the BN *running* statistics. For a network trained from random weights these lag
the weights (momentum averages over a few hundred steps of a moving target): measured on a
MobileNetV3-Small after 60 steps, the eval-mode input variance of the last BN layers was 1-2 % of
the train-mode one, eval-mode descriptors of different images had mean cosine 0.82, and the ranking
loss of the same batches was log 2 (chance) in eval mode. Re-estimating the statistics over a few
hundred training images with the weights frozen (a cumulative average, ``momentum=None``, as in
"precise BN", Wu & Johnson 2021) makes eval mode describe what training optimised.

It is a no-op for networks without BN (VGG16) and is skipped for backbones whose statistics came
with their pretrained weights (the caller decides, see :func:`wants_precise_bn`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from wakd.device import autocast, resolve_precision, to_input
from wakd.models import PRECISE_BN_IMAGES

log = logging.getLogger(__name__)

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
DEFAULT_IMAGES = PRECISE_BN_IMAGES


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BN layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, BN_TYPES) and m.track_running_stats]


def wants_precise_bn(model: nn.Module, num_images: int, pretrained: bool, what: str = "network") -> bool:
    """Whether precise BN applies to ``model``; logs the reason when it does not."""
    if num_images <= 0:
        log.info("precise BN off for the %s (--precise-bn 0)", what)
        return False
    if not bn_layers(model):
        log.info("precise BN: the %s has no BatchNorm layer, nothing to re-estimate", what)
        return False
    if pretrained:
        log.info("precise BN skipped for the %s: its BN statistics come with its pretrained weights", what)
        return False
    return True


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device, precision: str = "fp32",
                   size: tuple[int, int] | None = None) -> int:
    """Replace the running statistics of every BN layer by their average over the image ``batches``
    (``[B, 3, H, W]`` CPU tensors, e.g. :func:`wakd.features.calibrate_bn`'s; batches of one image
    are skipped: their variance estimate is degenerate).

    The weights are untouched and no gradient is recorded; each BN layer sees the same batches it
    would see in training (its own inputs, in train mode) and averages their statistics
    cumulatively. Other layers run in eval mode (no dropout). Modes and momenta are restored.

    Returns:
        The number of BN layers re-estimated (0 if there are none).
    """
    layers = bn_layers(model)
    if not layers:
        return 0
    was_training = model.training
    saved = [(m, m.momentum) for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
        m.train()
    precision = resolve_precision(device, precision, model=model, size=size)
    try:
        for x in batches:
            if len(x) < 2:
                continue
            with autocast(device, precision):
                model(to_input(x, device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return len(layers)
