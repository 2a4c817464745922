"""Region-level NetVLAD descriptors of SFRS (OpenIBL) and of the WAKD code, and their similarities.

The conv feature map is cut into a grid of cells; a region is a union of cells, and its descriptor is
the NetVLAD of its locations: the sum of its cells' raw residual sums (soft assignment is per
location, so the sum of the cells' aggregates equals the aggregate of the union), then
intra-normalised and L2-normalised like the global descriptor. Region 0 is always the whole image.

* ``sfrs`` (OpenIBL ``EmbedRegionNet._compute_region_sim``): a 2x2 grid, cells TL, TR, BL, BR;
  9 regions: whole, top, bottom, left, right halves, then the 4 quarters.
* ``wakd`` (WAKD ``EmbedRegionNet._compute_region_sim_triple``): a 3x3 grid, cell = row * 3 + col;
  7 regions: whole, the 3 horizontal strips (rows 0, 1, 2), the 3 vertical strips (columns 0, 1, 2).
  The single cells are not regions.

The authors' code reshapes the map, so its sides must be divisible by 2 (3); where they are not,
ours cuts them into near-equal parts (``torch.tensor_split``: the first parts one row / column
larger), which is the same cut wherever theirs is defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wakd.models import REGION_LAYOUTS
from wakd.models.netvlad import NetVLAD

LAYOUTS = REGION_LAYOUTS
# regions as lists of cells (row-major cell index) of a g x g grid
REGIONS = {
    "sfrs": (2, ((0, 1, 2, 3), (0, 1), (2, 3), (0, 2), (1, 3), (0,), (1,), (2,), (3,))),
    "wakd": (3, (tuple(range(9)), (0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8))),
}


def region_masks(layout: str, h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """``[R, h*w]`` 0/1 masks of the layout's regions on an ``h x w`` feature map (row-major)."""
    if layout not in REGIONS:
        raise ValueError(f"regions {layout!r}: expected one of {', '.join(LAYOUTS)}")
    g, regions = REGIONS[layout]
    rows = torch.tensor_split(torch.arange(h), g)
    cols = torch.tensor_split(torch.arange(w), g)
    cells = torch.zeros(g * g, h, w, device=device)
    for i in range(g):
        for j in range(g):
            cells[i * g + j, rows[i][:, None], cols[j][None, :]] = 1.0
    cells = cells.flatten(1)
    return torch.stack([cells[list(r)].sum(0) for r in regions])


def region_vlads(pool: NetVLAD, features: torch.Tensor, layout: str) -> torch.Tensor:
    """``[N, R, K*D]`` region descriptors (intra + L2 normalised) of a ``[N, D, h, w]`` feature map."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        x = F.normalize(features.float(), p=2, dim=1)
        n, d = x.shape[:2]
        masks = region_masks(layout, x.shape[2], x.shape[3], x.device)  # [R, L]
        assign = F.softmax(pool.conv(x).view(n, pool.num_clusters, -1), dim=1)  # [N, K, L]
        am = assign[:, None] * masks[None, :, None, :]  # [N, R, K, L]
        flat = x.view(n, 1, d, -1).transpose(2, 3)  # [N, 1, L, D]
        vlad = am @ flat - am.sum(-1, keepdim=True) * pool.centroids  # [N, R, K, D]
        intra = F.normalize(vlad, p=2, dim=3).flatten(2)
        return F.normalize(intra, p=2, dim=2)


def anchor_region_similarities(anchor: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """``[B, P, R]``: the anchor's whole-image descriptor (region 0 of ``anchor``, ``[B, R, E]``) against
    every region of each of its ``P`` pairs (``[B, P, R, E]``): ``score[:, :, 0]`` of the authors'
    ``bmm(anchor regions, pair regions^T)``, the only part their losses read."""
    return torch.einsum("be,bpre->bpr", anchor[:, 0], pairs)
