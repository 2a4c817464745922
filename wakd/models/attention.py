"""Attention maps of a conv feature map, computed the same way for teacher and student (WAKD).

A Grad-CAM-style map whose "class" is the strongest channel: for the last conv feature map ``A``
(after ReLU), ``p = softmax_c(mean_hw A)``; ``max_c p`` is back-propagated to a *detached* copy of
``A`` (so no gradient ever reaches the network's weights through this step); the channel weights
``w`` are the spatial means of that gradient; the map is ``ReLU(mean_c(A * w))`` divided by its
spatial maximum and flattened. Gradients of a loss on the map flow to the network through ``A``
only, with ``w`` held constant, which is what distilling the student needs; under ``no_grad`` (the
frozen teacher) nothing is recorded at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12


def channel_weights(features: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` Grad-CAM weights of ``max_c softmax_c(mean_hw A)`` for ``A = ReLU(features)``.

    Computed on a detached float32 copy, so the result carries no autograd history.
    """
    with torch.enable_grad():
        a = F.relu(features.detach().float()).requires_grad_(True)
        p = a.mean(dim=(2, 3)).softmax(dim=1)
        # samples are independent, so the gradient of the sum is each sample's own gradient
        (grad,) = torch.autograd.grad(p.max(dim=1).values.sum(), a)
    return grad.mean(dim=(2, 3))


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """``[B, H*W]`` non-negative attention of a ``[B, C, H, W]`` feature map, max-normalised per image.

    An image whose map is zero everywhere keeps a zero map (no division by zero).
    """
    w = channel_weights(features)
    a = F.relu(features.float())
    cam = F.relu((a * w[:, :, None, None]).mean(dim=1)).flatten(1)
    return cam / cam.amax(dim=1, keepdim=True).clamp_min(EPS)
