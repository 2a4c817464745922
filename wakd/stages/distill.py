"""``wakd distill``: attention-based knowledge distillation of a student from a frozen teacher (WAKD).

The student (backbone + NetVLAD, usually MobileNetV3) is trained by the teacher-training loop of
:mod:`wakd.stages.train` (tuple mining with the student's own descriptors, checkpoints, resume,
validation, DDP, autocast) with this objective per batch of tuples::

    loss = hard_loss + kd_weight * (kd_vlad + kd_att) + rank_weight * kd_rank   (--kd-terms: which of the two)
           [+ soft_weight * soft_loss from generation 1 on: SFRS's region soft loss, see wakd.stages.train]
    hard_loss = ranking loss (SARE-ind on dot products / 0.07 by default) on the student's descriptors
    kd_vlad   = MSE(G(V_s), G(V_t)),  V = intra-normalised NetVLAD residuals, before the final L2
    kd_att    = MSE(G(M_s), G(M_t)),  M = attention maps (:mod:`wakd.models.attention`)
    G(X)      = rownorm(X Xᵀ) over the images of the batch (``--gram rownorm``, the default; ``--gram-scope
                tuple``: one matrix per tuple, the MSE over all of them, as the authors' code does)
    kd_rank   = KL(teacher || student) of each tuple's softmax over its candidates (:func:`soft_ranking_kd`;
                ours, not a term of the WAKD or SFRS code)

The Gram matrices make teacher and student comparable although their descriptor sizes and
feature-map resolutions differ. ``rownorm`` is what the WAKD code computes
(``F.normalize(X @ X.T, dim=1)``, similarity-preserving KD) and what its weight 100 was chosen
for; ``--gram cosine`` normalises the rows of X *before* the product instead (the batch's
cosine-similarity matrix: symmetric, unit diagonal). At equal weight the cosine form's terms are
20-580x larger (batches of 9-56 images), enough to swamp the ranking loss.
Each step also logs every weighted term's share of the gradient norm at the student's feature map
(``gshare_*`` in ``steps.csv``), so an over-weighted term is visible.
The teacher is loaded from its checkpoint, frozen, in ``eval()`` and only run forward (its
attention weights come from a detached copy of its features).
``kd_weight 0`` and ``rank_weight 0`` train the same student without distillation (the ablation
row); the KD terms are still computed and logged so both runs can be compared step by step.
The teacher's outputs on every training image are computed once before training and looked up by
each step (:class:`TeacherCache`; ``--teacher-cache-gb`` bounds its memory), which on a CPU halves
the time of a distillation step of the demo pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from wakd.models import REGION_LAYOUTS
from wakd.options import BACKBONES, arch_kwargs, option
from wakd.stages.train import LOSS_HELP, LOSS_NAMES, TrainConfig

GRAM_FORMS = ("rownorm", "cosine")
KD_TERMS = ("vlad", "att")  # kd_vlad, kd_att
GRAM_SCOPES = ("batch", "tuple")


@dataclass(kw_only=True)
class DistillConfig(TrainConfig):
    """attention-based knowledge distillation of a student from a frozen teacher (WAKD)

    Train the student (backbone + NetVLAD) with the teacher-training loop and the loss
    hard_loss + kd_weight * (kd_vlad + kd_att) + rank_weight * kd_rank against the frozen --teacher
    (kd_vlad, kd_att: MSE of batch Gram matrices of NetVLAD residuals and of attention maps; kd_rank: the
    teacher's soft ranking of each tuple's candidates). --kd-weight 0 --rank-weight 0 trains the same
    student without distillation. Writes checkpoint.pth.tar, model_best.pth.tar, history.csv, steps.csv in
    --out-dir. Multi-GPU: torchrun --nproc_per_node N -m wakd distill ...
    """

    teacher: str = option(help="the teacher's checkpoint (model_best.pth.tar of wakd train, or an OpenIBL "
                               "checkpoint with --teacher-arch)", path="in")
    teacher_arch: str | None = option(None, "teacher backbone when the checkpoint does not record it",
                                      choices=BACKBONES)
    teacher_num_clusters: int | None = option(None, "teacher NetVLAD K when not recorded", low=1)
    teacher_last_layer: int = option(3, "resnet* teacher cut (with --teacher-arch)", choices=(3, 4))
    kd_weight: float = option(100.0, "weight of the KD terms (0: no KD)", low=0)
    kd_terms: tuple[str, ...] = option(KD_TERMS, "the Gram terms --kd-weight applies to: vlad (NetVLAD residuals), "
                                                 "att (attention maps); a term left out is logged with weight 0 "
                                                 "(the ablation's one-term variants)", choices=KD_TERMS)
    rank_weight: float = option(0.0, "weight of the soft ranking term kd_rank (ours, not in the WAKD or SFRS code): "
                                     "KL from the frozen teacher's softmax over each tuple's candidates", low=0)
    regions: str = option("wakd", "regions of the soft loss and of the region-hardest negatives: wakd = whole + 3 "
                                  "horizontal + 3 vertical strips of a 3x3 grid (7, the WAKD code), sfrs = whole + 4 "
                                  "halves + 4 quarters of a 2x2 grid (9, OpenIBL's SFRS)", choices=REGION_LAYOUTS)
    gram: str = option("rownorm", "batch similarity matrices of the KD terms: rownorm = normalize(X Xt, dim=1) as "
                                  "in the WAKD code, cosine = rows of X normalised before the product",
                       choices=GRAM_FORMS)
    gram_scope: str = option("batch", "images one Gram matrix spans: batch = all tuples of a step (ours), tuple = "
                                      "each tuple alone (the authors' scope: one tuple per process)",
                             choices=GRAM_SCOPES)
    loss: str = option("sare_ind", LOSS_HELP, choices=LOSS_NAMES)
    temperature: float | None = option(0.07, "SARE on dot products / T (the WAKD code); 0: on negative squared "
                                             "distances (OpenIBL's teacher)", low=0)
    teacher_cache_gb: float = option(4.0, "memory (GiB, per process, on --device) for the frozen teacher's outputs "
                                          "on every training image, computed once before training instead of a "
                                          "teacher forward pass every step; a split needing more runs the teacher "
                                          "every step (0: always)",
                                     low=0, metavar="GB")

    @property
    def teacher_arch_kwargs(self) -> dict | None:
        """The teacher's backbone options; None: those recorded in its checkpoint."""
        return arch_kwargs(self.teacher_arch, self.teacher_last_layer) or None if self.teacher_arch else None


def run(cfg: DistillConfig) -> dict:
    """The ``wakd distill`` command: :func:`wakd.training.distill.distill` (imported here, so that parsing
    the options does not import torch)."""
    from wakd.training.distill import distill

    return distill(cfg)


def __getattr__(name: str):
    """The distillation's names (:mod:`wakd.training.distill`: ``distill``, ``kd_terms``, ``gram``,
    ``TeacherCache``, ...), imported when first asked for."""
    if name.startswith("__"):
        raise AttributeError(name)
    from wakd.training import distill

    try:
        return getattr(distill, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
