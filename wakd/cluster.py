"""``wakd cluster``: k-means centres of local conv features, to initialise NetVLAD.

Local descriptors are sampled from the backbone's *feature map* (not a pooled output): for each
of ``num_images`` random training database images, ``per_image`` random locations (all of them
when the map is smaller), each L2-normalised as NetVLAD sees it. faiss k-means (seeded) gives
``K`` centres. The output HDF5 has the reference layout: datasets ``descriptors`` ``[n, D]`` and
``centroids`` ``[K, D]`` (float32), plus attributes recording how it was made.
"""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from wakd.data import load_dataset
from wakd.device import prepare, resolve_device, resolve_precision
from wakd.features import map_images, sample_paths
from wakd.models.backbones import create_model
from wakd.models.bn import DEFAULT_IMAGES, recalibrate_bn, wants_precise_bn
from wakd.models.weights import load_weights
from wakd.utils import WakdError, atomic_path, seed_everything

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


def run_cluster(arch: str, dataset: str, root: str, out: str | os.PathLike, split: str = "train",
                num_clusters: int = 64, num_images: int = 500, per_image: int = 100,
                weights: str | None = None, seed: int = 0, device: str = "auto", batch_size: int = 16,
                workers: int = 2, precision: str = "auto", size: tuple[int, int] | None = None,
                arch_kwargs: dict | None = None, precise_bn: int = DEFAULT_IMAGES) -> dict:
    """Sample local features of a backbone on a training split and write ``*_desc_cen.hdf5``.

    A randomly initialised backbone with BatchNorm first has its BN statistics re-estimated on
    ``precise_bn`` of the sampled images (:mod:`wakd.models.bn`): with the default statistics its
    eval-mode features are not what training will see (a MobileNetV3's were ~1e-9 in magnitude).
    """
    seed_everything(seed)
    ds = load_dataset(dataset, split, root)
    paths = sample_paths(ds.db_paths, num_images, seed)
    backbone = create_model(arch, **(arch_kwargs or {}))
    if weights:
        load_weights(backbone, weights)
    else:
        log.warning("%s: no weights file given, clustering features of a randomly initialised backbone", arch)
    dev = resolve_device(device)
    if wants_precise_bn(backbone, precise_bn, pretrained=bool(weights), what=f"{arch} backbone"):
        recalibrate_bn(prepare(backbone, dev), paths[:precise_bn], dev, batch_size=max(batch_size, 16),
                       workers=workers, precision=precision, size=size)
    desc = sample_local_features(backbone, paths, per_image, dev, seed, batch_size=batch_size, workers=workers,
                                 precision=precision, size=size)
    centroids = kmeans(desc, num_clusters, seed)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("descriptors", data=desc.astype(np.float32))
            f.create_dataset("centroids", data=centroids.astype(np.float32))
            f.attrs.update({"arch": arch, "dataset": dataset, "split": split, "num_images": len(paths),
                            "per_image": per_image, "seed": seed, "weights": str(weights or ""),
                            "precise_bn": precise_bn, "precision": resolve_precision(dev, precision)})
    log.info("wrote %s: %d descriptors of dim %d, %d centroids", out, *desc.shape, num_clusters)
    return {"descriptors": int(len(desc)), "dim": int(desc.shape[1]), "images": len(paths)}
