"""``wakd index``: describe a folder of anyone's photos with a trained network into a searchable index.

The network (backbone, NetVLAD, input size) comes from the checkpoint; positions from gmberton-style
file names or a CSV (:mod:`wakd.index`). Rerunning on a grown folder describes only the new images
(the index remembers the checkpoint's SHA-256: another network starts over); a corrupt image is
reported and skipped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wakd.options import PRECISIONS, Options, option, parse_device
from wakd.utils import WakdError

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class IndexConfig(Options):
    """describe a folder of photos into a searchable index (HDF5)

    Every JPEG/PNG under --images (recursively) is described by the checkpoint's network; positions
    come from '@east@north@...' file names or --positions. Rerun on a grown folder: only new images
    are described.
    """

    checkpoint: str = option(help="model_best.pth.tar of 'wakd train' / 'wakd distill'", path="in")
    images: str = option(help="folder of photos (searched recursively for .jpg/.jpeg/.png)")
    out: str = option(help="index file to write (HDF5)", path="out")
    positions: tuple[str, ...] = option((), "CSV(s) image,east,north or image,lat,lon (image: path relative to "
                                            "--images, or file name); default: positions from '@east@north@' "
                                            "names", metavar="CSV", path="in")
    pca: str | None = option(None, "PCA-whitening HDF5 of 'wakd pca' for this network", path="in")
    batch_size: int = option(32, "images per batch", low=1)
    workers: int = option(2, "data-loader processes", low=0)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", parse=parse_device, metavar="DEVICE")
    precision: str = option("fp32", "autocast: fp32, bf16 or auto", choices=PRECISIONS)


def run(cfg: IndexConfig) -> dict:
    """Build or grow the index ``cfg.out``; return counts."""
    from wakd.device import resolve_device, resolve_precision
    from wakd.index import file_stamp, find_images, positions_for, write_index
    from wakd.inference import iter_descriptors, load_model
    from wakd.provenance import provenance_attrs
    from wakd.utils import atomic_path

    out = Path(cfg.out)
    folder = Path(cfg.images)
    images = find_images(folder)
    device = resolve_device(cfg.device)
    model = load_model(cfg.checkpoint, cfg.pca, device=device)
    cfg.precision = resolve_precision(device, cfg.precision, model=model, size=model.size)
    kind, coords = positions_for(images, folder, cfg.positions)
    base = Path(os.path.abspath(out)).parent  # not resolved: a linked photo keeps its name in the folder
    rel = [os.path.relpath(os.path.abspath(p), base) for p in images]
    stamps = np.array([file_stamp(p) for p in images], dtype=np.int64)

    known: dict[str, np.ndarray] = {}
    if out.exists():
        known = _reusable(out, model.info, cfg.precision, dict(zip(rel, map(tuple, stamps))))
    todo = [i for i, r in enumerate(rel) if r not in known]
    log.info("%d images in %s: %d already in %s, %d to describe", len(images), folder, len(images) - len(todo),
             out, len(todo))
    rows: dict[int, np.ndarray] = {i: known[r] for i, r in enumerate(rel) if r in known}
    for idx, y in iter_descriptors(model, [images[i] for i in todo], cfg.batch_size, cfg.workers, cfg.precision,
                                   skip_unreadable=True, desc="index"):
        for j, row in zip(idx, y):
            rows[todo[j]] = row
    keep = sorted(rows)
    skipped = [rel[i] for i in todo if i not in rows]
    if not keep:
        raise WakdError(f"--images {folder}: none of the {len(images)} images could be read")
    desc = np.stack([rows[i] for i in keep]).astype(np.float32)
    attrs = {"coords": kind, "dim": model.dim, "size": json.dumps(model.info["size"]), "precision": cfg.precision,
             "checkpoint": model.info["checkpoint"], "checkpoint_sha256": model.info["checkpoint_sha256"],
             "pca": model.info["pca"], "pca_sha256": model.info["pca_sha256"],
             "images": os.path.relpath(os.path.abspath(folder), base), "model": json.dumps(model.info),
             **provenance_attrs(cfg)}
    with atomic_path(out) as tmp:
        write_index(tmp, desc, [rel[i] for i in keep], coords[keep], stamps[keep], attrs)
    written = len(keep)
    described = len(todo) - len(skipped)
    stats = {"images": written, "described": described, "reused": written - described, "skipped": skipped,
             "with_position": int(np.isfinite(coords[keep]).all(axis=1).sum())}
    if skipped:
        log.warning("%d unreadable image(s) skipped: %s", len(skipped), ", ".join(skipped[:5]))
    log.info("index %s: %d images (%d described, %d reused), %d with a position", out, written,
             stats["described"], stats["reused"], stats["with_position"])
    return stats


def _reusable(out: Path, info: dict, precision: str, stamps: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Rows of an existing index that stay valid, by relative path: made by the same network
    (checkpoint and PCA) in the same precision, of a file of the same size and modification time.
    Empty (with a warning) when the network or precision differs."""
    from wakd.index import Index

    old = Index(out)
    same = (old.attrs.get("checkpoint_sha256") == info["checkpoint_sha256"]
            and old.attrs.get("pca_sha256", "") == info["pca_sha256"]
            and old.attrs.get("precision", precision) == precision)
    if not same:
        log.warning("%s was built with another checkpoint, PCA or precision; describing every image again", out)
        return {}
    return {r: d for r, d, s in zip(old.relative, old.descriptors, map(tuple, old.stamps)) if stamps.get(r) == s}
