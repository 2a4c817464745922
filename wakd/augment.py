"""Photometric augmentation of training batches (``wakd train`` / ``wakd distill``: ``--jitter``, ``--relight``).

Applied in the training step only, to the batch of tuple images already on the step's device: never in
mining, validation, clustering, precise BN or extraction, whose images stay as decoded. Each image gets
its own random draw; the draws of a step come from a generator seeded by ``(seed, epoch, step, rank)``
alone, so they do not touch the global random state (mining and dropout draw the same numbers with or
without augmentation) and a resumed run draws what an uninterrupted one would.

Two transforms, in this order:

* **relight** (ours, with probability ``--relight P`` per image): a capture in other light. The image is
  taken to linear light (gamma 2.2), scaled by an exposure drawn log-uniformly in [0.04, 1] (down to a
  night's ambient light), tinted by per-channel gains in [0.55, 1] (warm sunset light, bluish night
  light, or anything between), given Gaussian sensor noise of sigma up to 0.03, and taken back through
  gamma 2.2.
* **colour jitter** (CosPlace's ``DeviceAgnosticColorJitter``: torchvision's ``ColorJitter`` drawn per image):
  brightness, contrast and saturation factors in ``[max(0, 1 - v), 1 + v]``, hue shift in ``[-h, h]``, the
  four applied in a random order per image. CosPlace trains with ``0.7 0.7 0.7 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from wakd.data.loader import IMAGENET_MEAN, IMAGENET_STD

GAMMA = 2.2
EXPOSURE_RANGE = (0.04, 1.0)  # relight: linear-light scale (the city's night ambient is ~0.07 of its day)
TINT_LOW = 0.55  # relight: smallest per-channel gain
NOISE_MAX = 0.03  # relight: largest sensor-noise sigma (linear light)
JITTER_FNS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


@dataclass(frozen=True)
class Photometric:
    """Per-image photometric augmentation of normalised ``[N, 3, H, W]`` batches.

    Args:
        jitter: (brightness, contrast, saturation, hue) of the colour jitter; zeros: none.
        relight: probability that an image is relit (0: never).
        seed: the run's seed.
    """

    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    relight: float = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.relight > 0 or any(v > 0 for v in self.jitter)

    def generators(self, device: torch.device, key: tuple[int, ...]) -> tuple[torch.Generator, torch.Generator]:
        """The step's generators: one on the CPU for the per-image draws, one on ``device`` for the noise."""
        state = np.random.SeedSequence([self.seed, *key]).generate_state(2, dtype=np.uint64)
        cpu = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        dev = torch.Generator(device=device).manual_seed(int(state[1] >> np.uint64(1)))
        return cpu, dev

    def __call__(self, x: torch.Tensor, key: tuple[int, ...]) -> torch.Tensor:
        """The batch ``x`` (normalised with the ImageNet mean and std) augmented with the draws of step ``key``
        (``(epoch, step, rank)``), normalised again; ``x`` itself is left unchanged."""
        if not self.active:
            return x
        cpu, dev = self.generators(x.device, key)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        img = (x.float() * std + mean).clamp_(0, 1)
        if self.relight > 0:
            img = self._relight(img, cpu, dev)
        if any(v > 0 for v in self.jitter):
            img = torch.stack([self._jitter(im, cpu) for im in img])
        return ((img - mean) / std).to(x.dtype).contiguous(memory_format=torch.channels_last)

    def _relight(self, img: torch.Tensor, cpu: torch.Generator, dev: torch.Generator) -> torch.Tensor:
        n = len(img)
        pick = torch.rand(n, generator=cpu) < self.relight
        lo, hi = np.log(EXPOSURE_RANGE[0]), np.log(EXPOSURE_RANGE[1])
        exposure = torch.exp(lo + (hi - lo) * torch.rand(n, generator=cpu))
        tint = TINT_LOW + (1 - TINT_LOW) * torch.rand(n, 3, generator=cpu)
        tint = tint / tint.amax(1, keepdim=True)  # the brightest channel keeps the exposure
        sigma = NOISE_MAX * torch.rand(n, generator=cpu)
        gain = (exposure[:, None] * tint).to(img.device)[:, :, None, None]
        noise = torch.randn(img.shape, generator=dev, device=img.device) * sigma.to(img.device)[:, None, None, None]
        relit = (img.pow(GAMMA) * gain + noise).clamp_(0, 1).pow(1 / GAMMA)
        return torch.where(pick.to(img.device)[:, None, None, None], relit, img)

    def _jitter(self, im: torch.Tensor, cpu: torch.Generator) -> torch.Tensor:
        """torchvision's ColorJitter on one image, its factors drawn from ``cpu``."""
        b, c, s, h = self.jitter
        u = torch.rand(4, generator=cpu).tolist()
        factors = [max(0.0, 1 - b) + u[0] * (1 + b - max(0.0, 1 - b)),
                   max(0.0, 1 - c) + u[1] * (1 + c - max(0.0, 1 - c)),
                   max(0.0, 1 - s) + u[2] * (1 + s - max(0.0, 1 - s)),
                   -h + u[3] * 2 * h]
        for i in torch.randperm(4, generator=cpu).tolist():
            if (b, c, s, h)[i] > 0:
                im = JITTER_FNS[i](im, factors[i])
        return im
