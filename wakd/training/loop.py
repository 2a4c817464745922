"""The training loop of ``wakd train`` and ``wakd distill`` (:mod:`wakd.stages.train` has the options and
what the loop does, step by step): mining, steps, validation, checkpoints, resume, generations, DDP."""


from __future__ import annotations

import contextlib
import copy
import csv
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from wakd.augment import Photometric
from wakd.data import load_dataset
from wakd.data.base import PlaceDataset
from wakd.data.loader import ImageList, decoded_images
from wakd.data.tuples import MiningSets, best_positive, difficult_positives, hardest, mining_sets, negative_pool
from wakd.device import autocast, prepare, resolve_device, resolve_precision, to_input
from wakd.features import calibrate_bn, describe_images
from wakd.losses import get_loss, region_hardest_negatives, region_soft_loss
from wakd.models.bn import wants_precise_bn
from wakd.models.build import build_embednet, fill_network
from wakd.models.regions import anchor_region_similarities, region_vlads
from wakd.models.weights import load_option_checkpoint, split_checkpoint
from wakd.progress import StepProgress
from wakd.provenance import input_identity, run_info
from wakd.recall import recall_rows
from wakd.rerank import Reranker
from wakd.search import knn
from wakd.stages.train import TrainConfig
from wakd.utils import WakdError, atomic_path, write_via_memory

log = logging.getLogger("wakd.stages.train")  # the command's logger name

RUN_INPUTS = ("clusters", "weights", "teacher", "init")  # files a resumed run must find unchanged
RERANK_K1, RERANK_LAMBDA = 20, 0.1  # OpenIBL update_sampler: re_ranking(k1=20, k2=1, lambda_value=0.1)


class RankingObjective:
    """The teacher's objective: a weakly supervised ranking loss on the tuples' descriptors, and from
    generation 1 on (``--generations``) SFRS's region-hardest negatives and soft loss.

    An objective maps a batch of tuples to a dict of scalar tensors whose ``"loss"`` is optimised;
    the other entries are logged (distillation adds its terms, :mod:`wakd.stages.distill`). A tuple
    is ``[query, positive, neg_num negatives, pos_num difficult positives]``.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.loss_fn, self.margin, self.temperature = get_loss(cfg.loss), cfg.margin, cfg.temperature
        self.neg_num, self.pos_num, self.layout = cfg.neg_num, cfg.pos_num, cfg.regions
        self.soft_weight, self.soft_temperatures = cfg.soft_weight, cfg.soft_temperatures
        self.generation, self.labels, self.generations = 0, None, cfg.generations

    def start_generation(self, generation: int, labels: torch.nn.Module | None) -> None:
        """From now on: generation ``generation``, soft labels from ``labels`` (eval mode, no gradients)."""
        self.generation, self.labels = generation, labels

    @property
    def uses_regions(self) -> bool:
        return self.generation > 0

    def ranking_loss(self, desc: torch.Tensor, b: int, t: int,
                     neg_regions: torch.Tensor | None = None) -> torch.Tensor:
        """The ranking loss of query, positive and negatives; ``neg_regions`` (``[b, neg_num, R, E]``):
        each negative compared by its region most similar to the query (generation >= 1)."""
        d = desc.float().view(b, t, -1)
        negs = d[:, 2:t - self.pos_num]
        if neg_regions is not None:
            negs = region_hardest_negatives(d[:, 0], neg_regions)
        return self.loss_fn(d[:, 0], d[:, 1], negs, self.margin, self.temperature)

    def soft_loss(self, x: torch.Tensor, regions: torch.Tensor, b: int, t: int, device: torch.device,
                  precision: str) -> torch.Tensor:
        """SFRS's soft loss: the anchor against every region of its difficult positives, labels from
        :attr:`labels` (``regions``: the student's ``[b*t, R, E]`` region descriptors of ``x``)."""
        rows = [0, *range(t - self.pos_num, t)]  # anchor, difficult positives
        r = regions.view(b, t, *regions.shape[1:])
        student = anchor_region_similarities(r[:, 0], r[:, rows[1:]])
        with torch.no_grad(), autocast(device, precision):
            xs = x.view(b, t, *x.shape[1:])[:, rows].flatten(0, 1)
            feats = self.labels.backbone(xs)
            lr = region_vlads(self.labels.pool, feats, self.layout).view(b, len(rows), -1, regions.shape[-1])
            labels = anchor_region_similarities(lr[:, 0], lr[:, 1:])
        g = self.generation
        return region_soft_loss(student, labels, self.soft_temperatures[0],
                                self.soft_temperatures[min(g, len(self.soft_temperatures) - 1)])

    def student_terms(self, net: torch.nn.Module, x: torch.Tensor, b: int, t: int, device: torch.device,
                      precision: str, features: bool = False,
                      clean: torch.Tensor | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
        """The network's outputs on ``x`` (with ``features``, or from generation 1 on: the dict of
        ``EmbedNet(..., return_features=True)``) and the loss terms of the ranking objective: ``hard``
        and, from generation 1 on with difficult positives, ``soft`` (weighted; the soft labels are of
        ``clean``, the images before augmentation, when given)."""
        with autocast(device, precision):
            out = net(x, return_features=True) if features or self.uses_regions else {"desc": net(x)}
        if not self.uses_regions:
            return out, {"hard": self.ranking_loss(out["desc"], b, t)}
        regions = region_vlads(getattr(net, "module", net).pool, out["features"], self.layout)  # [b*t, R, E]
        neg = regions.view(b, t, *regions.shape[1:])[:, 2:t - self.pos_num]
        terms = {"hard": self.ranking_loss(out["desc"], b, t, neg)}
        if self.pos_num and self.soft_weight and self.labels is not None:
            terms["soft_loss"] = self.soft_loss(x if clean is None else clean, regions, b, t, device, precision)
        return out, terms

    def __call__(self, net: torch.nn.Module, x: torch.Tensor, b: int, t: int, device: torch.device,
                 precision: str, ids: torch.Tensor | None = None,
                 clean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses of ``b`` tuples of ``t`` images each, ``x`` being their ``[b*t, 3, H, W]`` images (augmented),
        ``ids`` their keys (:class:`TupleImages`) and ``clean`` the images before augmentation."""
        _, terms = self.student_terms(net, x, b, t, device, precision, clean=clean)
        if self.generations == 1:
            return {"loss": terms["hard"]}
        soft = terms.get("soft_loss", torch.zeros((), device=terms["hard"].device))  # logged in every generation
        return {"loss": terms["hard"] + self.soft_weight * soft, "hard_loss": terms["hard"], "soft_loss": soft}


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
               cfg: TrainConfig, rng: np.random.Generator, device: torch.device,
               rerank: bool = False) -> list[np.ndarray]:
    """Refresh the cache for ``queries`` and return their tuples ``[q, best positive, negatives...,
    difficult positives...]`` (``cfg.pos_num`` of those; with ``rerank``, chosen by k-reciprocal
    re-ranking over every training query and database image, as SFRS does from generation 1 on)."""
    pools = {int(q): negative_pool(rng, ds.num_db, sets.non_negatives[q], cfg.neg_pool, hard_negs[q])
             for q in queries}
    if rerank:  # every image: re-ranking needs each one's neighbourhood
        need, q_rows = np.arange(ds.num_db), queries
        q_all = describe_images(model, ds.q_paths, device, desc="mining: queries", **_describe_options(cfg))
    else:
        need = np.unique(np.concatenate([sets.positives[q] for q in queries] + list(pools.values())))
        q_rows = np.arange(len(queries))
    db_desc = describe_images(model, [ds.db_paths[i] for i in need], device, desc="mining: database",
                              **_describe_options(cfg))
    if rerank:
        reranker = Reranker(np.concatenate([q_all, db_desc]), RERANK_K1, RERANK_LAMBDA)
        q_desc = q_all[q_rows]
    else:
        q_desc = describe_images(model, [ds.q_paths[i] for i in queries], device, desc="mining: queries",
                                 **_describe_options(cfg))
    row = {int(j): r for r, j in enumerate(need)}
    tuples = []
    for qd, q in zip(q_desc, queries):
        pos = sets.positives[q]
        pos_desc = db_desc[[row[int(j)] for j in pos]]
        p = best_positive(qd, pos, pos_desc)
        cand = pools[int(q)]
        negs = hardest(qd, cand, db_desc[[row[int(j)] for j in cand]], cfg.neg_num)
        hard_negs[q] = negs
        parts = [[q, p], negs]
        if cfg.pos_num:
            nearest = pos[np.lexsort((pos, -(pos_desc @ qd)))][:cfg.pos_pool]
            dist = reranker.distances(int(q), ds.num_queries + nearest) if rerank else None
            parts.append(difficult_positives(nearest, dist, cfg.pos_num))
        tuples.append(np.concatenate(parts).astype(np.int64))
    return tuples


def calibrate(model: torch.nn.Module, ds: PlaceDataset, cfg: TrainConfig, device: torch.device,
              draw: tuple[int, ...]) -> None:
    """Precise BN over ``cfg.precise_bn`` training images, the draw ``draw`` of :func:`precise_bn_paths`."""
    calibrate_bn(model, ds, cfg.precise_bn, cfg.seed, device, draw, batch_size=cfg.batch_size, workers=cfg.workers,
                 precision=cfg.precision, size=cfg.size)


def validate(model: torch.nn.Module, ds: PlaceDataset, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Recall@N (25 m rule) of all queries of the validation split, then R@1 per capture condition
    (``day_R@1``, ...) where the split records conditions."""
    db = describe_images(model, ds.db_paths, device, desc="validation: database", **_describe_options(cfg))
    q = describe_images(model, ds.q_paths, device, desc="validation: queries", **_describe_options(cfg))
    _, pred = knn(db, q, max(cfg.recall_values), device=str(device) if device.type == "cuda" else "cpu")
    rows = [r for r in recall_rows(pred, ds, "val", cfg.recall_values) if r["rule"] == "25m"]
    rec = {k: v for k, v in next(r for r in rows if r["condition"] == "all").items() if k.startswith("R@")}
    return rec | {f"{r['condition']}_R@1": r["R@1"] for r in rows if r["condition"] != "all"}


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


def _checkpoint(run: Run, epoch: int) -> dict:
    cfg = run.cfg
    return {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
            "epoch": epoch, "best_metric": run.best, "best_epoch": run.best_epoch,
            "hard_negatives": torch.from_numpy(run.hard_negs.copy()), "torch_rng": torch.get_rng_state(),
            "config": recorded_config(cfg),
            "provenance": run_info(cfg.record(), cfg.seed),
            "history": run.history, "generation": run.generation,
            **({"label_model": run.labels.state_dict()} if run.labels is not None else {})}


def _save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        write_via_memory(tmp, lambda buffer: torch.save(obj, buffer))  # a full disk: one line, not an abort


@dataclass(eq=False)
class Run:
    """One training run's context (fixed once set up) and progress (what a checkpoint restores).

    :func:`train` is the sequence of named steps below, each taking the run: set up the process,
    resolve the resume, load the splits, build model / optimiser / scheduler, restore, then per epoch
    train its chunks (mine, then step) and end it (precise BN, validation, checkpoints).
    """

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    out: Path
    state: Path
    ds: PlaceDataset | None = None
    val: PlaceDataset | None = None
    sets: MiningSets | None = None
    model: torch.nn.Module | None = None
    net: torch.nn.Module | None = None  # the model, wrapped in DDP when world > 1
    opt: torch.optim.Optimizer | None = None
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    precise_bn: bool = False
    fresh_bn: bool = False  # the BatchNorm statistics are those of the current weights
    hard_negs: np.ndarray | None = None
    start: int = 0  # the first epoch to train
    best: float = -math.inf
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    ck: dict | None = None  # the last checkpoint (the resumed one until an epoch ends)
    generation: int = 0
    init_state: dict | None = None  # the weights every generation starts from (--generations > 1)
    built_state: dict | None = None  # the network as built, before --init (--soft-labels initial)
    labels: torch.nn.Module | None = None  # the soft-label network of this generation (>= 1)
    augment: Photometric = field(default_factory=Photometric)  # of the training steps' images

    @property
    def separate(self) -> bool:
        """The resumable state is kept apart from the outputs (``--state-dir``)."""
        return self.state.resolve() != self.out.resolve()


def setup_process(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """Rank, world size and device; joins the process group under ``torchrun``."""
    rank, world = _dist_info()
    device = resolve_device(cfg.device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return rank, world, device


def resolve_resume(run: Run, resume: str | os.PathLike | None) -> tuple[str | os.PathLike | None, dict | None]:
    """The checkpoint to continue (``auto``: the interrupted run in ``--state-dir`` of these options and
    inputs, if there is one) and its contents; refuses to start over a finished run's outputs."""
    cfg, out, state, ck = run.cfg, run.out, run.state, None
    if str(resume) == "auto":
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
    if not resume and run.separate and run.rank == 0:
        _clear_state(state)  # a stale state must not be resumed after this run is killed
    return resume, ck


def load_splits(run: Run) -> None:
    """The training split and its mining sets; the validation split (rank 0), which needs positives."""
    cfg = run.cfg
    run.ds = load_dataset(cfg.dataset, cfg.split, cfg.root)
    run.val = load_dataset(cfg.dataset, cfg.val_split, cfg.root) if run.rank == 0 else None
    val = run.val
    if val is not None and not any(len(p) for p in val.positives()):
        raise WakdError(f"--val-split {cfg.val_split}: none of the {val.num_queries} queries of "
                        f"{val.source or cfg.dataset} has a database image within {val.pos_dist_thr:g} m; "
                        "validation needs queries with positives")
    run.sets = mining_sets(run.ds, cfg.neg_num, min_queries=cfg.tuples_per_batch * run.world)
    if cfg.query_balance == "condition" and run.ds.q_conditions is None:
        raise WakdError(f"--query-balance condition: {run.ds.source or cfg.dataset} records no capture condition "
                        "of its queries; expected --query-balance none")


def build_model(run: Run) -> None:
    """The network (seeded), on the device, with its optimiser, scheduler and an empty negative cache."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed)
    model = build_embednet(cfg.arch, cfg.num_clusters, clusters=cfg.clusters, weights=cfg.weights, **cfg.arch_kwargs)
    if cfg.generations > 1 and cfg.soft_labels == "initial":  # the WAKD script's model_cache: built, never loaded
        run.built_state = copy.deepcopy(model.state_dict())
    if cfg.init:
        load_init(model, cfg)
    run.precise_bn = wants_precise_bn(model, cfg.precise_bn, pretrained=bool(cfg.weights),
                                      what=f"{cfg.arch} network")
    # on the device before the optimiser exists: a resumed optimiser's state is placed on its parameters' device
    run.model = prepare(model, run.device)
    run.opt, run.sched = make_optimizer(cfg, run.model)
    if cfg.generations > 1:
        run.init_state = copy.deepcopy(run.model.state_dict())
    run.hard_negs = np.full((run.ds.num_queries, cfg.neg_num), -1, dtype=np.int64)
    run.augment = Photometric(tuple(cfg.jitter), cfg.relight, cfg.seed)


def load_init(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Start from the network of ``--init`` (every tensor of the model must come from it)."""
    state, config = split_checkpoint(load_option_checkpoint("--init", cfg.init), f"--init {cfg.init}")
    fill_network(model, state, config, f"--init {cfg.init}", f"a {cfg.arch} K={cfg.num_clusters} network")
    log.info("every generation starts from %s", cfg.init)


def start_generation(run: Run, generation: int, objective) -> None:
    """Enter ``generation``: from 1 on, the soft-label network becomes the current one as it ended
    (``--soft-labels previous``, SFRS) or the initial one (``initial``, the WAKD script), and the
    network restarts from the initial weights with a new optimiser and scheduler."""
    run.generation = generation
    if generation == 0:
        objective.start_generation(0, None)
        return
    label_state = run.model.state_dict() if run.cfg.soft_labels == "previous" else run.built_state
    set_labels(run, label_state, objective, calibrated=run.cfg.soft_labels == "previous" or bool(run.cfg.weights))
    run.model.load_state_dict(run.init_state)
    run.opt, run.sched = make_optimizer(run.cfg, run.model)
    run.fresh_bn = False
    log.info("generation %d: restarted from the initial weights, soft labels from the %s network", generation,
             run.cfg.soft_labels)


def set_labels(run: Run, state: dict, objective, calibrated: bool = True) -> None:
    """The frozen soft-label network of this generation (a copy of the model holding ``state``); one whose
    BatchNorm statistics are not those of its weights (the built network, trained from random weights) has
    them re-estimated first (precise BN), as every network used in eval mode here."""
    labels = copy.deepcopy(run.model)
    labels.load_state_dict(state)
    if not calibrated and run.precise_bn:
        calibrate(labels, run.ds, run.cfg, run.device, (run.generation, 1))
    labels.eval()
    for p in labels.parameters():
        p.requires_grad_(False)
    run.labels = labels
    objective.start_generation(run.generation, labels)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer,
                                                                      torch.optim.lr_scheduler.StepLR]:
    """SGD (momentum) or Adam over the trainable parameters, with step decay every ``lr_step`` epochs."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise WakdError(f"--optimizer {cfg.optimizer!r}: expected sgd or adam")
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


def restore(run: Run, ck: dict, resume: str | os.PathLike) -> None:
    """Continue from an interrupted run's checkpoint: weights, optimiser, scheduler, cache, history."""
    cfg = run.cfg
    fill_network(run.model, ck["model"], ck["config"], f"--resume {resume}", f"a {cfg.arch} K={cfg.num_clusters} "
                 "network", exact=True)
    run.opt.load_state_dict(ck["optimizer"])
    run.sched.load_state_dict(ck["scheduler"])
    run.start, run.best, run.best_epoch = ck["epoch"] + 1, ck["best_metric"], ck["best_epoch"]
    run.hard_negs, run.history = ck["hard_negatives"].numpy().copy(), ck["history"]
    run.steps = _read_steps(Path(resume).parent / "steps.csv", before_epoch=run.start)
    run.generation = ck.get("generation", 0)
    run.ck = ck
    log.info("resumed from %s at epoch %d", resume, run.start)


def prepare_outputs(run: Run, resume: str | os.PathLike | None) -> None:
    """Create the output and state folders (rank 0); put back a resumed run's ``model_best`` when a
    failure deleted the outputs (Snakemake does) but the state kept it."""
    if run.rank != 0:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    run.state.mkdir(parents=True, exist_ok=True)
    kept_best = Path(resume).parent / "model_best.pth.tar" if resume else None
    if kept_best is not None and kept_best.exists() and not (run.out / "model_best.pth.tar").exists():
        with atomic_path(run.out / "model_best.pth.tar") as tmp:
            shutil.copy2(kept_best, tmp)


def epoch_queries(run: Run, epoch: int) -> tuple[np.ndarray, np.random.Generator]:
    """This rank's share of the epoch's queries (seeded by ``(seed, epoch)``) and the epoch's generator.

    Every rank gets the same number of queries, so that every rank runs the same number of steps."""
    cfg = run.cfg
    rng = _seed_epoch(cfg.seed, epoch)
    queries = rng.permutation(run.sets.queries)
    if cfg.query_balance == "condition":  # each condition equally likely: weights 1 / its count of usable queries
        conds = np.asarray(run.ds.q_conditions)[run.sets.queries]
        _, inverse, counts = np.unique(conds, return_inverse=True, return_counts=True)
        weight = 1.0 / counts[inverse]
        n = min(cfg.queries_per_epoch or len(queries), len(queries))
        queries = rng.choice(run.sets.queries, size=n, replace=False, p=weight / weight.sum())
    queries = queries[:cfg.queries_per_epoch]
    return queries[:len(queries) // run.world * run.world][run.rank::run.world], rng


def train_chunk(run: Run, epoch: int, chunk: np.ndarray, c0: int, rng: np.random.Generator, step_losses: Callable,
                workers: int, terms: dict[str, list[float]], progress: StepProgress) -> tuple[float, float]:
    """Mine the tuples of the queries ``chunk`` with the current model, then train on them in whole batches;
    returns the seconds spent mining and training. Each step's loss terms are appended to ``terms``."""
    cfg, model, device = run.cfg, run.model, run.device
    t0 = time.perf_counter()
    if run.precise_bn and not run.fresh_bn:
        calibrate(model, run.ds, cfg, device, (epoch, c0))
    run.fresh_bn = False
    tuples = mine_chunk(model, run.ds, chunk, run.sets, run.hard_negs, cfg, rng, device,
                        rerank=run.generation > 0 and cfg.pos_num > 0)
    t1 = time.perf_counter()
    order = rng.permutation(len(tuples))
    order = order[:len(order) // cfg.tuples_per_batch * cfg.tuples_per_batch]  # whole batches only
    loader = DataLoader(TupleImages([tuples[i] for i in order], run.ds, cfg.size), batch_size=cfg.tuples_per_batch,
                        num_workers=workers, pin_memory=device.type == "cuda")
    run.net.train()
    for x, ids in loader:
        b, t = x.shape[:2]
        x = to_input(x.flatten(0, 1), device)
        step = len(terms.get("loss", ()))
        parts = step_losses(run.net, run.augment(x, (epoch, step, run.rank)), b, t, device, cfg.precision,
                            ids=ids.flatten(), clean=x)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise WakdError(f"loss became {loss.item()} at epoch {epoch}; stopped, {_kept(run.out)} (try a lower --lr)")
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        values = {k: v.item() for k, v in parts.items()}
        progress.update(values["loss"])
        for k, v in values.items():
            terms.setdefault(k, []).append(v)
        if run.rank == 0:
            run.steps.append({"epoch": epoch, "step": len(terms["loss"]) - 1, **values})
    return t1 - t0, time.perf_counter() - t1


def train_epoch(run: Run, epoch: int, step_losses: Callable, workers: int) -> tuple[dict[str, float], np.ndarray,
                                                                                     float, float]:
    """Train one epoch, chunk by chunk; returns the mean loss terms (over every rank), the rank's queries and
    the seconds spent mining and training."""
    cfg = run.cfg
    queries, rng = epoch_queries(run, epoch)
    t_cache = t_train = 0.0
    terms: dict[str, list[float]] = {}
    chunks = range(0, len(queries), cfg.cache_size)
    steps = sum(len(queries[c0:c0 + cfg.cache_size]) // cfg.tuples_per_batch for c0 in chunks)
    progress = StepProgress(steps, f"epoch {epoch + 1}/{cfg.total_epochs} train", enabled=run.rank == 0)
    for c0 in chunks:
        dt_cache, dt_train = train_chunk(run, epoch, queries[c0:c0 + cfg.cache_size], c0, rng, step_losses, workers,
                                         terms, progress)
        t_cache, t_train = t_cache + dt_cache, t_train + dt_train
    progress.close()
    run.sched.step()
    means = {k: float(np.mean(v)) for k, v in terms.items()} or {"loss": float("nan")}
    if run.world > 1:
        stat = torch.tensor(list(means.values()), device=run.device, dtype=torch.float64)
        dist.all_reduce(stat)
        means = dict(zip(means, (stat / run.world).tolist()))
        run.hard_negs = _merge_cache(run.hard_negs, queries, run.device)
    return means, queries, t_cache, t_train


def _eta(run: Run, epoch: int) -> str:
    """``, run ETA ...`` from the mean time of the epochs trained in this process (none left: empty)."""
    left = run.cfg.total_epochs - epoch - 1
    done = run.history[-(epoch - run.start + 1):]
    spent = sum(r["cache_seconds"] + r["train_seconds"] + r["val_seconds"] for r in done)
    return f", run ETA {spent / len(done) * left / 60:.1f} min" if left and done else ""


def end_epoch(run: Run, epoch: int, means: dict[str, float], n_queries: int, t_cache: float,
              t_train: float) -> None:
    """Rank 0: precise BN of the epoch's final weights, validation, a ``history.csv`` row, the checkpoints
    (``model_best`` when the selection metric improved), the resumable state first when kept apart."""
    cfg = run.cfg
    if run.rank == 0:
        t0 = time.perf_counter()
        if run.precise_bn:  # also what the checkpoints below hold: statistics of the epoch's final weights
            calibrate(run.model, run.ds, cfg, run.device, (epoch, n_queries))
            run.fresh_bn = run.world == 1
        rec = validate(run.model, run.val, cfg, run.device)
        t_val = time.perf_counter() - t0
        row = {"epoch": epoch, "generation": run.generation, **means, "lr": run.opt.param_groups[0]["lr"], **rec,
               "cache_seconds": round(t_cache, 2), "train_seconds": round(t_train, 2), "val_seconds": round(t_val, 2),
               "cache_share": round(t_cache / max(t_cache + t_train, 1e-9), 3)}
        run.history.append(row)
        recalls = " ".join(f"{k.replace('_', ' ')} {100 * v:.1f}" for k, v in rec.items())
        log.info("epoch %d/%d%s: loss %.4f, val %s, cache %.0f%% of %.0f s%s", epoch + 1, cfg.total_epochs,
                 f" (generation {run.generation})" if cfg.generations > 1 else "", means["loss"], recalls,
                 100 * row["cache_share"], t_cache + t_train, _eta(run, epoch))
        if rec[cfg.select_metric] > run.best:
            run.best, run.best_epoch = rec[cfg.select_metric], epoch
        run.ck = _checkpoint(run, epoch)
        if run.separate:  # the resumable state first (its checkpoint last: it marks the state complete)
            if run.best_epoch == epoch:
                _save(run.ck, run.state / "model_best.pth.tar")
            _write_history(run.state / "steps.csv", run.steps)
            _save(run.ck, run.state / "checkpoint.pth.tar")
        _write_outputs(run.out, run.ck, run.history, run.steps, run.best_epoch == epoch)
    if run.world > 1:
        dist.barrier()


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
    rank, world, device = setup_process(cfg)
    run = Run(cfg, rank, world, device, Path(cfg.out_dir), Path(cfg.state_dir or cfg.out_dir))
    resume, ck = resolve_resume(run, resume or cfg.resume)
    load_splits(run)
    build_model(run)
    if ck is not None:
        restore(run, ck, resume)
    # one process: `auto` timed for this network (every rank of a DDP run must agree: there, by the device)
    cfg.precision = resolve_precision(device, cfg.precision, model=run.model if world == 1 else None, size=cfg.size,
                                      train=True)
    run.net = torch.nn.parallel.DistributedDataParallel(
        run.model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else run.model
    prepare_outputs(run, resume)
    # every image of the two splits decoded once, if they fit in --image-cache-gb (fixed --size only)
    with decoded_images(cfg.image_cache_gb, image_bytes(cfg.size, run.ds, run.val)) as in_memory:
        if in_memory:
            log.info("training and validation images kept decoded in memory")
        step_losses = objective(device, run.ds) if objective is not None else RankingObjective(cfg)
        # BatchNorm statistics of the current weights: precise BN ends every epoch (before validation, so the
        # checkpoints hold them) and the weights do not change until the next epoch trains, so its first
        # mining uses them as they are; a resumed run starts from a checkpoint's. In DDP only rank 0
        # validates, so there every mining re-estimates them (the same on every rank).
        run.fresh_bn = ck is not None and world == 1
        resume_generation(run, step_losses)
        for epoch in range(run.start, cfg.total_epochs):
            generation, within = cfg.generation_of(epoch)
            if within == 0:
                start_generation(run, generation, step_losses)
            means, queries, t_cache, t_train = train_epoch(run, epoch, step_losses, 0 if in_memory else cfg.workers)
            end_epoch(run, epoch, means, len(queries), t_cache, t_train)
    finish(run)
    return run.history[-1] if run.history else {}


def resume_generation(run: Run, objective) -> None:
    """A run resumed inside generation >= 1 takes that generation's soft-label network from its checkpoint."""
    if run.ck is None or run.start >= run.cfg.total_epochs:
        return
    generation, within = run.cfg.generation_of(run.start)
    run.generation = generation
    if within and generation and "label_model" in run.ck:
        set_labels(run, run.ck["label_model"], objective)


def finish(run: Run) -> None:
    """Leave the process group; rank 0 rewrites the outputs of a resumed run that had nothing left to train
    and removes the resumable state kept apart (the outputs hold everything)."""
    if run.world > 1:
        dist.destroy_process_group()
    if run.rank == 0 and run.ck is not None and run.start >= run.cfg.total_epochs:
        _write_outputs(run.out, run.ck, run.history, run.steps, run.best_epoch == run.ck["epoch"])
    if run.rank == 0 and run.separate:
        _clear_state(run.state)


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


def recorded_config(cfg: TrainConfig) -> dict:
    """What a checkpoint records of its run's options (and a resume compares): the options, the backbone's
    options and the identity of the input files."""
    return {**cfg.record(), "arch_kwargs": cfg.arch_kwargs, "inputs": input_identity(cfg, RUN_INPUTS)}


def _read_resume(path: str | os.PathLike, cfg: TrainConfig) -> dict:
    """The checkpoint of an interrupted run of the same configuration.

    Raises:
        WakdError: missing, unreadable or foreign file, or a run made with other options (named).
    """
    ck = load_option_checkpoint("--resume", path)
    keys = ("model", "optimizer", "scheduler", "epoch", "hard_negatives", "config")
    if not isinstance(ck, dict) or any(k not in ck for k in keys):
        raise WakdError(f"--resume {path}: not a checkpoint of 'wakd train' / 'wakd distill' (expected entries "
                        f"{', '.join(keys)})")
    saved, now = ck["config"], recorded_config(cfg)
    # with generations, --epochs places the generations' boundaries: it may not change either
    free = RESUMABLE_CHANGES - ({"epochs"} if cfg.generations > 1 else set())
    changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in now.items()
               if k not in free and k in saved and saved[k] != v]
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
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in history for k in row)), restval="")
        w.writeheader()
        w.writerows(history)


