"""``wakd extract``: global descriptors of a dataset split, written incrementally to HDF5.

The file's layout is :mod:`wakd.descriptors`. Rows are written batch by batch as the model produces
them, so memory does not grow with the dataset; the file is written under a temporary name and
renamed when complete. ``--shard I/N`` describes one of N contiguous parts of the split (cut on the
batch grid, so every batch is the one an unsharded run makes) and ``wakd gather`` joins the parts
into the file one job would have written (:func:`wakd.descriptors.shard_rows`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import h5py
import numpy as np
import torch

from wakd.data import load_dataset
from wakd.data.base import PlaceDataset
from wakd.descriptors import STR, descriptor_chunks, parse_shard, shard_rows
from wakd.device import resolve_device, resolve_precision
from wakd.features import calibrate_bn, iter_images
from wakd.models.bn import DEFAULT_IMAGES, wants_precise_bn
from wakd.models.build import build_embednet
from wakd.options import DataOptions, NetOptions, RunOptions, option
from wakd.provenance import input_identity, provenance_attrs
from wakd.utils import WakdError, atomic_path, hdf5_file, seed_everything

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ExtractConfig(NetOptions, DataOptions, RunOptions):
    """global descriptors of a dataset split -> HDF5

    Run backbone + NetVLAD (+ PCA) over every database and query image of a split and write L2-normalised
    descriptors, paths, UTM, yaws and query conditions to HDF5, batch by batch (memory does not grow with
    the dataset).
    """

    out: str = option(help="HDF5 file to write", path="out")
    checkpoint: str | None = option(None, "full-model checkpoint (wakd or OpenIBL)", path="in")
    pca: str | None = option(None, "PCA-whitening HDF5 from 'wakd pca' (applied after NetVLAD, then L2)", path="in")
    dtype: str = option("float16", "stored precision", choices=("float16", "float32"))
    shard: tuple[int, int] | None = option(None, "describe only part I of N of the split's database and queries "
                                                 "(contiguous, cut on the batch grid); 'wakd gather' joins the N "
                                                 "files into the one an unsharded run writes", parse=parse_shard,
                                           metavar="I/N")
    decode: str = option("pil", "where images are decoded and resized: pil (in the data-loader workers, on the "
                                "CPU) or torchvision (JPEG files read by the workers, decoded and resized on "
                                "--device: nvjpeg on a GPU, for when the CPU decoders are the bottleneck; needs "
                                "--size; antialiased bilinear resize, close to but not bitwise PIL's)",
                         choices=("pil", "torchvision"))
    precise_bn: int = option(DEFAULT_IMAGES, "without --checkpoint (a network as initialised): re-estimate "
                                             "BatchNorm statistics over N training images first (those 'wakd "
                                             "cluster' calibrates on with the same seed; 0: off)", low=0, metavar="N")


def run(cfg: ExtractConfig) -> dict:
    """Build the network of ``cfg`` and describe the split into ``cfg.out``."""

    seed_everything(cfg.seed)
    spec = {"arch": cfg.arch, "num_clusters": cfg.num_clusters, "clusters": cfg.clusters, "weights": cfg.weights,
            "checkpoint": cfg.checkpoint, "pca": cfg.pca, **cfg.arch_kwargs}
    model = build_embednet(**spec)
    device = resolve_device(cfg.device)
    # a shard decides `auto` by the device alone: N jobs timing under each other's load could choose
    # differently, and the shards of one file must share one precision (wakd gather checks it)
    cfg.precision = resolve_precision(device, cfg.precision, model=None if cfg.shard else model, size=cfg.size)
    look = {"workers": cfg.workers, "precision": cfg.precision, "size": cfg.size}
    if not cfg.checkpoint:
        calibrate_initialised(model, cfg.dataset, cfg.root, device, cfg.precise_bn, cfg.seed,
                              pretrained=bool(cfg.weights), batch_size=max(cfg.batch_size, 16), **look)
    ds = load_dataset(cfg.dataset, cfg.split, cfg.root)
    inputs = input_identity(cfg, ("checkpoint", "pca", "clusters", "weights"))  # shards of one file: the same files
    return extract(model, ds, cfg.out, device, dtype=cfg.dtype, batch_size=cfg.batch_size, model_info=spec,
                   attrs={**provenance_attrs(cfg), "inputs": json.dumps(inputs)}, shard=cfg.shard, decode=cfg.decode,
                   **look)


def extract(model: torch.nn.Module, ds: PlaceDataset, out: str | os.PathLike, device: torch.device,
            dtype: str = "float16", batch_size: int = 16, workers: int = 2, precision: str = "auto",
            size: tuple[int, int] | None = None, model_info: dict | None = None, attrs: dict | None = None,
            shard: tuple[int, int] | None = None, decode: str = "pil") -> dict:
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
        attrs: more attributes of the file (provenance).
        decode: ``pil`` or ``torchvision`` (:func:`wakd.features.iter_images`).
        shard: ``(I, N)``: describe only part I (1-based) of N of the database and queries, each
            group's rows from ``start`` (a group attribute) on; ``wakd gather`` joins the parts.

    Returns:
        Counts and images per second.
    """

    if dtype not in ("float16", "float32"):
        raise WakdError(f"--dtype {dtype!r}: expected float16 or float32")
    precision = resolve_precision(device, precision, model=None if shard else model, size=size)  # as recorded
    groups, batches, rows = _plan(ds, size, batch_size, shard)
    stats = {}
    with atomic_path(out) as tmp, hdf5_file(tmp) as f:
        f.attrs.update({"dataset": ds.name, "split": ds.split, "pos_dist_thr": ds.pos_dist_thr,
                        "train_pos_dist_thr": ds.train_pos_dist_thr, "dtype": dtype, "precision": precision,
                        "model": json.dumps(model_info or {}), "base_dir": os.getcwd(), **(attrs or {})})
        if shard is not None:
            f.attrs["shard"] = f"{shard[0]}/{shard[1]}"
        empty = []
        total = sum(stop - start for start, stop in rows.values())
        for group, (paths, utm, yaw, conditions, shorter) in groups.items():
            start, stop = rows[group]
            g = _group(f, group, paths, utm, yaw, conditions, start, stop)
            if not paths:
                raise WakdError(f"{ds.source}: no {group} images to describe")
            if start == stop:  # a shard may hold no rows of one group; its width is known from the other
                empty.append(g)
                continue
            stats[group] = _describe_group(model, g, paths[start:stop], device, out, total, dtype,
                                           dict(batch_size=batches[group], workers=workers, precision=precision,
                                                size=size, shorter_side=shorter, desc=f"extract {group}",
                                                decode=decode))
            log.info("%s: %d images in %.1f s (%.1f img/s)", group, stop - start, stats[group]["seconds"],
                     stats[group]["images_per_second"])
        for g in empty:
            g.create_dataset("descriptors", shape=(0, int(f.attrs["dim"])), dtype=dtype)
    return stats


def _plan(ds: PlaceDataset, size: tuple[int, int] | None, batch_size: int, shard: tuple[int, int] | None):
    """Per group (db, queries): its (paths, utm, yaw, conditions, shorter side), batch size and rows to
    describe (a shard's part, or all). Queries resized per image (no fixed size) go one at a time."""
    groups = {"db": (ds.db_paths, ds.db_utm, ds.db_yaw, None, None),
              "queries": (ds.q_paths, ds.q_utm, ds.q_yaw, ds.q_conditions, None if size else ds.query_resize_shorter)}
    batches = {g: batch_size if groups[g][4] is None else 1 for g in groups}
    rows = {g: (0, len(groups[g][0])) for g in groups}
    if shard is not None:
        rows = dict(zip(groups, shard_rows(len(ds.db_paths), len(ds.q_paths), batches["db"], batches["queries"],
                                           *shard)))
    return groups, batches, rows


def _group(f: h5py.File, group: str, paths, utm, yaw, conditions, start: int, stop: int) -> h5py.Group:
    """A group's rows ``start:stop`` of paths, positions, yaw and conditions (what it has)."""
    g = f.create_group(group)
    g.attrs.update({"start": start, "total": len(paths)})
    g.create_dataset("paths", data=np.asarray(paths[start:stop], dtype=object), dtype=STR)
    g.create_dataset("utm", data=utm[start:stop])
    if yaw is not None:
        g.create_dataset("yaw", data=yaw[start:stop])
    if conditions is not None:
        g.create_dataset("conditions", data=np.asarray(conditions[start:stop], dtype=object), dtype=STR)
    return g


def _describe_group(model: torch.nn.Module, g: h5py.Group, paths: list[str], device: torch.device,
                    out: str | os.PathLike, total: int, dtype: str, reading: dict) -> dict:
    """Describe ``paths`` into ``g/descriptors`` (created at the first batch, once its width is known and
    the disk is checked for ``total`` rows); returns the group's counts and speed."""

    t0 = time.perf_counter()
    dset = None
    for idx, y in iter_images(lambda d: d, model, paths, device, **reading):
        if dset is None:
            _check_space(out, total * y.shape[1] * np.dtype(dtype).itemsize)
            dset = g.create_dataset("descriptors", shape=(len(paths), y.shape[1]), dtype=dtype,
                                    chunks=descriptor_chunks(len(paths), y.shape[1]))
            g.file.attrs["dim"] = y.shape[1]
        dset[idx[0]:idx[-1] + 1] = y.astype(dtype)
    secs = time.perf_counter() - t0
    return {"images": len(paths), "seconds": round(secs, 2),
            "images_per_second": round(len(paths) / max(secs, 1e-9), 1)}


def _check_space(out: str | os.PathLike, needed: int) -> None:
    """Refuse before writing when the output's disk cannot hold the descriptors (HDF5 does not fail
    cleanly on a full disk)."""
    import shutil

    folder = os.path.dirname(os.path.abspath(out))
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05 + 2**20:
        raise WakdError(f"--out {out}: disk full: the descriptors need {needed / 2**20:.1f} MiB and {folder} has "
                        f"{free / 2**20:.1f} MiB free")


def calibrate_initialised(model: torch.nn.Module, dataset: str, root: str, device: torch.device, num_images: int,
                          seed: int, pretrained: bool, **kw) -> int:
    """Precise BN for a network described *as initialised* (no checkpoint): the statistics of
    ``num_images`` training images, the very images ``wakd cluster`` calibrates on with the same seed
    (:func:`wakd.features.precise_bn_paths`), so NetVLAD's centres and the described features agree
    (:mod:`wakd.models.bn`). Trained checkpoints already hold calibrated statistics. Returns the number
    of BN layers set.
    """
    if not wants_precise_bn(model, num_images, pretrained, what="network as initialised"):
        return 0
    return calibrate_bn(model, load_dataset(dataset, "train", root), num_images, seed, device, **kw)
