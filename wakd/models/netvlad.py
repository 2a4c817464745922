"""NetVLAD (Arandjelovic et al., CVPR 2016) and the full embedding network.

For local features ``x_i`` (L2-normalised per location) and K centroids ``c_k``::

    a_k(x_i) = softmax_k(w_k . x_i)                      soft assignment (1x1 conv, no bias)
    V_k      = sum_i a_k(x_i) (x_i - c_k)                residual aggregation
    V        = L2( [ L2(V_1), ..., L2(V_K) ] )           intra-normalisation, then global L2

Initialised from k-means centroids as in the paper: ``w_k = alpha * c_k / |c_k|`` with
``alpha = -log(0.01) / mean(top1 - top2)``, the mean gap between the two largest dot products of
training descriptors with the normalised centroids. The layer runs in float32 even under autocast.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wakd.models.backbones import Backbone


class NetVLAD(nn.Module):
    """NetVLAD pooling of a ``[N, dim, H, W]`` feature map into ``[N, K * dim]``."""

    def __init__(self, num_clusters: int = 64, dim: int = 512) -> None:
        super().__init__()
        self.num_clusters, self.dim = num_clusters, dim
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=False)
        self.centroids = nn.Parameter(torch.rand(num_clusters, dim))
        # informative only (not used by forward); not persistent, so foreign (OpenIBL) state dicts match exactly
        self.register_buffer("alpha", torch.tensor(0.0), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.num_clusters * self.dim

    @torch.no_grad()
    def init_from_clusters(self, centroids: np.ndarray, descriptors: np.ndarray) -> float:
        """Set centroids and assignment weights from k-means (the paper's initialisation).

        Args:
            centroids: ``[K, dim]`` k-means centres.
            descriptors: ``[n, dim]`` training descriptors the centres were fitted on.

        Returns:
            The chosen ``alpha``.
        """
        centroids = np.asarray(centroids, dtype=np.float64)
        descriptors = np.asarray(descriptors, dtype=np.float64)
        if centroids.shape != (self.num_clusters, self.dim):
            raise ValueError(f"centroids have shape {centroids.shape}; expected ({self.num_clusters}, {self.dim})")
        unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        dots = np.sort(descriptors @ unit.T, axis=1)
        alpha = -math.log(0.01) / float(np.mean(dots[:, -1] - dots[:, -2]))
        self.centroids.copy_(torch.from_numpy(centroids).float())
        self.conv.weight.copy_(torch.from_numpy(alpha * unit).float()[:, :, None, None])
        self.alpha.fill_(alpha)
        return alpha

    def forward(self, x: torch.Tensor, return_intra: bool = False):
        """Pool a feature map.

        Returns:
            The ``[N, K*dim]`` descriptor; with ``return_intra`` also the intra-normalised
            ``[N, K*dim]`` vector before the final L2 (used by distillation).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.normalize(x.float(), p=2, dim=1)
            n = x.shape[0]
            assign = F.softmax(self.conv(x).view(n, self.num_clusters, -1), dim=1)  # [N, K, HW]
            flat = x.view(n, self.dim, -1)  # [N, D, HW]
            vlad = torch.bmm(assign, flat.transpose(1, 2)) - assign.sum(-1, keepdim=True) * self.centroids[None]
            intra = F.normalize(vlad, p=2, dim=2).reshape(n, -1)
            out = F.normalize(intra, p=2, dim=1)
        return (out, intra) if return_intra else out


class EmbedNet(nn.Module):
    """Backbone + NetVLAD (+ optional PCA whitening, then L2).

    ``forward(x)`` returns the global descriptor; ``forward(x, return_features=True)`` returns a
    dict with ``desc``, ``vlad_intra`` (before the final L2 and PCA) and ``features`` (the conv
    feature map), as distillation needs.
    """

    def __init__(self, backbone: Backbone, pool: NetVLAD, pca: nn.Linear | None = None) -> None:
        super().__init__()
        if backbone.out_channels != pool.dim:
            raise ValueError(f"backbone {backbone.name} gives {backbone.out_channels} channels, NetVLAD expects "
                             f"{pool.dim}")
        self.backbone, self.pool, self.pca = backbone, pool, pca

    @property
    def out_dim(self) -> int:
        return self.pca.out_features if self.pca is not None else self.pool.out_dim

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feats = self.backbone(x)
        desc, intra = self.pool(feats, return_intra=True)
        if self.pca is not None:
            with torch.autocast(device_type=x.device.type, enabled=False):
                desc = F.normalize(self.pca(desc), p=2, dim=1)
        if return_features:
            return {"desc": desc, "vlad_intra": intra, "features": feats}
        return desc
