"""``wakd cluster``: k-means centres of local conv features, to initialise NetVLAD.

Local descriptors are sampled from the backbone's *feature map* (not a pooled output): for each
of ``num_images`` random training database images, ``per_image`` random locations (all of them
when the map is smaller), each L2-normalised as NetVLAD sees it. faiss k-means (seeded) gives
``K`` centres. The output HDF5 has the reference layout: datasets ``descriptors`` ``[n, D]`` and
``centroids`` ``[K, D]`` (float32), plus attributes recording how it was made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wakd.data import load_dataset
from wakd.device import prepare, resolve_device, resolve_precision
from wakd.features import calibrate_bn, map_images, sample_paths
from wakd.models.backbones import create_model
from wakd.models.bn import DEFAULT_IMAGES, wants_precise_bn
from wakd.models.weights import load_weights
from wakd.options import BackboneOptions, RunOptions, TrainSplit, option
from wakd.provenance import provenance_attrs
from wakd.utils import WakdError, atomic_path, hdf5_file, seed_everything

log = logging.getLogger(__name__)


def sample_local_features(backbone: torch.nn.Module, paths: list[str], per_image: int, device: torch.device,
                          seed: int, **kw) -> np.ndarray:
    """``[n, D]`` L2-normalised local features, ``per_image`` random locations per image."""
    gen = torch.Generator().manual_seed(seed)

    def pick(fmap: torch.Tensor) -> torch.Tensor:
        flat = F.normalize(fmap.float(), dim=1).flatten(2).transpose(1, 2)  # [B, HW, D]
        n_loc = flat.shape[1]
        k = min(per_image, n_loc)
        idx = torch.stack([torch.randperm(n_loc, generator=gen)[:k] for _ in range(len(flat))]).to(flat.device)
        return torch.gather(flat, 1, idx[..., None].expand(-1, -1, flat.shape[2])).reshape(-1, flat.shape[2])

    return np.concatenate(map_images(pick, backbone, paths, device, desc="cluster", **kw))


def kmeans(descriptors: np.ndarray, k: int, seed: int, niter: int = 100) -> np.ndarray:
    """faiss k-means over all the given descriptors; ``[k, D]`` centres."""
    import faiss

    if len(descriptors) < k:
        raise WakdError(f"k-means: {len(descriptors)} descriptors for {k} clusters; sample more images")
    km = faiss.Kmeans(descriptors.shape[1], k, niter=niter, seed=seed, verbose=False,
                      max_points_per_centroid=int(np.ceil(len(descriptors) / k)) + 1,
                      gpu=torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources"))
    km.train(np.ascontiguousarray(descriptors, dtype=np.float32))
    return km.centroids.copy()


@dataclass(kw_only=True)
class ClusterConfig(BackboneOptions, TrainSplit, RunOptions):
    """k-means centres of local conv features (NetVLAD initialisation)

    Sample local descriptors from the backbone's conv feature map on random training images, run faiss
    k-means and write an HDF5 with datasets 'descriptors' [n x D] and 'centroids' [K x D] (the reference
    *_desc_cen.hdf5 layout).
    """

    out: str = option(help="HDF5 file to write", path="out")
    num_clusters: int = option(64, "k-means centres K", low=1)
    num_images: int = option(500, "training images sampled", low=1)
    per_image: int = option(100, "locations sampled per image", low=1)
    precise_bn: int = option(DEFAULT_IMAGES, "a random-init backbone with BatchNorm: re-estimate its statistics "
                                             "over N training images first (those 'wakd extract' calibrates on "
                                             "with the same seed; 0: off)", low=0, metavar="N")


def run(cfg: ClusterConfig) -> dict:
    """Sample local features of a backbone on a training split and write ``*_desc_cen.hdf5``.

    A randomly initialised backbone with BatchNorm first has its BN statistics re-estimated on
    ``precise_bn`` training images (:func:`wakd.features.precise_bn_paths`, :mod:`wakd.models.bn`): with
    the default statistics its eval-mode features are not what training will see (a MobileNetV3's were
    ~1e-9 in magnitude).
    """
    seed_everything(cfg.seed)
    ds = load_dataset(cfg.dataset, cfg.split, cfg.root)
    paths = sample_paths(ds.db_paths, cfg.num_images, cfg.seed)
    backbone = create_model(cfg.arch, **cfg.arch_kwargs)
    if cfg.weights:
        load_weights(backbone, cfg.weights)
    else:
        log.warning("%s: no weights file given, clustering features of a randomly initialised backbone", cfg.arch)
    dev = resolve_device(cfg.device)
    cfg.precision = resolve_precision(dev, cfg.precision, model=backbone, size=cfg.size)
    look = {"workers": cfg.workers, "precision": cfg.precision, "size": cfg.size}
    if wants_precise_bn(backbone, cfg.precise_bn, pretrained=bool(cfg.weights), what=f"{cfg.arch} backbone"):
        calibrate_bn(prepare(backbone, dev), ds, cfg.precise_bn, cfg.seed, dev, batch_size=max(cfg.batch_size, 16),
                     **look)
    desc = sample_local_features(backbone, paths, cfg.per_image, dev, cfg.seed, batch_size=cfg.batch_size, **look)
    if len(desc) < cfg.num_clusters:
        raise WakdError(f"--num-clusters {cfg.num_clusters}: only {len(desc)} local features to cluster ({len(paths)} "
                        f"images x at most --per-image {cfg.per_image}, fewer where a feature map at --size is "
                        "smaller); expected at least K: raise --num-images or --per-image, or lower --num-clusters")
    centroids = kmeans(desc, cfg.num_clusters, cfg.seed)
    with atomic_path(cfg.out) as tmp:
        with hdf5_file(tmp) as f:
            f.create_dataset("descriptors", data=desc.astype(np.float32))
            f.create_dataset("centroids", data=centroids.astype(np.float32))
            f.attrs.update({"arch": cfg.arch, "dataset": cfg.dataset, "split": cfg.split, "num_images": len(paths),
                            "per_image": cfg.per_image, "seed": cfg.seed, "weights": str(cfg.weights or ""),
                            "precise_bn": cfg.precise_bn, "precision": cfg.precision,
                            **provenance_attrs(cfg)})
    log.info("wrote %s: %d descriptors of dim %d, %d centroids", cfg.out, *desc.shape, cfg.num_clusters)
    return {"descriptors": int(len(desc)), "dim": int(desc.shape[1]), "images": len(paths)}
