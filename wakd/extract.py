"""``wakd extract``: global descriptors of a dataset split, written incrementally to HDF5.

Layout of the descriptor file (one per model x dataset x split)::

    /db/descriptors        [N, D]  float16 or float32, L2-normalised, chunked by rows
    /db/paths              [N]     UTF-8 image paths
    /db/utm                [N, 2]  float64 easting, northing
    /db/yaw                [N]     degrees (only where the dataset records yaws)
    /queries/descriptors   [Nq, D]
    /queries/paths, /queries/utm, /queries/yaw
    /queries/conditions    [Nq]    day / sunset / night (only where known)
    attrs: dataset, split, pos_dist_thr, train_pos_dist_thr, dim, dtype, precision, model (JSON)

Rows are written batch by batch as the model produces them, so memory does not grow with the
dataset; the file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING

import h5py
import numpy as np

from wakd.data.base import PlaceDataset
from wakd.utils import WakdError, atomic_path

if TYPE_CHECKING:  # torch is imported only when extracting: evaluation reads these files without it
    import torch

log = logging.getLogger(__name__)

STR = h5py.string_dtype("utf-8")


def extract(model: torch.nn.Module, ds: PlaceDataset, out: str | os.PathLike, device: torch.device,
            dtype: str = "float16", batch_size: int = 16, workers: int = 2, precision: str = "auto",
            size: tuple[int, int] | None = None, model_info: dict | None = None) -> dict:
    """Describe every database and query image of ``ds`` and write the descriptor file.

    Args:
        model: a network whose forward returns L2-normalised global descriptors.
        ds: the dataset split.
        out: HDF5 file to write.
        device: where the model runs.
        dtype: ``float16`` (half the disk and memory; recall unchanged to 3 decimals in our checks) or ``float32``.
        batch_size: images per batch (queries resized per image, e.g. Tokyo 24/7, go one at a time).
        workers: data-loader processes.
        precision: ``auto``, ``bf16`` or ``fp32``.
        size: resize all images to (H, W); default: the dataset's own rule.
        model_info: what the model is (recorded in the file's attributes).

    Returns:
        Counts and images per second.
    """
    from wakd.features import iter_images

    if dtype not in ("float16", "float32"):
        raise WakdError(f"--dtype {dtype!r}: expected float16 or float32")
    stats = {}
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"dataset": ds.name, "split": ds.split, "pos_dist_thr": ds.pos_dist_thr,
                        "train_pos_dist_thr": ds.train_pos_dist_thr, "dtype": dtype, "precision": precision,
                        "model": json.dumps(model_info or {})})
        for group, paths, utm, yaw, shorter in (
            ("db", ds.db_paths, ds.db_utm, ds.db_yaw, None),
            ("queries", ds.q_paths, ds.q_utm, ds.q_yaw, None if size else ds.query_resize_shorter),
        ):
            g = f.create_group(group)
            g.create_dataset("paths", data=np.asarray(paths, dtype=object), dtype=STR)
            g.create_dataset("utm", data=utm)
            if yaw is not None:
                g.create_dataset("yaw", data=yaw)
            t0 = time.perf_counter()
            dset = None
            for idx, y in iter_images(lambda d: d, model, paths, device, batch_size=1 if shorter else batch_size,
                                      workers=workers, precision=precision, size=size, shorter_side=shorter,
                                      desc=f"extract {group}"):
                if dset is None:
                    dset = g.create_dataset("descriptors", shape=(len(paths), y.shape[1]), dtype=dtype,
                                            chunks=(min(len(paths), max(1, 2**22 // (y.shape[1] * 4))), y.shape[1]))
                    f.attrs["dim"] = y.shape[1]
                dset[idx[0]:idx[-1] + 1] = y.astype(dtype)
            if dset is None:
                raise WakdError(f"{ds.source}: no {group} images to describe")
            secs = time.perf_counter() - t0
            stats[group] = {"images": len(paths), "seconds": round(secs, 2),
                            "images_per_second": round(len(paths) / max(secs, 1e-9), 1)}
            log.info("%s: %d images in %.1f s (%.1f img/s)", group, len(paths), secs, len(paths) / max(secs, 1e-9))
        if ds.q_conditions is not None:
            f["queries"].create_dataset("conditions", data=np.asarray(ds.q_conditions, dtype=object), dtype=STR)
    return stats


def calibrate_initialised(model: torch.nn.Module, dataset: str, root: str, device: torch.device, num_images: int,
                          seed: int, pretrained: bool, **kw) -> int:
    """Precise BN for a network described *as initialised* (no checkpoint): the statistics of
    ``num_images`` of the dataset's training database images, as ``wakd cluster`` re-estimates them
    before clustering, so NetVLAD's centres and the described features agree (:mod:`wakd.models.bn`).
    Trained checkpoints already hold calibrated statistics. Returns the number of BN layers set.
    """
    from wakd.data import load_dataset
    from wakd.features import sample_paths
    from wakd.models.bn import recalibrate_bn, wants_precise_bn

    if not wants_precise_bn(model, num_images, pretrained, what="network as initialised"):
        return 0
    train = load_dataset(dataset, "train", root)
    return recalibrate_bn(model, sample_paths(train.db_paths, num_images, seed), device, **kw)


def read_ground_truth(path: str | os.PathLike) -> PlaceDataset:
    """The dataset split recorded in a descriptor file (paths, positions, yaws, conditions).

    Raises:
        WakdError: the file is missing or lacks a required dataset.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WakdError(f"{path}: not a readable descriptor HDF5 file ({exc})") from None
    with f:
        for key in ("db/descriptors", "db/utm", "db/paths", "queries/descriptors", "queries/utm", "queries/paths"):
            if key not in f:
                raise WakdError(f"{path}: missing dataset /{key} (expected a file written by 'wakd extract')")

        def opt(key, fn):
            return fn(f[key][:]) if key in f else None

        def strings(a):
            return [s.decode() if isinstance(s, bytes) else str(s) for s in a]

        return PlaceDataset(
            name=str(f.attrs.get("dataset", "")), split=str(f.attrs.get("split", "")),
            db_paths=strings(f["db/paths"][:]), db_utm=f["db/utm"][:],
            q_paths=strings(f["queries/paths"][:]), q_utm=f["queries/utm"][:],
            pos_dist_thr=float(f.attrs.get("pos_dist_thr", 25.0)),
            train_pos_dist_thr=float(f.attrs.get("train_pos_dist_thr", 10.0)),
            q_conditions=opt("queries/conditions", strings),
            db_yaw=opt("db/yaw", np.asarray), q_yaw=opt("queries/yaw", np.asarray), source=str(path),
        )
