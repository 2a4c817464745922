"""Building a full EmbedNet (backbone + NetVLAD + PCA) from local files."""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np

from wakd.models.backbones import create_model
from wakd.models.netvlad import EmbedNet, NetVLAD
from wakd.models.weights import load_weights
from wakd.utils import WakdError, check_array, require_file

log = logging.getLogger(__name__)


def read_clusters(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(centroids ``[K, D]``, descriptors ``[n, D]``) from a ``*_desc_cen.hdf5`` file.

    The layout is that of the reference pipeline's files (datasets ``centroids`` and
    ``descriptors``), so ``vgg16_pitts_64_desc_cen.hdf5`` from pytorch-NetVlad/OpenIBL works too.
    """
    require_file(path, "a *_desc_cen.hdf5 cluster file (wakd cluster)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("centroids", "descriptors") if k not in f]
            if missing:
                raise WakdError(f"{path}: HDF5 file lacks dataset(s) {', '.join(missing)} "
                                f"(found: {', '.join(f.keys()) or 'none'})")
            cen = check_array(np.asarray(f["centroids"], dtype=np.float32), f"{path}: /centroids", (None, None))
            desc = check_array(np.asarray(f["descriptors"], dtype=np.float32), f"{path}: /descriptors",
                               (None, cen.shape[1]))
    except OSError as exc:
        raise WakdError(f"{path}: not a readable HDF5 cluster file ({exc})") from None
    if len(desc) < 1:
        raise WakdError(f"{path}: /descriptors is empty; expected the sampled local features")
    return cen, desc


def build_embednet(arch: str, num_clusters: int = 64, clusters: str | os.PathLike | None = None,
                   weights: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                   pca: str | os.PathLike | None = None, **arch_kwargs) -> EmbedNet:
    """Build backbone + NetVLAD (+ PCA).

    Args:
        arch: registered backbone name.
        num_clusters: NetVLAD K.
        clusters: ``*_desc_cen.hdf5`` to initialise NetVLAD from (the paper's initialisation).
        weights: local pretrained weights for the backbone (torchvision or OpenIBL format).
        checkpoint: a full-model checkpoint (wakd or OpenIBL), loaded last.
        pca: a PCA-whitening HDF5 from ``wakd pca``.
        **arch_kwargs: options of the backbone factory (e.g. ``last_layer=4``).
    """
    backbone = create_model(arch, **arch_kwargs)
    if weights is not None:
        load_weights(backbone, weights)
    elif checkpoint is None:
        log.warning("%s: no weights file given, the backbone starts from random initialisation", arch)
    pool = NetVLAD(num_clusters, backbone.out_channels)
    if clusters is not None:
        centroids, descriptors = read_clusters(clusters)
        if centroids.shape != (num_clusters, backbone.out_channels):
            raise WakdError(f"{clusters}: centroids have shape {centroids.shape}; {arch} with K={num_clusters} "
                            f"needs ({num_clusters}, {backbone.out_channels})")
        alpha = pool.init_from_clusters(centroids, descriptors)
        log.info("NetVLAD initialised from %s (alpha %.1f)", clusters, alpha)
    pca_layer = None
    if pca is not None:
        from wakd.models.pca import load_pca_layer

        pca_layer = load_pca_layer(pca, expected_dim=pool.out_dim)
    model = EmbedNet(backbone, pool, pca_layer)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model

