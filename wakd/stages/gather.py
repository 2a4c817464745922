"""``wakd gather``: join the shards of a sharded extraction into one descriptor file.

``wakd extract --shard I/N`` describes part I of N of a split, so that N jobs (each with its own GPU
on a cluster) share a large database; this stage joins their files, block by block, into the file
one ``wakd extract`` job writes: the same rows, paths, positions and descriptors, bit for bit
(the shards are cut on the batch grid, :func:`wakd.descriptors.shard_rows`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from wakd.options import Options, option


@dataclass(kw_only=True)
class GatherConfig(Options):
    """join descriptor shards (wakd extract --shard I/N) into one descriptor file

    Check that the files are shards 1..N of one extraction (dataset, split, model, precision, dtype)
    covering every row once, and write the descriptor file an unsharded 'wakd extract' writes.
    """

    shards: tuple[str, ...] = option(help="the N shard files, in any order", path="in")
    out: str = option(help="HDF5 descriptor file to write", path="out")


def run(cfg: GatherConfig) -> dict:
    """Write ``cfg.out`` from ``cfg.shards``; its provenance is this run's, with every shard's extraction
    record kept under ``extract_provenance`` (a JSON list, in shard order)."""

    from wakd.descriptors import gather
    from wakd.provenance import provenance_attrs
    from wakd.utils import atomic_path, hdf5_file

    with atomic_path(cfg.out) as tmp, hdf5_file(tmp) as f:
        counts = gather(list(cfg.shards), f)
        f.attrs.update(provenance_attrs(cfg))
        f.attrs["shards"] = json.dumps(list(cfg.shards))
    return counts
