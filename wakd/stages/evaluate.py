"""``wakd evaluate``: exact nearest-neighbour search of a descriptor file and its Recall@N table.

The metric itself is :mod:`wakd.recall`.

A query counts as correct at N when any of its top-N predictions is a positive; queries without
any positive count as misses (the gmberton convention), so recall never exceeds the fraction of
queries that have a positive. Ties in similarity are ranked by lower database index.

Results are a tidy table, one row per (model, dataset, split, rule, condition) with columns
``R@1, R@5, R@10, R@20`` (fractions in [0, 1]) and ``queries``. ``rule`` is ``25m`` (the
Pittsburgh protocol; radius from the dataset's ``posDistThr``) and, where image yaws are known
(the synthetic city), also ``25m+yaw45`` (heading within 45 degrees too). ``condition`` is
``all`` plus each capture condition present (``day``, ``sunset``, ``night``). ``hub_share`` is the
share of the condition's queries whose top-1 is the database image most often at top-1 among them
(hubness: a network that cannot describe night images sends many of them to the same few day images).

Tokyo 24/7 convention (``dedup_panoramas``): predictions are de-duplicated per database panorama
(images sharing one UTM position), keeping the best-ranked image of each, before Recall@N.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wakd.options import Options, option, parse_device
from wakd.recall import RECALL_VALUES, check_recall_values, recall_rows
from wakd.utils import WakdError, atomic_outputs, check_array, hdf5_file

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class EvaluateConfig(Options):
    """Recall@N of a descriptor file (exact search, 25 m rule)

    Exact nearest-neighbour search (faiss IndexFlatIP on CPU, matmul + top-k on CUDA) over database chunks,
    Recall@N overall and per query condition, tidy CSV with columns model, dataset, split, rule, condition,
    R@N..., queries.
    """

    descriptors: str = option(help="HDF5 from 'wakd extract'", path="in")
    model: str = option(help="name for the model column")
    out: str = option(help="CSV to write (and OUT.info.json, its provenance)", path="out")
    recall_values: tuple[int, ...] = option(RECALL_VALUES, "the N of Recall@N", low=1)
    dedup_panoramas: bool = option(False, "keep the best-ranked image of each database panorama (Tokyo 24/7 "
                                          "convention)")
    chunk_rows: int | None = option(None, "database rows searched at a time", low=1)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", parse=parse_device, metavar="DEVICE")
    predictions: str | None = option(None, "also write the top-k indices and scores (HDF5)", path="out")
    figure: str | None = option(None, "also write a PNG grid of queries and their top predictions", path="out")
    map: str | None = option(None, "also write a PNG map: per condition, each query green (top-1 within the positive "
                                   "radius) or red with a line to its top-1's place, over the database's positions",
                             path="out")
    num_queries: int = option(8, "rows of the figure", low=1)
    num_preds_to_save: int = option(5, "predictions per row of the figure", low=1)
    only_wrong: bool = option(False, "figure: only queries wrong at R@1")
    seed: int = option(0, "which queries the figure shows", low=0)


def run(cfg: EvaluateConfig) -> pd.DataFrame:
    """Search, write the table (and the predictions and figure when asked), print the table."""

    from wakd.descriptors import read_ground_truth
    from wakd.provenance import beside, provenance_attrs, write_record
    from wakd.search import auto_device

    device = auto_device() if cfg.device == "auto" else cfg.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise WakdError(f"--device {cfg.device}: no CUDA GPU is visible here; expected cpu or auto")
    table, pred, scores = evaluate_file(cfg.descriptors, cfg.model, cfg.recall_values,
                                        dedup_panoramas=cfg.dedup_panoramas, chunk_rows=cfg.chunk_rows,
                                        device=device)
    with atomic_outputs(cfg.out, beside(cfg.out), cfg.predictions, cfg.figure, cfg.map) as (csv, info, predictions,
                                                                                             figure, map_png):
        if predictions:
            with hdf5_file(predictions) as f:
                f.create_dataset("predictions", data=pred)
                f.create_dataset("scores", data=scores)
                f.attrs.update({"descriptors": str(cfg.descriptors), "model": cfg.model, **provenance_attrs(cfg)})
        ds = read_ground_truth(cfg.descriptors) if figure or map_png else None  # once, for both figures
        if figure:
            from wakd.report import prediction_grid

            prediction_grid(ds, pred, figure, num_queries=cfg.num_queries, num_preds=cfg.num_preds_to_save,
                            only_wrong=cfg.only_wrong, seed=cfg.seed, title=f"{cfg.model} on {ds.name} {ds.split}")
        if map_png:
            from wakd.maps import evaluation_map

            evaluation_map(ds, pred, map_png, title=f"{cfg.model} on {ds.name} {ds.split}")
        write_record(cfg, info)
        table.to_csv(csv, index=False, float_format="%.4f")
    print(table.to_string(index=False))
    return table


def panorama_ids(db_utm: np.ndarray) -> np.ndarray:
    """Panorama index of each database image: images at the same UTM position (to the centimetre)."""
    _, inverse = np.unique(np.round(np.asarray(db_utm) * 100).astype(np.int64), axis=0, return_inverse=True)
    return inverse.reshape(-1)


def dedup_predictions(pred: np.ndarray, pano: np.ndarray, k: int) -> np.ndarray:
    """Keep the best-ranked image of each panorama, in order; rows padded with -1 to ``k``."""
    out = np.full((len(pred), k), -1, dtype=np.int64)
    for r, row in enumerate(pred):
        _, first = np.unique(pano[row], return_index=True)
        keep = row[np.sort(first)][:k]
        out[r, :len(keep)] = keep
    return out


def evaluate_file(descriptors: str | os.PathLike, model: str, ns: tuple[int, ...] = RECALL_VALUES,
                  dedup_panoramas: bool = False, chunk_rows: int | None = None, device: str = "cpu",
                  keep: int | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Recall@N of a descriptor file written by ``wakd extract``.

    Args:
        descriptors: the HDF5 descriptor file.
        model: the name recorded in the ``model`` column.
        ns: the N of Recall@N.
        dedup_panoramas: Tokyo 24/7 per-panorama de-duplication of predictions.
        chunk_rows: database rows searched at a time (default: a 256 MiB float32 chunk).
        device: ``cpu`` or ``cuda``.
        keep: predictions kept per query (default ``max(ns)``).

    Returns:
        (table, predictions ``[Nq, keep]``, scores ``[Nq, keep]``).
    """
    import h5py

    from wakd.descriptors import read_ground_truth
    from wakd.search import check_unit_rows, knn

    ds = read_ground_truth(descriptors)
    k = max(max(ns), keep or 0)
    pano = panorama_ids(ds.db_utm) if dedup_panoramas else None
    if pano is not None:
        check_recall_values(ns, int(pano.max()) + 1 if len(pano) else 0, str(descriptors), "database panoramas")
    check_recall_values(ns, ds.num_db, str(descriptors))
    search_k = k * int(np.bincount(pano).max()) if pano is not None else k
    with h5py.File(descriptors, "r") as f:
        queries = check_array(f["queries/descriptors"][:], f"{descriptors}: /queries/descriptors")
        try:
            scores, pred = knn(f["db/descriptors"], queries, search_k, chunk_rows, device, unit=True)
            check_unit_rows(queries, 0, "/queries/descriptors")
        except WakdError as exc:
            raise WakdError(f"{descriptors}: {exc}") from None
    if pano is not None:
        full_pred, full_scores = pred, scores
        pred = dedup_predictions(full_pred, pano, k)
        scores = np.full(pred.shape, np.nan, dtype=np.float32)  # NaN where a row is padded (-1)
        for r, row in enumerate(pred):
            score_of = dict(zip(full_pred[r].tolist(), full_scores[r].tolist()))
            scores[r] = [score_of.get(j, np.nan) for j in row.tolist()]
    table = pd.DataFrame(recall_rows(pred[:, :max(ns)], ds, model, ns))
    return table, pred[:, :k], scores[:, :k]
