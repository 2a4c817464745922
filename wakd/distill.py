"""``wakd distill``: attention-based knowledge distillation of a student from a frozen teacher (WAKD).

The student (backbone + NetVLAD, usually MobileNetV3) is trained by the teacher-training loop of
:mod:`wakd.train` (tuple mining with the student's own descriptors, checkpoints, resume,
validation, DDP, autocast) with this objective per batch of tuples::

    loss = hard_loss + kd_weight * (kd_vlad + kd_att)
    hard_loss = ranking loss (SARE-ind by default) on the student's descriptors
    kd_vlad   = MSE(G(V_s), G(V_t)),  V = intra-normalised NetVLAD residuals, before the final L2
    kd_att    = MSE(G(M_s), G(M_t)),  M = attention maps (:mod:`wakd.models.attention`)
    G(X)      = X̂ X̂ᵀ over the images of the batch, X̂ = X with L2-normalised rows

The Gram matrices make teacher and student comparable although their descriptor sizes and
feature-map resolutions differ. Choice: rows are normalised *before* the product, so ``G`` is the
batch's cosine-similarity matrix (symmetric, unit diagonal, invariant to each image's scale);
similarity-preserving KD normalises the rows of ``X Xᵀ`` instead, which is not symmetric.
The teacher is loaded from its checkpoint, frozen, in ``eval()`` and only run forward (its
attention weights come from a detached copy of its features).
``kd_weight 0`` trains the same student without distillation (the ablation row); the KD terms are
still computed and logged so both runs can be compared step by step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wakd.device import autocast, prepare
from wakd.models.attention import attention_map
from wakd.models.build import build_embednet
from wakd.models.netvlad import EmbedNet
from wakd.models.weights import load_weights
from wakd.train import RankingObjective, TrainConfig, train
from wakd.utils import WakdError

log = logging.getLogger(__name__)


@dataclass
class DistillConfig(TrainConfig):
    """A training run of the student; ``teacher`` is the frozen teacher's checkpoint."""

    teacher: str = ""
    teacher_arch: str | None = None
    teacher_num_clusters: int | None = None
    teacher_arch_kwargs: dict | None = None
    kd_weight: float = 100.0
    loss: str = "sare_ind"


def gram(x: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` cosine-similarity matrix of the ``[B, ...]`` batch: ``X̂ X̂ᵀ`` with unit-norm rows ``X̂``.

    A zero row (e.g. an all-zero attention map) gives a zero row and column.
    """
    x = F.normalize(x.flatten(1).float(), dim=1)
    return x @ x.T


def kd_terms(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``kd_vlad`` and ``kd_att`` between two ``EmbedNet(..., return_features=True)`` outputs of one batch."""
    return {"kd_vlad": F.mse_loss(gram(student["vlad_intra"]), gram(teacher["vlad_intra"])),
            "kd_att": F.mse_loss(gram(attention_map(student["features"])), gram(attention_map(teacher["features"])))}


def load_teacher(path: str | os.PathLike, arch: str | None = None, num_clusters: int | None = None,
                 arch_kwargs: dict | None = None) -> EmbedNet:
    """The frozen teacher (``eval()``, no gradients) from a ``wakd train`` or OpenIBL checkpoint.

    A wakd checkpoint records its architecture; other checkpoints need ``arch`` and ``num_clusters``.
    Every tensor of the model must come from the file: a partly loaded teacher is refused.
    """
    if not os.path.isfile(path):
        raise WakdError(f"--teacher {path}: no such checkpoint (train the teacher first: wakd train)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for unreadable or unsafe files
        raise WakdError(f"--teacher {path}: not a loadable weights-only checkpoint ({exc})") from None
    saved = ck.get("config", {}) if isinstance(ck, dict) else {}
    arch = arch or saved.get("arch")
    num_clusters = num_clusters or saved.get("num_clusters")
    if not arch or not num_clusters:
        raise WakdError(f"--teacher {path}: the checkpoint does not record its architecture; give "
                        "--teacher-arch and --teacher-num-clusters")
    kwargs = arch_kwargs if arch_kwargs is not None else saved.get("arch_kwargs", {})
    model = build_embednet(arch, int(num_clusters), checkpoint=None, **kwargs)
    report = load_weights(model, path)
    if report["missing"]:
        raise WakdError(f"--teacher {path}: the checkpoint lacks {len(report['missing'])} tensor(s) of a {arch} "
                        f"K={num_clusters} teacher (first: {', '.join(report['missing'][:4])})")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    log.info("teacher %s K=%d loaded from %s", arch, num_clusters, path)
    return model


class DistillObjective(RankingObjective):
    """Per-batch WAKD objective: the student's ranking loss plus ``kd_weight`` times the KD terms."""

    def __init__(self, cfg: DistillConfig, teacher: EmbedNet, device: torch.device) -> None:
        super().__init__(cfg)
        self.kd_weight = cfg.kd_weight
        self.teacher = prepare(teacher, device).eval()

    def __call__(self, net: torch.nn.Module, x: torch.Tensor, b: int, t: int, device: torch.device,
                 precision: str) -> dict[str, torch.Tensor]:
        with autocast(device, precision):
            s = net(x, return_features=True)
        with torch.no_grad(), autocast(device, precision):
            tch = self.teacher(x, return_features=True)
        hard = self.ranking_loss(s["desc"], b, t)
        kd = kd_terms(s, tch)
        return {"loss": hard + self.kd_weight * (kd["kd_vlad"] + kd["kd_att"]), "hard_loss": hard, **kd}


def distill(cfg: DistillConfig, resume: str | os.PathLike | None = None) -> dict:
    """Train the student of ``cfg`` against the frozen teacher ``cfg.teacher``; see :func:`wakd.train.train`."""
    if cfg.kd_weight < 0:
        raise WakdError(f"--kd-weight {cfg.kd_weight}: expected a non-negative weight")
    teacher = load_teacher(cfg.teacher, cfg.teacher_arch, cfg.teacher_num_clusters, cfg.teacher_arch_kwargs)
    return train(cfg, resume=resume, objective=lambda device: DistillObjective(cfg, teacher, device))
