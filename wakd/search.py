"""Exact nearest-neighbour search over a database read in row chunks (bounded memory).

The database (an ``h5py`` dataset or an array) is read ``chunk_rows`` rows at a time; each chunk
is searched exactly (faiss's brute-force inner product ``faiss.knn`` on CPU, or a float32 matmul +
top-k with torch on a CUDA GPU, the chunk copied as stored, e.g. float16, through pinned memory and
converted there) and the running top-k is merged. Peak memory is the queries, one chunk (float32 on
CPU) and the ``[Nq, k]`` results. Results are ordered by decreasing similarity, ties broken by lower
database index, so the ranking equals a brute-force stable sort (on the GPU, an exact tie at the k-th
place of a chunk may keep either row). Scores are float32 on both devices: float16 scores (a float16
matmul's output) would round ~1e-3 apart and turn near neighbours into ties.
"""

from __future__ import annotations

import logging

import numpy as np

from wakd.utils import WakdError

log = logging.getLogger(__name__)

CHUNK_BYTES = 2**28  # float32 bytes of one database chunk (256 MiB)


def default_chunk_rows(dim: int) -> int:
    """Rows per chunk so that a float32 chunk takes about :data:`CHUNK_BYTES`."""
    return max(1024, CHUNK_BYTES // (4 * dim))


def _merge(scores: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((idx, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(idx, order, 1)


def _search_chunk_faiss(block: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    # faiss.knn searches the block in place: the same exact kernels as IndexFlatIP, without an index copy
    return faiss.knn(queries, block, k, metric=faiss.METRIC_INNER_PRODUCT)


def _search_chunk_torch(block: np.ndarray, queries_dev, k: int, device, start: int) -> tuple[np.ndarray, np.ndarray]:
    """One chunk as stored (float16 stays float16 on the way: half the bytes to copy, no conversion
    on the CPU), copied through pinned memory, checked for non-finite rows and searched on the GPU in
    float32 (8,280 x 83,952 x 4,096 is ~6 TFLOP: a fraction of a second there; reading the file dominates)."""
    import torch

    if not block.dtype.isnative:  # a file written with the other byte order
        block = block.astype(block.dtype.newbyteorder("="))
    host = torch.from_numpy(block)
    if device.type == "cuda":
        host = host.pin_memory()
    b = host.to(device, non_blocking=True)
    finite = torch.isfinite(b).all(dim=1)  # as stored, before the float16 cast
    if not bool(finite.all()):
        row = start + int((~finite).nonzero()[0, 0])
        raise WakdError(f"/db/descriptors row {row} is not finite (NaN/Inf); expected finite descriptors")
    s, i = (queries_dev @ b.float().T).topk(k, dim=1)
    return s.cpu().numpy(), i.cpu().numpy()


UNIT_TOLERANCE = 0.01  # |norm - 1| of a stored unit row (float16 rounding: ~1e-3)


def check_unit_rows(block: np.ndarray, start: int, what: str) -> None:
    """Refuse rows of ``block`` (rows ``start..``) that are not L2-normalised (within :data:`UNIT_TOLERANCE`)."""
    norms = np.linalg.norm(np.asarray(block, dtype=np.float32), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1) > UNIT_TOLERANCE)
    if len(bad):
        raise WakdError(f"{what} row {start + int(bad[0])} has L2 norm {norms[bad[0]]:.4g}; expected L2-normalised "
                        "rows (what wakd extract writes)")


def knn(db, queries: np.ndarray, k: int, chunk_rows: int | None = None,
        device: str = "cpu", unit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner-product neighbours of each query.

    Args:
        db: ``[N, D]`` database descriptors (array or h5py dataset), read in row chunks.
        queries: ``[Nq, D]`` query descriptors.
        k: neighbours per query (capped at N).
        chunk_rows: database rows per chunk (default: :func:`default_chunk_rows`).
        device: ``cpu`` (faiss) or ``cuda`` (torch matmul in float32).
        unit: check, chunk by chunk, that every database row is L2-normalised (:func:`check_unit_rows`).

    Returns:
        (scores ``[Nq, k]`` float32, indices ``[Nq, k]`` int64).

    Raises:
        WakdError: empty sets, different dimensions, or a non-finite database row.
    """
    n = db.shape[0]
    if n == 0 or len(queries) == 0 or db.shape[1] != queries.shape[1]:
        raise WakdError(f"search: {n} database x {db.shape[1]}-d and {len(queries)} queries x "
                        f"{queries.shape[1]}-d; expected non-empty sets of one dimension")
    k = min(k, n)
    chunk_rows = chunk_rows or default_chunk_rows(db.shape[1])
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    q_dev = None
    if device != "cpu":
        import torch

        device = torch.device(device)
        q_dev = torch.from_numpy(queries).to(device)
    for start in range(0, n, chunk_rows):
        if q_dev is not None:
            block = np.ascontiguousarray(db[start:start + chunk_rows])
            if unit:
                check_unit_rows(block, start, "/db/descriptors")
            kk = min(k, len(block))
            s, i = _search_chunk_torch(block, q_dev, kk, device, start)
        else:
            block = np.ascontiguousarray(db[start:start + chunk_rows], dtype=np.float32)
            if not np.isfinite(block).all():
                row = start + int(np.argwhere(~np.isfinite(block))[0][0])
                raise WakdError(f"/db/descriptors row {row} is not finite (NaN/Inf); expected finite descriptors")
            if unit:
                check_unit_rows(block, start, "/db/descriptors")
            kk = min(k, len(block))
            s, i = _search_chunk_faiss(block, queries, kk)
        best_s, best_i = _merge(np.concatenate([best_s, s], 1), np.concatenate([best_i, i + start], 1), k)
    return best_s, best_i


def auto_device() -> str:
    """``cuda`` when a usable NVIDIA GPU is present, else ``cpu`` (torch is imported only if a GPU
    device node exists, keeping CPU evaluation light)."""
    import glob

    if not glob.glob("/dev/nvidia[0-9]*"):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
