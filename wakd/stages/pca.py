"""``wakd pca``: fit the PCA whitening of a trained network's global descriptors.

Up to ``num_images`` training images (database and queries, sampled with the seed) are described by
backbone + NetVLAD and the whitening is fitted and saved by :mod:`wakd.models.pca`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wakd.options import NetOptions, RunOptions, TrainSplit, option
from wakd.utils import WakdError

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PcaConfig(NetOptions, TrainSplit, RunOptions):
    """fit PCA whitening of the global descriptors

    Describe up to --num-images training images with backbone + NetVLAD and fit PCA whitening (dual Gram
    form when dim > n) keeping --dim components; writes HDF5 (mean, components, variances).
    """

    out: str = option(help="HDF5 file to write", path="out")
    checkpoint: str | None = option(None, "full-model checkpoint (wakd or OpenIBL)", path="in")
    num_images: int = option(10000, "training images described", low=2)
    dim: int = option(4096, "components kept", low=1)


def run(cfg: PcaConfig) -> dict:
    """Describe the sampled images, fit the whitening and write it to ``cfg.out``."""
    from wakd.data import load_dataset
    from wakd.device import resolve_device, resolve_precision
    from wakd.features import describe_images, sample_paths
    from wakd.models.build import build_embednet
    from wakd.models.pca import fit_pca, save_pca
    from wakd.provenance import provenance_attrs
    from wakd.utils import seed_everything

    seed_everything(cfg.seed)
    model = build_embednet(cfg.arch, cfg.num_clusters, clusters=cfg.clusters, weights=cfg.weights,
                           checkpoint=cfg.checkpoint, **cfg.arch_kwargs)
    ds = load_dataset(cfg.dataset, cfg.split, cfg.root)
    paths = sample_paths(ds.db_paths + ds.q_paths, cfg.num_images, cfg.seed)
    most = min(len(paths) - 1, model.out_dim)
    if cfg.dim > most:
        raise WakdError(f"--dim {cfg.dim}: {len(paths)} images of {model.out_dim}-d descriptors give at most {most} "
                        "components; use more --num-images or a smaller --dim")
    device = resolve_device(cfg.device)
    cfg.precision = resolve_precision(device, cfg.precision, model=model, size=cfg.size)
    x = describe_images(model, paths, device, batch_size=cfg.batch_size, workers=cfg.workers,
                        precision=cfg.precision, size=cfg.size)
    mean, comps, var = fit_pca(x, cfg.dim, device=device)
    save_pca(cfg.out, mean, comps, var, len(x), attrs=provenance_attrs(cfg))
    kept = float(var.sum() / max(x.var(0, ddof=1).sum(), 1e-12))
    log.info("wrote %s: %d -> %d dims from %d images (%.1f%% of the variance kept)", cfg.out, x.shape[1], cfg.dim,
             len(x), 100 * kept)
    return {"samples": len(x), "in_dim": int(x.shape[1]), "out_dim": cfg.dim, "variance_kept": kept}
