"""Weakly supervised ranking losses on L2-normalised descriptors, selectable by name.

Each loss takes the query ``q [B, D]``, its positive ``p [B, D]`` and negatives ``n [B, N, D]``,
a ``margin`` (triplet losses) and a ``temperature`` (SARE losses) and returns a scalar.

* ``triplet`` (pytorch-NetVlad, OpenIBL, WAKD): mean over tuples and negatives of
  ``max(0, |q-p| + m - |q-n|)`` on *Euclidean* distances, m = sqrt(0.1) by default (pytorch-NetVlad's
  ``margin**0.5`` for its ``--margin 0.1``), as ``F.triplet_margin_loss``.
* ``triplet_sq``: the same on *squared* distances, m = 0.1 by default (the demo teacher's recipe).
* ``sare_joint`` (Liu et al., ICCV 2019): ``-log softmax(s)[0]`` with one softmax over the positive
  and all negatives; ``sare_ind``: the same softmax for each (positive, negative) pair, averaged.
  The scores ``s`` are, with ``temperature`` T > 0, dot products divided by T (the WAKD code, T = 0.07);
  with T = None or 0, negative squared Euclidean distances (OpenIBL's teacher trainer). On unit
  vectors ``-|q-x|^2 = 2 q.x - 2``, so the Euclidean form is the dot-product form at T = 0.5.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from wakd.loss_names import DEFAULT_MARGINS, LOSS_NAMES, check_loss_options  # noqa: F401 - re-exported
from wakd.utils import WakdError


def _sq_distances(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d_pos = (q - p).pow(2).sum(-1, keepdim=True)  # [B, 1]
    d_neg = (q[:, None] - n).pow(2).sum(-1)  # [B, N]
    return d_pos, d_neg


def tuple_scores(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, temperature: float | None):
    """``([B, 1], [B, N])`` similarity scores of the positive and negatives (higher = closer): dot products /
    ``temperature``, or without one negative squared distances."""
    if temperature:
        return (q * p).sum(-1, keepdim=True) / temperature, torch.einsum("bd,bnd->bn", q, n) / temperature
    d_pos, d_neg = _sq_distances(q, p, n)
    return -d_pos, -d_neg


def triplet_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float | None = None,
                 temperature: float | None = None) -> torch.Tensor:
    margin = DEFAULT_MARGINS["triplet"] if margin is None else margin
    d_pos, d_neg = (d.clamp_min(1e-12).sqrt() for d in _sq_distances(q, p, n))
    return F.relu(d_pos + margin - d_neg).mean()


def triplet_sq_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float | None = None,
                    temperature: float | None = None) -> torch.Tensor:
    margin = DEFAULT_MARGINS["triplet_sq"] if margin is None else margin
    d_pos, d_neg = _sq_distances(q, p, n)
    return F.relu(d_pos + margin - d_neg).mean()


def sare_joint_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float | None = None,
                    temperature: float | None = None) -> torch.Tensor:
    s_pos, s_neg = tuple_scores(q, p, n, temperature)
    return -F.log_softmax(torch.cat([s_pos, s_neg], 1), dim=1)[:, 0].mean()


def sare_ind_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float | None = None,
                  temperature: float | None = None) -> torch.Tensor:
    s_pos, s_neg = tuple_scores(q, p, n, temperature)
    pairs = torch.stack([s_pos.expand_as(s_neg), s_neg], -1)  # [B, N, 2]
    return -F.log_softmax(pairs, dim=-1)[..., 0].mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "triplet": triplet_loss,
    "triplet_sq": triplet_sq_loss,
    "sare_joint": sare_joint_loss,
    "sare_ind": sare_ind_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    if name not in LOSSES:
        raise WakdError(f"Unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[name]



def region_hardest_negatives(q: torch.Tensor, neg_regions: torch.Tensor) -> torch.Tensor:
    """``[B, N, E]``: each negative replaced by its region most similar to the query's global descriptor
    (``q [B, E]``, ``neg_regions [B, N, R, E]``): SFRS / WAKD ``_get_hard_loss`` from generation 1 on."""
    best = torch.einsum("be,bnre->bnr", q, neg_regions).argmax(-1)  # [B, N]
    return neg_regions.gather(2, best[..., None, None].expand(-1, -1, 1, neg_regions.shape[-1]))[:, :, 0]


def region_soft_loss(student: torch.Tensor, labels: torch.Tensor, temperature: float,
                     label_temperature: float) -> torch.Tensor:
    """SFRS's soft cross-entropy (also the WAKD script's), summed over logits and averaged over tuples.

    ``student`` and ``labels`` are ``[B, P, R]`` similarities of each anchor's whole-image descriptor to
    every region of its ``P`` difficult positives (:func:`wakd.models.regions.anchor_region_similarities`),
    from the network being trained and from the soft-label network. One softmax runs over all ``P * R``
    logits of a tuple: the student's log-softmax at ``temperature`` (their ``temp[0]``), the labels'
    softmax at ``label_temperature`` (their ``temp[gen]``)::

        loss = mean_b sum_j -softmax(labels_b / T_gen)_j * log_softmax(student_b / T_0)_j
    """
    b = student.shape[0]
    target = F.softmax(labels.reshape(b, -1).float() / label_temperature, dim=1).detach()
    return (-target * F.log_softmax(student.reshape(b, -1).float() / temperature, dim=1)).mean(0).sum()
