"""``wakd query``: the closest photos of an index to each query image.

The query images are described by the network the index was built with (its checkpoint and PCA,
checked by SHA-256), searched exactly (inner product of L2-normalised descriptors, faiss), and
printed as a table or JSON: rank, path, score, position, distance to the best match's position and,
when the query's own position is in its file name (``@east@north@``), distance to the query.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wakd.options import PRECISIONS, Options, option, parse_device
from wakd.utils import WakdError

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class QueryConfig(Options):
    """top-k matches of query photos in an index

    Describe each query image with the index's network and print its top-k database images (path,
    similarity, position, distance to the best match and to the query where known).
    """

    images: tuple[str, ...] = option(help="query image files", positional=True)
    index: str = option(help="index file of 'wakd index'", path="in")
    top_k: int = option(5, "matches per query", low=1)
    json: bool = option(False, "print JSON instead of a table")
    figure: str | None = option(None, "write each query beside its matches to this PNG", path="out")
    map: str | None = option(None, "write a PNG map of the index's positions with each query's matches (dot: top-1, "
                                   "rings: the others; a star where the query's own position is known)", path="out")
    checkpoint: str | None = option(None, "the index's checkpoint, when it has moved (its SHA-256 must match)")
    pca: str | None = option(None, "the index's PCA file, when it has moved (its SHA-256 must match)")
    device: str = option("auto", "auto, cpu, cuda or cuda:N", parse=parse_device, metavar="DEVICE")
    precision: str | None = option(None, "autocast: fp32, bf16 or auto (default: what the index was built with)",
                                   choices=PRECISIONS)


def run(cfg: QueryConfig) -> list[dict]:
    """Print (and return) the matches of every query."""
    from wakd.device import resolve_device
    from wakd.index import Index, distance_m, position_from_name
    from wakd.inference import describe, load_model
    from wakd.search import knn

    index = Index(cfg.index)
    if cfg.map and not np.isfinite(np.asarray(index.coords, dtype=np.float64)).all(1).any():
        raise WakdError(f"--map {cfg.map}: {cfg.index} records no positions of its images; a map needs them (wakd "
                        "index --positions, or @east@north@ file names)")
    ckpt = cfg.checkpoint or str(index.attrs.get("checkpoint", ""))
    if not ckpt or not Path(ckpt).is_file():
        raise WakdError(f"{cfg.index}: its checkpoint {ckpt or '(none recorded)'} is not there; give --checkpoint")
    pca = cfg.pca or str(index.attrs.get("pca", "")) or None
    if pca and not Path(pca).is_file():
        raise WakdError(f"{cfg.index}: its PCA file {pca} is not there; give --pca")
    model = load_model(ckpt, pca, device=resolve_device(cfg.device))
    for what, path in (("checkpoint", ckpt), ("pca", pca)):
        if model.info[f"{what}_sha256"] != index.attrs.get(f"{what}_sha256", ""):
            raise WakdError(f"--{what} {path}: not the {what} file {cfg.index} was built with (SHA-256 differs); "
                            "expected the same network for queries and database")
    for path in cfg.images:
        if not Path(path).is_file():
            raise WakdError(f"{path}: no such query image")
    precision = cfg.precision or str(index.attrs.get("precision", "fp32"))
    queries = describe(model, list(cfg.images), precision=precision)
    scores, ids = knn(index.descriptors, queries, cfg.top_k)
    results = []
    for q, path in enumerate(cfg.images):
        here = position_from_name(path) if index.kind == "utm" else None
        best = index.coords[ids[q, 0]]
        matches = []
        for rank, (i, s) in enumerate(zip(ids[q], scores[q]), start=1):
            pos = index.coords[i]
            known = bool(np.isfinite(pos).all())
            row = {"rank": rank, "path": index.paths[i], "score": round(float(s), 4),
                   "position": [float(v) for v in pos] if known else None,
                   "to_best_m": _metres(distance_m(pos, best, index.kind)) if known else None}
            if here is not None:
                row["to_query_m"] = _metres(distance_m(pos, here, index.kind)) if known else None
            matches.append(row)
        results.append({"query": path, "position": list(here) if here else None, "matches": matches})
    print(json.dumps(results, indent=2) if cfg.json else _table(results, index.kind))
    if cfg.figure:
        _figure(results, cfg.figure)
    if cfg.map:
        _map(index, ids, results, cfg.map)
    return results


def _map(index, ids: np.ndarray, results: list[dict], out: str) -> None:
    """The index's positions (UTM metres, or lat/lon projected to local metres) with each query's matches."""
    from wakd.maps import query_map

    coords = np.asarray(index.coords, dtype=np.float64)
    known = np.isfinite(coords).all(1)  # some (checked before describing the queries)

    def metres(xy: np.ndarray) -> np.ndarray:
        if index.kind != "latlon":
            return xy
        lat0 = np.nanmean(coords[known, 0])
        return np.c_[(xy[:, 1] - np.nanmean(coords[known, 1])) * 111_320 * np.cos(np.radians(lat0)),
                     (xy[:, 0] - lat0) * 110_540]

    here = np.array([r["position"] if r["position"] else [np.nan, np.nan] for r in results], dtype=np.float64)
    query_map(metres(coords), [Path(r["query"]).name for r in results], ids, out, query_xy=metres(here))


def _metres(d: float) -> float | None:
    d = float(d)
    return round(d, 1) if math.isfinite(d) else None


def _table(results: list[dict], kind: str) -> str:
    import pandas as pd

    rows = []
    for r in results:
        for m in r["matches"]:
            pos = m["position"]
            rows.append({"query": Path(r["query"]).name, "rank": m["rank"], "score": m["score"],
                         ("lat, lon" if kind == "latlon" else "east, north"):
                             f"{pos[0]:.6f}, {pos[1]:.6f}" if pos and kind == "latlon" else
                             (f"{pos[0]:.1f}, {pos[1]:.1f}" if pos else "-"),
                         "to best (m)": "-" if m["to_best_m"] is None else m["to_best_m"],
                         **({"to query (m)": "-" if m["to_query_m"] is None else m["to_query_m"]}
                            if "to_query_m" in m else {}),
                         "path": m["path"]})
    return pd.DataFrame(rows).to_string(index=False)


def _figure(results: list[dict], out: str) -> None:
    """One row per query: the query, then its matches with their scores."""
    from wakd.report import image_grid

    rows = []
    for r in results:
        cells = [(r["query"], f"query {Path(r['query']).name}"[:28], None)]
        for m in r["matches"]:
            extra = f", {m['to_query_m']:.0f} m" if m.get("to_query_m") is not None else ""
            cells.append((m["path"], f"#{m['rank']} {m['score']:.3f}{extra}", None))
        rows.append(cells)
    image_grid(rows, out)
