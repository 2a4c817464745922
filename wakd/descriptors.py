"""The descriptor file written by ``wakd extract`` and read by ``wakd evaluate`` and the figures.

Layout (one file per model x dataset x split)::

    /db/descriptors        [N, D]  float16 or float32, L2-normalised, chunked by rows
    /db/paths              [N]     UTF-8 image paths
    /db/utm                [N, 2]  float64 easting, northing
    /db/yaw                [N]     degrees (only where the dataset records yaws)
    /queries/descriptors   [Nq, D]
    /queries/paths, /queries/utm, /queries/yaw
    /queries/conditions    [Nq]    day / sunset / night (only where known)
    attrs: dataset, split, pos_dist_thr, train_pos_dist_thr, dim, dtype, precision, model (JSON),
           provenance (JSON), base_dir (the folder relative image paths start from)
    group attrs: start (the group's first row in the split), total (the split's rows)

A *shard* (``wakd extract --shard I/N``) has the same layout over its rows only, ``start`` saying
where they go, and the attribute ``shard`` = ``"I/N"``; :func:`gather` joins the N shards into the
file an unsharded run writes (same rows, paths, positions and descriptors, bit for bit).
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from wakd.data.base import PlaceDataset
from wakd.utils import WakdError, require_file

STR = h5py.string_dtype("utf-8")


def read_ground_truth(path: str | os.PathLike) -> PlaceDataset:
    """The dataset split recorded in a descriptor file (paths, positions, yaws, conditions).

    Raises:
        WakdError: the file is missing or lacks a required dataset.
    """
    require_file(path, "a descriptor HDF5 file (wakd extract)")
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

        for group in ("db", "queries"):
            rows, paths = f[f"{group}/descriptors"].shape, len(f[f"{group}/paths"])
            if len(rows) != 2 or rows[0] != paths:
                raise WakdError(f"{path}: /{group}/descriptors has shape {'x'.join(map(str, rows))} for {paths} "
                                f"paths; expected {paths} rows")
        if f["db/descriptors"].shape[1] != f["queries/descriptors"].shape[1]:
            raise WakdError(f"{path}: database descriptors are {f['db/descriptors'].shape[1]}-d, queries "
                            f"{f['queries/descriptors'].shape[1]}-d; expected one dimension")
        if not len(f["db/paths"]) or not len(f["queries/paths"]):
            raise WakdError(f"{path}: {len(f['db/paths'])} database and {len(f['queries/paths'])} query rows; "
                            "expected both non-empty")
        base = str(f.attrs.get("base_dir", ""))
        try:
            return PlaceDataset(
                name=str(f.attrs.get("dataset", "")), split=str(f.attrs.get("split", "")),
                db_paths=resolve(strings(f["db/paths"][:]), base), db_utm=f["db/utm"][:],
                q_paths=resolve(strings(f["queries/paths"][:]), base), q_utm=f["queries/utm"][:],
                pos_dist_thr=float(f.attrs.get("pos_dist_thr", 25.0)),
                train_pos_dist_thr=float(f.attrs.get("train_pos_dist_thr", 10.0)),
                q_conditions=opt("queries/conditions", strings),
                db_yaw=opt("db/yaw", np.asarray), q_yaw=opt("queries/yaw", np.asarray), source=str(path),
            )
        except ValueError as exc:  # utm of the wrong shape
            raise WakdError(f"{path}: {exc}") from None


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: part I (1-based) of N."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise WakdError(f"--shard {text!r}: expected I/N, e.g. 2/4 (part 2 of 4)") from None
    if not 1 <= index <= count:
        raise WakdError(f"--shard {text!r}: expected 1 <= I <= N")
    return index, count


def shard_rows(num_db: int, num_q: int, db_batch: int, q_batch: int, index: int,
               count: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The database and query rows ``[start, stop)`` of shard ``index`` of ``count``.

    The split's batches (database batches, then query batches, as an unsharded run makes them) are
    cut into ``count`` contiguous runs of near-equal length, so a shard's batches are exactly those
    of the unsharded run: the descriptors cannot differ by batch composition.

    Raises:
        WakdError: more shards than batches.
    """
    nb_db, nb_q = -(-num_db // db_batch), -(-num_q // q_batch)
    total = nb_db + nb_q
    if count > total:
        raise WakdError(f"--shard {index}/{count}: the split has only {total} batches ({num_db} database and "
                        f"{num_q} query images); expected at most {total} shards")
    first, last = total * (index - 1) // count, total * index // count  # batches [first, last)

    def rows(lo: int, hi: int, batch: int, n: int) -> tuple[int, int]:
        lo, hi = max(lo, 0), max(hi, 0)
        return min(lo * batch, n), min(hi * batch, n)

    return rows(first, min(last, nb_db), db_batch, num_db), rows(first - nb_db, last - nb_db, q_batch, num_q)


def descriptor_chunks(rows: int, dim: int) -> tuple[int, int]:
    """HDF5 chunk shape of a descriptor matrix: whole rows, about 4 MiB (fp32) per chunk."""
    return max(1, min(rows, 2**22 // (dim * 4))), dim


#: the datasets of a group copied row for row by :func:`gather` (descriptors are copied in blocks)
ROW_DATASETS = ("paths", "utm", "yaw", "conditions")
#: file attributes that may differ between the shards of one extraction
SHARD_OWN = ("shard", "provenance", "base_dir")
#: recorded options of ``wakd extract`` that may differ between the shards of one extraction
SHARD_OWN_OPTIONS = ("shard", "out", "threads", "workers", "device")


def gather(shards: list[str | os.PathLike], out_file: h5py.File, block: int = 65536) -> dict:
    """Join the shards of one extraction into ``out_file`` (open for writing).

    Checks that the files are shards 1..N of one N, of the same dataset, split, model, precision and
    stored dtype, and that each group's rows are covered once and in order. Descriptors are copied
    ``block`` rows at a time, so memory stays small however large the split; the shards' provenance
    records go to ``extract_provenance`` (a JSON list in shard order). Returns the counts.

    Raises:
        WakdError: a missing file, a file that is not a shard, or shards that do not fit together.
    """
    files = []
    try:
        for path in shards:
            require_file(path, "a descriptor shard (wakd extract --shard I/N)")
            try:
                files.append(h5py.File(path, "r"))
            except OSError as exc:
                raise WakdError(f"{path}: not a readable descriptor HDF5 file ({exc})") from None
        order = _check_shards(shards, files)
        first = files[order[0]]
        out_file.attrs.update({k: v for k, v in first.attrs.items() if k != "shard"})
        # every shard's extraction record, in shard order (the caller writes its own `provenance` over)
        out_file.attrs["extract_provenance"] = json.dumps(
            [json.loads(str(files[i].attrs.get("provenance", "{}"))) for i in order])
        counts = {}
        for group in ("db", "queries"):
            total, dim = int(first[group].attrs["total"]), int(first.attrs["dim"])
            g = out_file.create_group(group)
            g.attrs.update({"start": 0, "total": total})
            for name in ROW_DATASETS:
                if name in first[group]:
                    parts = [files[i][f"{group}/{name}"][:] for i in order]
                    kw = {"dtype": STR} if first[f"{group}/{name}"].dtype.kind == "O" else {}
                    g.create_dataset(name, data=np.concatenate(parts), **kw)
            dset = g.create_dataset("descriptors", shape=(total, dim), dtype=first[f"{group}/descriptors"].dtype,
                                    chunks=descriptor_chunks(total, dim))
            for i in order:
                src, start = files[i][f"{group}/descriptors"], int(files[i][group].attrs["start"])
                for lo in range(0, len(src), block):
                    part = src[lo:lo + block]
                    dset[start + lo:start + lo + len(part)] = part
            counts[group] = total
        return counts
    finally:
        for f in files:
            f.close()


def _check_shards(paths: list, files: list[h5py.File]) -> list[int]:
    """The shards' order 1..N, or a WakdError naming the file that does not fit."""
    index = {}
    for path, f in zip(paths, files):
        shard = str(f.attrs.get("shard", ""))
        if not shard:
            raise WakdError(f"{path}: not a shard (no 'shard' attribute); expected files of 'wakd extract --shard'")
        try:
            i, n = parse_shard(shard)
        except WakdError:
            raise WakdError(f"{path}: shard attribute {shard!r}; expected I/N") from None
        if i in index:
            raise WakdError(f"{path}: shard {shard} given twice (also {paths[index[i]]})")
        index[i] = len(index)
        if n != len(files):
            raise WakdError(f"{path}: shard {shard} of {n}, but {len(files)} files given; expected all {n} shards")
    order = [index[i] for i in sorted(index)]
    first = files[order[0]]
    for path, f in zip(paths, files):
        for key in set(first.attrs) | set(f.attrs):
            if key not in SHARD_OWN and str(first.attrs.get(key)) != str(f.attrs.get(key)):
                raise WakdError(f"{path}: attribute {key!r} is {f.attrs.get(key)!r}, but {paths[order[0]]} has "
                                f"{first.attrs.get(key)!r}; expected shards of one extraction")
    _check_shard_options(paths, files, order)
    if "dim" not in first.attrs:
        raise WakdError(f"{paths[order[0]]}: no 'dim' attribute; expected a descriptor shard (wakd extract --shard)")
    for group in ("db", "queries"):
        expected = 0
        names = None
        for i in order:
            g = files[i].get(group)
            if g is None or "descriptors" not in g or "paths" not in g or not {"start", "total"} <= set(g.attrs):
                raise WakdError(f"{paths[i]}: missing /{group}/descriptors, /{group}/paths or their 'start'/'total'; "
                                "expected a descriptor shard (wakd extract --shard)")
            here = sorted(n for n in ROW_DATASETS if n in g)
            if names is not None and here != names:
                raise WakdError(f"{paths[i]}: /{group} holds {', '.join(here)}, {paths[order[0]]} holds "
                                f"{', '.join(names)}; expected shards of one extraction")
            names = here
            start, rows = int(g.attrs["start"]), len(g["descriptors"])
            if start != expected or any(len(g[n]) != rows for n in here):
                raise WakdError(f"{paths[i]}: /{group} holds rows {start}..{start + rows} "
                                f"({', '.join(f'{len(g[n])} {n}' for n in here)}); expected rows from {expected} on, "
                                "one of each per descriptor")
            expected += rows
        total = int(first[group].attrs["total"])
        if expected != total:
            raise WakdError(f"{paths[order[-1]]}: the shards hold {expected} /{group} rows; expected {total}")
    return order


def _check_shard_options(paths: list, files: list[h5py.File], order: list[int]) -> None:
    """Refuse shards whose recorded ``wakd extract`` options (size, seed, network, precision, ...) differ."""
    def options(f: h5py.File) -> dict:
        try:
            return json.loads(str(f.attrs.get("provenance", "{}"))).get("config", {})
        except ValueError:
            return {}

    ref_path, ref = paths[order[0]], options(files[order[0]])
    for path, f in zip(paths, files):
        own = options(f)
        for key in sorted(set(ref) | set(own)):
            if key not in SHARD_OWN_OPTIONS and ref.get(key) != own.get(key):
                raise WakdError(f"{path}: extracted with --{key.replace('_', '-')} {own.get(key)!r}, but {ref_path} "
                                f"with {ref.get(key)!r}; expected shards of one extraction (the same options)")


def resolve(paths: list[str], base: str) -> list[str]:
    """Image paths as recorded (relative to the folder ``wakd extract`` ran in, ``base``): made
    absolute against ``base`` when they do not exist from here, so figures work from any folder."""
    if not base or not paths or os.path.isabs(paths[0]) or os.path.exists(paths[0]):
        return paths
    return [os.path.join(base, p) for p in paths]
