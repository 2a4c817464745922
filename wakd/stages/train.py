"""``wakd train``: weakly supervised training of backbone + NetVLAD from GPS alone.

One loop serves the teacher here and the student later (distillation plugs in its own loss):

* each epoch shuffles the usable training queries (seeded by ``(seed, epoch)``) and walks them in
  chunks of ``cache_size``; before each chunk the current model re-describes what the chunk needs
  and mines tuples (:mod:`wakd.data.tuples`): 1 query, its best positive, ``neg_num`` hard negatives;
* a network trained from random weights has its BatchNorm statistics re-estimated (precise BN,
  :mod:`wakd.models.bn`) before each validation and each re-mining after training steps (an epoch's
  first mining uses the statistics its previous epoch ended with), so eval mode describes what
  training optimised (and the checkpoints hold those statistics);
* batches of ``tuples_per_batch`` tuples are trained with a ranking loss (:mod:`wakd.losses`),
  SGD (lr 0.001, momentum 0.9, weight decay 0.001, step decay) or Adam, under the chosen autocast;
* after each epoch, Recall@N on the validation split selects ``model_best`` (by R@5 by default) and
  a row is added to ``history.csv`` (loss, recalls, time spent refreshing the cache, training,
  validating);
* checkpoints are plain state dicts (``torch.load(weights_only=True)``), written atomically each
  epoch with model, optimiser, scheduler, epoch, RNG state and the hard-negative cache, so
  ``resume`` continues an interrupted run and reaches the same result (bitwise on CPU);
* under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel (nccl on
  GPU, gloo on CPU), each rank mines its own share of the queries, the ranks' hard-negative caches
  are merged after each epoch (so a checkpoint holds all of them), only rank 0 validates and
  writes; checkpoints hold the unwrapped model's state.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from wakd.data import load_dataset
from wakd.data.base import PlaceDataset
from wakd.data.loader import ImageList, decoded_images
from wakd.data.tuples import best_positive, hardest, mining_sets, negative_pool
from wakd.device import autocast, prepare, resolve_device, resolve_precision, to_input
from wakd.features import describe_images, sample_paths
from wakd.losses import LOSSES, check_loss_options, get_loss
from wakd.models.bn import DEFAULT_IMAGES, recalibrate_bn, wants_precise_bn
from wakd.models.build import build_embednet
from wakd.options import NetOptions, RunOptions, TrainSplit, option
from wakd.provenance import run_info
from wakd.recall import RECALL_VALUES, recall_rows
from wakd.search import knn
from wakd.utils import WakdError, atomic_path

log = logging.getLogger(__name__)

LOSS_NAMES = tuple(LOSSES)
LOSS_HELP = ("ranking loss: triplet on Euclidean distances (pytorch-NetVlad, OpenIBL), triplet_sq on squared "
             "distances, sare_joint / sare_ind (SARE)")


@dataclass(kw_only=True)
class TrainConfig(NetOptions, TrainSplit, RunOptions):
    """weakly supervised training (hard-negative mining, triplet / SARE losses)

    Train backbone + NetVLAD from GPS alone: tuples of a query, its best positive (<10 m) and hard
    negatives (>25 m) mined with the current model every --cache-size queries; validation Recall@N each
    epoch selects model_best. Writes checkpoint.pth.tar, model_best.pth.tar, history.csv, steps.csv in
    --out-dir. Multi-GPU: torchrun --nproc_per_node N -m wakd train ...
    """

    out_dir: str = option(help="run folder (checkpoints, history)")
    resume: str | None = option(None, "checkpoint.pth.tar of an interrupted run of the same options; auto: the "
                                      "one in --state-dir if there is one, else start", record=False)
    state_dir: str | None = option(None, "where the resumable state (checkpoint.pth.tar, steps.csv) is kept while "
                                         "training, removed when it ends (default: --out-dir, kept); the pipeline "
                                         "keeps it apart from the outputs, which Snakemake deletes when a job "
                                         "fails", record=False)
    overwrite: bool = option(False, "start over in an --out-dir that holds a run", record=False)
    val_split: str = option("val", "split validating each epoch")
    epochs: int = option(5, low=1)
    loss: str = option("triplet", LOSS_HELP, choices=LOSS_NAMES)
    margin: float | None = option(None, "triplet margin (default: sqrt(0.1) for triplet, 0.1 for triplet_sq)", low=0)
    temperature: float | None = option(None, "SARE on dot products / T (the WAKD code: 0.07); 0 or none: on "
                                             "negative squared distances (OpenIBL's teacher)", low=0)
    precise_bn: int = option(DEFAULT_IMAGES, "re-estimate BatchNorm statistics over N training images before every "
                                             "use in eval mode (mining, validation, the saved checkpoints) of a "
                                             "network trained from random weights (0: off; skipped for pretrained "
                                             "--weights)", low=0, metavar="N")
    optimizer: str = option("sgd", choices=("sgd", "adam"))
    lr: float = option(0.001, "learning rate", low=0)
    momentum: float = option(0.9, "SGD momentum", low=0)
    weight_decay: float = option(0.001, low=0)
    lr_step: int = option(5, "epochs between learning-rate decays", low=1)
    lr_gamma: float = option(0.5, "learning-rate decay factor", low=0)
    tuples_per_batch: int = option(4, low=1)
    neg_num: int = option(10, "hard negatives per tuple", low=1)
    neg_pool: int = option(1000, "random negative candidates per query", low=1)
    cache_size: int = option(1000, "queries between cache refreshes", low=1)
    queries_per_epoch: int | None = option(None, "queries per epoch (default: all usable queries)", low=1)
    image_cache_gb: float = option(2.0, "memory (GiB) for the training and validation images, decoded and resized "
                                        "once for the whole run (fixed --size only; data-loader workers are then "
                                        "not used); splits needing more are read from disk every time (0: always)",
                                   low=0, metavar="GB")
    select_metric: str = option("R@5", "validation metric choosing model_best",
                                choices=tuple(f"R@{n}" for n in RECALL_VALUES))
    threads: int | None = option(None, "torch threads (set from the Snakemake rule)", low=1)
    recall_values: tuple[int, ...] = option(RECALL_VALUES, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature == 0:
            self.temperature = None
        check_loss_options(self.loss, self.margin, self.temperature)


class RankingObjective:
    """The teacher's objective: a weakly supervised ranking loss on the tuples' descriptors.

    An objective maps a batch of tuples to a dict of scalar tensors whose ``"loss"`` is optimised;
    the other entries are logged (distillation adds its terms, :mod:`wakd.distill`).
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.loss_fn, self.margin, self.temperature = get_loss(cfg.loss), cfg.margin, cfg.temperature

    def ranking_loss(self, desc: torch.Tensor, b: int, t: int) -> torch.Tensor:
        d = desc.float().view(b, t, -1)
        return self.loss_fn(d[:, 0], d[:, 1], d[:, 2:], self.margin, self.temperature)

    def __call__(self, net: torch.nn.Module, x: torch.Tensor, b: int, t: int, device: torch.device,
                 precision: str, ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses of ``b`` tuples of ``t`` images each, ``x`` being their ``[b*t, 3, H, W]`` images and
        ``ids`` their keys (:class:`TupleImages`)."""
        with autocast(device, precision):
            desc = net(x)
        return {"loss": self.ranking_loss(desc, b, t)}


class TupleImages(Dataset):
    """Images of mined tuples: item i is ``([2 + N, 3, H, W], [2 + N])``, the images (query, positive,
    negatives) and their keys: query ``q`` is ``q``, database image ``j`` is ``num_queries + j``."""

    def __init__(self, tuples: list[np.ndarray], ds: PlaceDataset, size: tuple[int, int] | None) -> None:
        self.tuples, self.q, self.db = tuples, ImageList(ds.q_paths, size), ImageList(ds.db_paths, size)
        self.num_queries = ds.num_queries

    def __len__(self) -> int:
        return len(self.tuples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tuples[i]
        x = torch.stack([self.q[int(t[0])][0]] + [self.db[int(j)][0] for j in t[1:]])
        return x, torch.from_numpy(np.concatenate([t[:1], t[1:] + self.num_queries]))


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world


def _seed_epoch(seed: int, epoch: int) -> np.random.Generator:
    torch.manual_seed(seed * 100003 + epoch)
    return np.random.default_rng([seed, epoch])


def _describe_options(cfg: TrainConfig) -> dict:
    """How images are described for the cache and for validation."""
    return {"batch_size": cfg.batch_size, "workers": cfg.workers, "precision": cfg.precision, "size": cfg.size}


def mine_chunk(model: torch.nn.Module, ds: PlaceDataset, queries: np.ndarray, sets, hard_negs: np.ndarray,
               cfg: TrainConfig, rng: np.random.Generator, device: torch.device) -> list[np.ndarray]:
    """Refresh the cache for ``queries`` and return their tuples ``[q, best positive, negatives...]``."""
    pools = {int(q): negative_pool(rng, ds.num_db, sets.non_negatives[q], cfg.neg_pool, hard_negs[q])
             for q in queries}
    need = np.unique(np.concatenate([sets.positives[q] for q in queries] + list(pools.values())))
    db_desc = describe_images(model, [ds.db_paths[i] for i in need], device, **_describe_options(cfg))
    q_desc = describe_images(model, [ds.q_paths[i] for i in queries], device, **_describe_options(cfg))
    row = {int(j): r for r, j in enumerate(need)}
    tuples = []
    for qd, q in zip(q_desc, queries):
        pos = sets.positives[q]
        p = best_positive(qd, pos, db_desc[[row[int(j)] for j in pos]])
        cand = pools[int(q)]
        negs = hardest(qd, cand, db_desc[[row[int(j)] for j in cand]], cfg.neg_num)
        hard_negs[q] = negs
        tuples.append(np.concatenate([[q, p], negs]).astype(np.int64))
    return tuples


def calibrate(model: torch.nn.Module, ds: PlaceDataset, cfg: TrainConfig, device: torch.device,
              seed: tuple[int, ...]) -> None:
    """Precise BN over ``cfg.precise_bn`` training images (database and queries) drawn with ``seed``."""
    paths = ds.db_paths + ds.q_paths
    pick = sample_paths(paths, cfg.precise_bn, int(np.random.default_rng(list(seed)).integers(2**31)))
    recalibrate_bn(model, pick, device, batch_size=cfg.batch_size, workers=cfg.workers,
                   precision=cfg.precision, size=cfg.size)


def validate(model: torch.nn.Module, ds: PlaceDataset, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Recall@N (25 m rule, all queries) on the validation split."""
    db = describe_images(model, ds.db_paths, device, **_describe_options(cfg))
    q = describe_images(model, ds.q_paths, device, **_describe_options(cfg))
    _, pred = knn(db, q, max(cfg.recall_values), device=str(device) if device.type == "cuda" else "cpu")
    row = next(r for r in recall_rows(pred, ds, "val", cfg.recall_values) if r["rule"] == "25m"
               and r["condition"] == "all")
    return {k: v for k, v in row.items() if k.startswith("R@")}


def image_bytes(size: tuple[int, int] | None, *splits: PlaceDataset | None) -> int:
    """Bytes of the splits' images decoded at ``size`` (0 without a fixed size)."""
    if size is None:
        return 0
    return sum(d.num_db + d.num_queries for d in splits if d is not None) * 3 * size[0] * size[1]


def _merge_cache(hard_negs: np.ndarray, mine: np.ndarray, device: torch.device) -> np.ndarray:
    """Every rank's hard negatives of this epoch in every rank's cache (DDP), so checkpoints are complete.

    Ranks mined disjoint query shares this epoch; rows a rank did not mine hold the common state of
    the previous epoch on every rank. Each rank masks the rows it did not mine, a MAX all-reduce
    gathers the mined rows, and the unmasked previous values fill in the rest.
    """
    masked = np.full_like(hard_negs, -2)
    masked[mine] = hard_negs[mine]
    t = torch.from_numpy(masked).to(device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    merged = t.cpu().numpy()
    return np.where(merged == -2, hard_negs, merged)


def _checkpoint(model, opt, sched, epoch, best, best_epoch, hard_negs, cfg, history) -> dict:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch, "best_metric": best, "best_epoch": best_epoch,
            "hard_negatives": torch.from_numpy(hard_negs.copy()), "torch_rng": torch.get_rng_state(),
            "config": {**cfg.record(), "arch_kwargs": cfg.arch_kwargs, "inputs": input_identity(cfg)},
            "provenance": run_info(cfg.record(), cfg.seed),
            "history": history}


def _save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(cfg: TrainConfig, resume: str | os.PathLike | None = None,
          objective: Callable[[torch.device, PlaceDataset], Callable] | None = None) -> dict:
    """Train and write ``checkpoint.pth.tar``, ``model_best.pth.tar``, ``history.csv`` (per epoch)
    and ``steps.csv`` (every step's loss terms) in ``out_dir``.

    Args:
        cfg: the run's settings.
        resume: ``checkpoint.pth.tar`` of an interrupted run (default: ``cfg.resume``).
        objective: ``objective(device, training split)`` returns the per-batch objective (see
            :class:`RankingObjective`, the default); distillation passes its own. It is made once the
            precision is resolved (``cfg.precision``), before the first epoch.

    Returns:
        The last history row.

    Raises:
        WakdError: bad data (too few positives / negatives), a non-finite loss (the last good
            checkpoint is kept), or a bad option.
    """
    resume = resume or cfg.resume
    rank, world = _dist_info()
    device = resolve_device(cfg.device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out, state = Path(cfg.out_dir), Path(cfg.state_dir or cfg.out_dir)
    separate = state.resolve() != out.resolve()
    ck = None
    if str(resume) == "auto":  # the interrupted run of these options and inputs, if there is one
        resume = state / "checkpoint.pth.tar" if (state / "checkpoint.pth.tar").exists() else None
        try:
            ck = _read_resume(resume, cfg) if resume else None
        except WakdError as exc:  # another run's state (options, inputs or code changed): start over
            log.warning("--resume auto: %s; starting over", exc)
            resume = None
        log.info("--resume auto: %s", f"continuing {resume}" if resume else "no interrupted run, starting")
    elif resume:
        ck = _read_resume(resume, cfg)
    if not resume and (out / "checkpoint.pth.tar").exists() and not cfg.overwrite:
        raise WakdError(f"--out-dir {out}: holds a run already (checkpoint.pth.tar); continue it with --resume "
                        f"{out / 'checkpoint.pth.tar'}, or start over with --overwrite")
    if not resume and separate and rank == 0:
        _clear_state(state)  # a stale state must not be resumed after this run is killed
    ds = load_dataset(cfg.dataset, cfg.split, cfg.root)
    val = load_dataset(cfg.dataset, cfg.val_split, cfg.root) if rank == 0 else None
    if val is not None and not any(len(p) for p in val.positives()):
        raise WakdError(f"--val-split {cfg.val_split}: none of the {val.num_queries} queries of "
                        f"{val.source or cfg.dataset} has a database image within {val.pos_dist_thr:g} m; "
                        "validation needs queries with positives")
    sets = mining_sets(ds, cfg.neg_num, min_queries=cfg.tuples_per_batch * world)

    torch.manual_seed(cfg.seed)
    model = build_embednet(cfg.arch, cfg.num_clusters, clusters=cfg.clusters, weights=cfg.weights, **cfg.arch_kwargs)
    precise_bn = wants_precise_bn(model, cfg.precise_bn, pretrained=bool(cfg.weights), what=f"{cfg.arch} network")
    # on the device before the optimiser exists: a resumed optimiser's state is placed on its parameters' device
    model = prepare(model, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise WakdError(f"--optimizer {cfg.optimizer!r}: expected sgd or adam")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    hard_negs = np.full((ds.num_queries, cfg.neg_num), -1, dtype=np.int64)
    start, best, best_epoch, history, steps = 0, -math.inf, -1, [], []
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
        except RuntimeError as exc:
            raise WakdError(f"--resume {resume}: its network is not a {cfg.arch} K={cfg.num_clusters} "
                            f"({str(exc).splitlines()[0]})") from None
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, best, best_epoch = ck["epoch"] + 1, ck["best_metric"], ck["best_epoch"]
        hard_negs, history = ck["hard_negatives"].numpy().copy(), ck["history"]
        steps = _read_steps(Path(resume).parent / "steps.csv", before_epoch=start)
        log.info("resumed from %s at epoch %d", resume, start)
    # one process: `auto` timed for this network (every rank of a DDP run must agree: there, by the device)
    cfg.precision = resolve_precision(device, cfg.precision, model=model if world == 1 else None, size=cfg.size,
                                      train=True)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None) if world > 1 else model
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        state.mkdir(parents=True, exist_ok=True)
        kept_best = Path(resume).parent / "model_best.pth.tar" if resume else None
        if kept_best is not None and kept_best.exists() and not (out / "model_best.pth.tar").exists():
            with atomic_path(out / "model_best.pth.tar") as tmp:  # the outputs were deleted by a failure
                shutil.copy2(kept_best, tmp)

    # every image of the two splits decoded once, if they fit in --image-cache-gb (fixed --size only)
    with decoded_images(cfg.image_cache_gb, image_bytes(cfg.size, ds, val)) as in_memory:
        if in_memory:
            log.info("training and validation images kept decoded in memory")
        step_losses = objective(device, ds) if objective is not None else RankingObjective(cfg)
        # BatchNorm statistics of the current weights: precise BN ends every epoch (before validation, so the
        # checkpoints hold them) and the weights do not change until the next epoch trains, so its first
        # mining uses them as they are; a resumed run starts from a checkpoint's. In DDP only rank 0
        # validates, so there every mining re-estimates them (the same on every rank).
        fresh_bn = ck is not None and world == 1
        for epoch in range(start, cfg.epochs):
            rng = _seed_epoch(cfg.seed, epoch)
            queries = rng.permutation(sets.queries)[:cfg.queries_per_epoch]
            # the same number of queries on every rank, so that every rank runs the same number of steps
            queries = queries[:len(queries) // world * world][rank::world]
            t_cache = t_train = 0.0
            terms: dict[str, list[float]] = {}
            for c0 in range(0, len(queries), cfg.cache_size):
                t0 = time.perf_counter()
                if precise_bn and not fresh_bn:
                    calibrate(model, ds, cfg, device, (cfg.seed, epoch, c0))
                fresh_bn = False
                tuples = mine_chunk(model, ds, queries[c0:c0 + cfg.cache_size], sets, hard_negs, cfg, rng, device)
                t1 = time.perf_counter()
                t_cache += t1 - t0
                order = rng.permutation(len(tuples))
                order = order[:len(order) // cfg.tuples_per_batch * cfg.tuples_per_batch]  # whole batches only
                loader = DataLoader(TupleImages([tuples[i] for i in order], ds, cfg.size),
                                    batch_size=cfg.tuples_per_batch, num_workers=0 if in_memory else cfg.workers,
                                    pin_memory=device.type == "cuda")
                net.train()
                for x, ids in loader:
                    b, t = x.shape[:2]
                    parts = step_losses(net, to_input(x.flatten(0, 1), device), b, t, device, cfg.precision,
                                        ids=ids.flatten())
                    loss = parts["loss"]
                    if not torch.isfinite(loss):
                        raise WakdError(f"loss became {loss.item()} at epoch {epoch}; stopped, {_kept(out)} "
                                        "(try a lower --lr)")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    values = {k: v.item() for k, v in parts.items()}
                    for k, v in values.items():
                        terms.setdefault(k, []).append(v)
                    if rank == 0:
                        steps.append({"epoch": epoch, "step": len(terms["loss"]) - 1, **values})
                t_train += time.perf_counter() - t1
            sched.step()
            means = {k: float(np.mean(v)) for k, v in terms.items()} or {"loss": float("nan")}
            if world > 1:
                stat = torch.tensor(list(means.values()), device=device, dtype=torch.float64)
                dist.all_reduce(stat)
                means = dict(zip(means, (stat / world).tolist()))
            mean_loss = means["loss"]
            if world > 1:
                hard_negs = _merge_cache(hard_negs, queries, device)
            if rank == 0:
                t0 = time.perf_counter()
                if precise_bn:  # also what the checkpoints below hold: statistics of the epoch's final weights
                    calibrate(model, ds, cfg, device, (cfg.seed, epoch, len(queries)))
                    fresh_bn = world == 1
                rec = validate(model, val, cfg, device)
                t_val = time.perf_counter() - t0
                row = {"epoch": epoch, **means, "lr": opt.param_groups[0]["lr"], **rec,
                       "cache_seconds": round(t_cache, 2), "train_seconds": round(t_train, 2),
                       "val_seconds": round(t_val, 2),
                       "cache_share": round(t_cache / max(t_cache + t_train, 1e-9), 3)}
                history.append(row)
                log.info("epoch %d: loss %.4f, val %s, cache %.0f%% of %.0f s", epoch, mean_loss,
                         " ".join(f"{k} {100 * v:.1f}" for k, v in rec.items()), 100 * row["cache_share"],
                         t_cache + t_train)
                metric = rec[cfg.select_metric]
                if metric > best:
                    best, best_epoch = metric, epoch
                ck = _checkpoint(model, opt, sched, epoch, best, best_epoch, hard_negs, cfg, history)
                if separate:  # the resumable state first (its checkpoint last: it marks the state complete)
                    if best_epoch == epoch:
                        _save(ck, state / "model_best.pth.tar")
                    _write_history(state / "steps.csv", steps)
                    _save(ck, state / "checkpoint.pth.tar")
                _write_outputs(out, ck, history, steps, best_epoch == epoch)
            if world > 1:
                dist.barrier()
    if world > 1:
        dist.destroy_process_group()
    if rank == 0 and ck is not None and start >= cfg.epochs:  # resumed with nothing left to train
        _write_outputs(out, ck, history, steps, best_epoch == ck["epoch"])
    if rank == 0 and separate:  # finished: the outputs hold everything, the state is no longer needed
        _clear_state(state)
    return history[-1] if history else {}


# Options a resumed run may change: where and how fast it runs, and how long (a requeued job may land
# on a node whose CPU resolves `--precision auto` differently).
RESUMABLE_CHANGES = frozenset({"epochs", "threads", "workers", "device", "out_dir", "root", "state_dir",
                               "precision", "image_cache_gb"})
STATE_FILES = ("checkpoint.pth.tar", "model_best.pth.tar", "steps.csv")


def _kept(out: Path) -> str:
    ck = out / "checkpoint.pth.tar"
    return f"the last good checkpoint is kept in {ck}" if ck.exists() else "no epoch had finished, nothing was saved"


def _write_outputs(out: Path, ck: dict, history: list[dict], steps: list[dict], best: bool) -> None:
    """An epoch's outputs; the checkpoint last, so a resumed run finds everything it names."""
    if best:
        _save(ck, out / "model_best.pth.tar")
    _write_history(out / "history.csv", history)
    _write_history(out / "steps.csv", steps)
    _save(ck, out / "checkpoint.pth.tar")


def _clear_state(state: Path) -> None:
    """Remove the files of a resumable state (only those wakd writes there) and the folder if empty."""
    for name in STATE_FILES:
        (state / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state.rmdir()


def input_identity(cfg: TrainConfig) -> dict[str, list[int]]:
    """Size and modification time of the input files a run reads (NetVLAD centres, weights, teacher),
    so that a state is not resumed over inputs rebuilt since (e.g. a retrained teacher)."""
    files = {k: getattr(cfg, k, None) for k in ("clusters", "weights", "teacher")}
    return {k: [os.stat(v).st_size, os.stat(v).st_mtime_ns] for k, v in files.items() if v and os.path.isfile(v)}


def _read_resume(path: str | os.PathLike, cfg: TrainConfig) -> dict:
    """The checkpoint of an interrupted run of the same configuration.

    Raises:
        WakdError: missing, unreadable or foreign file, or a run made with other options (named).
    """
    if not os.path.isfile(path):
        raise WakdError(f"--resume {path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for unreadable or unsafe files
        raise WakdError(f"--resume {path}: not a readable weights-only checkpoint ({str(exc).splitlines()[0]})") \
            from None
    keys = ("model", "optimizer", "scheduler", "epoch", "hard_negatives", "config")
    if not isinstance(ck, dict) or any(k not in ck for k in keys):
        raise WakdError(f"--resume {path}: not a checkpoint of 'wakd train' / 'wakd distill' (expected entries "
                        f"{', '.join(keys)})")
    saved, now = ck["config"], {**cfg.record(), "arch_kwargs": cfg.arch_kwargs, "inputs": input_identity(cfg)}
    changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items()
               if k not in RESUMABLE_CHANGES and k in saved and saved[k] != v]
    if changed:
        raise WakdError(f"--resume {path}: the run was made with other options ({'; '.join(changed)}); resume with "
                        "the same options, or start over with --overwrite")
    return ck


def _read_steps(path: Path, before_epoch: int) -> list[dict]:
    """Rows of an interrupted run's ``steps.csv`` up to its last checkpoint."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = [{k: (int(v) if k in ("epoch", "step") else float(v)) for k, v in r.items()} for r in csv.DictReader(fh)]
    return [r for r in rows if r["epoch"] < before_epoch]


def _write_history(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


#: the ``wakd train`` command
run = train
