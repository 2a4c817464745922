"""Weakly supervised ranking losses on L2-normalised descriptors, selectable by name.

Each loss takes the query ``q [B, D]``, its positive ``p [B, D]`` and negatives ``n [B, N, D]`` and
returns a scalar. Distances are squared Euclidean.

* ``triplet`` (NetVLAD): mean over tuples and negatives of ``max(0, d(q,p) + m - d(q,n))``, m = 0.1.
* ``sare_joint`` (Liu et al., ICCV 2019): ``-log softmax(-[d(q,p), d(q,n_1..N)])[0]``, one softmax
  over the positive and all negatives.
* ``sare_ind``: the same softmax for each (positive, negative) pair separately, averaged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from wakd.utils import WakdError


def _distances(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d_pos = (q - p).pow(2).sum(-1, keepdim=True)  # [B, 1]
    d_neg = (q[:, None] - n).pow(2).sum(-1)  # [B, N]
    return d_pos, d_neg


def triplet_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    d_pos, d_neg = _distances(q, p, n)
    return F.relu(d_pos + margin - d_neg).mean()


def sare_joint_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    d_pos, d_neg = _distances(q, p, n)
    return -F.log_softmax(-torch.cat([d_pos, d_neg], 1), dim=1)[:, 0].mean()


def sare_ind_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    d_pos, d_neg = _distances(q, p, n)
    pairs = torch.stack([d_pos.expand_as(d_neg), d_neg], -1)  # [B, N, 2]
    return -F.log_softmax(-pairs, dim=-1)[..., 0].mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "triplet": triplet_loss,
    "sare_joint": sare_joint_loss,
    "sare_ind": sare_ind_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    if name not in LOSSES:
        raise WakdError(f"Unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[name]
