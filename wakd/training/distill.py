"""The distillation objective of ``wakd distill`` (:mod:`wakd.stages.distill` has the options and the
loss): Gram terms, attention maps, the teacher cache, ``kd_rank`` (ours) and the loop's call."""

from __future__ import annotations

import logging
import os
import time

import torch
import torch.nn.functional as F

from wakd.data.base import PlaceDataset
from wakd.data.loader import ImageList
from wakd.device import autocast, prepare
from wakd.features import iter_images
from wakd.losses import tuple_scores
from wakd.models.attention import attention_map
from wakd.models.build import network_from_checkpoint
from wakd.models.netvlad import EmbedNet
from wakd.stages.distill import GRAM_FORMS, KD_TERMS, DistillConfig
from wakd.training.loop import RankingObjective, train
from wakd.utils import WakdError

log = logging.getLogger("wakd.stages.distill")  # the command's logger name


SOFT_TEMPERATURE = 0.07  # of the soft ranking term when the ranking loss has no temperature


def gram(x: torch.Tensor, form: str = "rownorm", tuple_size: int | None = None) -> torch.Tensor:
    """``[B, B]`` similarity matrix of the ``[B, ...]`` batch ``X`` (rows flattened); with ``tuple_size`` t,
    ``[B/t, t, t]``: one matrix per tuple of ``t`` consecutive rows (``--gram-scope tuple``).

    ``rownorm``: ``X Xᵀ`` with each row L2-normalised (the WAKD code). ``cosine``: ``X̂ X̂ᵀ`` with
    ``X̂`` = X with unit-norm rows. A zero row of X (e.g. an all-zero attention map) gives a zero
    row (and, for ``cosine``, column).
    """
    x = x.flatten(1).float()
    if tuple_size is not None:
        x = x.view(-1, tuple_size, x.shape[1])
    if form == "rownorm":
        return F.normalize(x @ x.transpose(-2, -1), dim=-1)
    if form == "cosine":
        x = F.normalize(x, dim=-1)
        return x @ x.transpose(-2, -1)
    raise WakdError(f"--gram {form!r}: expected one of {', '.join(GRAM_FORMS)}")


def kd_terms(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
             form: str = "rownorm", tuple_size: int | None = None) -> dict[str, torch.Tensor]:
    """``kd_vlad`` and ``kd_att`` between two ``EmbedNet(..., return_features=True)`` outputs of one batch
    (the teacher's may carry its attention maps as ``att`` instead of its ``features``).

    ``tuple_size`` None: one Gram matrix over the whole batch (``--gram-scope batch``); ``t``: one per
    tuple of ``t`` consecutive images, the MSE averaged over all tuples' entries (``--gram-scope tuple``,
    the authors' scope: their 9x9 matrices are one tuple per process)."""
    att_s = attention_map(student["features"])
    att_t = teacher["att"] if "att" in teacher else attention_map(teacher["features"])

    def mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(gram(s, form, tuple_size), gram(t, form, tuple_size))

    return {"kd_vlad": mse(student["vlad_intra"], teacher["vlad_intra"]), "kd_att": mse(att_s, att_t)}


def soft_ranking_kd(student: torch.Tensor, teacher: torch.Tensor, b: int, t: int,
                    temperature: float = 0.07) -> torch.Tensor:
    """KL(teacher || student) of each tuple's softmax over its candidates' similarities to the query.

    ``student`` / ``teacher`` are ``[b*t, D]`` descriptors of ``b`` tuples (query, then ``t-1``
    candidates: positive and negatives); similarities are dot products / ``temperature``. This term
    is ours: it borrows the form of SFRS's soft cross-entropy, but SFRS and the WAKD script compute
    theirs on region-level similarities of difficult positives, with a previous generation (or the
    initial network) as the soft-label model, not the frozen teacher on global descriptors. It
    passes on the teacher's *ranking* of the candidates, which the batch Gram terms barely see
    (their values are dominated by the common level of all similarities).
    """
    def logits(d: torch.Tensor) -> torch.Tensor:
        d = d.float().view(b, t, -1)
        return torch.cat(tuple_scores(d[:, 0], d[:, 1], d[:, 2:], temperature), 1)  # the SARE losses' scores

    target = logits(teacher).softmax(dim=1).detach()
    return F.kl_div(logits(student).log_softmax(dim=1), target, reduction="batchmean")


def gradient_shares(terms: dict[str, torch.Tensor], wrt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each term's share of the summed gradient norms with respect to ``wrt`` (``gshare_<name>``).

    The graph is kept for the optimiser's backward pass; nothing is accumulated into ``.grad``.
    """
    if not wrt.requires_grad:
        return {}
    norms = {}
    for name, term in terms.items():
        if not term.requires_grad:
            norms[name] = torch.zeros((), device=wrt.device)
            continue
        (g,) = torch.autograd.grad(term, wrt, retain_graph=True, allow_unused=True)
        norms[name] = torch.zeros((), device=wrt.device) if g is None else g.float().norm()
    total = sum(norms.values()).clamp_min(1e-30)
    return {f"gshare_{k}": (v / total).detach() for k, v in norms.items()}


def load_teacher(path: str | os.PathLike, arch: str | None = None, num_clusters: int | None = None,
                 arch_kwargs: dict | None = None) -> EmbedNet:
    """The frozen teacher (``eval()``, no gradients) from a ``wakd train`` or OpenIBL checkpoint.

    A wakd checkpoint records its architecture; other checkpoints need ``arch`` and ``num_clusters``.
    Every tensor of the model must come from the file: a partly loaded teacher is refused.
    """
    model, _ = network_from_checkpoint(path, flag="--teacher", arch=arch, num_clusters=num_clusters,
                                       arch_kwargs=arch_kwargs, missing=" (train the teacher first: wakd train)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    log.info("teacher loaded from %s (%d-d descriptors)", path, model.out_dim)
    return model


class TeacherRows(torch.nn.Module):
    """The teacher's outputs that the KD terms use, as one float32 row per image: descriptor,
    intra-normalised NetVLAD residuals, attention map (:meth:`TeacherCache.split` undoes it)."""

    def __init__(self, teacher: EmbedNet) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.teacher(x, return_features=True)
        return torch.cat([out["desc"].float(), out["vlad_intra"].float(), attention_map(out["features"])], dim=1)


class TeacherCache:
    """Every training image's teacher outputs, computed once before training.

    The teacher is frozen and in eval mode, so an image's outputs never change: a step looks up
    the rows of its images (query ``q`` is row ``q``, database image ``j`` row ``num_queries + j``,
    the keys :class:`wakd.stages.train.TupleImages` gives) instead of running the teacher on
    ``tuples_per_batch * (2 + neg_num)`` images. The rows are computed in fixed batches in a fixed
    order, so a resumed run looks up the same values as an uninterrupted one.
    """

    def __init__(self, rows: torch.Tensor, dims: tuple[int, int, int]) -> None:
        self.rows, self.dims = rows, dims

    @classmethod
    def build(cls, teacher: EmbedNet, ds: PlaceDataset, cfg: DistillConfig,
              device: torch.device) -> TeacherCache | None:
        """The cache of ``ds``'s images, or None when it would need more than ``cfg.teacher_cache_gb``."""
        paths = list(ds.q_paths) + list(ds.db_paths)
        first = ImageList(paths[:1], cfg.size)[0][0][None]
        with torch.no_grad():
            out = prepare(teacher, torch.device("cpu"))(first.contiguous(memory_format=torch.channels_last),
                                                         return_features=True)
        dims = (out["desc"].shape[1], out["vlad_intra"].shape[1], out["features"][0, 0].numel())
        need = len(paths) * sum(dims) * 4
        if need > cfg.teacher_cache_gb * 2**30:
            log.info("teacher outputs of %d images need %.1f GiB > --teacher-cache-gb %g: the teacher runs every step",
                     len(paths), need / 2**30, cfg.teacher_cache_gb)
            return None
        t0 = time.perf_counter()
        rows = torch.empty((len(paths), sum(dims)), dtype=torch.float32, device=device)  # filled batch by batch
        for idx, y in iter_images(lambda y: y, TeacherRows(teacher), paths, device, batch_size=cfg.batch_size,
                                  workers=cfg.workers, precision=cfg.precision, size=cfg.size, desc="teacher"):
            rows[idx[0]:idx[-1] + 1] = torch.from_numpy(y).to(device)
        teacher.cpu().eval()  # the rows replace it in training: it need not hold device memory
        log.info("teacher outputs of %d training images cached (%.0f MiB) in %.1f s", len(paths), need / 2**20,
                 time.perf_counter() - t0)
        return cls(rows, dims)

    def lookup(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's ``desc``, ``vlad_intra`` and ``att`` of the images ``ids``."""
        desc, intra, att = self.rows[ids.to(self.rows.device)].split(self.dims, dim=1)
        return {"desc": desc, "vlad_intra": intra, "att": att}


class DistillObjective(RankingObjective):
    """Per-batch WAKD objective: the student's ranking loss plus ``kd_weight`` times the KD terms.

    With a :class:`TeacherCache` the teacher's outputs are looked up by the batch's image keys;
    without one (or without keys) the teacher runs on the batch. Either way the teacher describes the
    images as decoded: with ``--jitter`` / ``--relight`` only the student sees the augmented ones, and is
    taught to describe a relit image as the teacher describes the original (ours; the cached and the
    uncached teacher agree).
    """

    def __init__(self, cfg: DistillConfig, teacher: EmbedNet, device: torch.device,
                 cache: TeacherCache | None = None) -> None:
        super().__init__(cfg)
        self.form, self.rank_weight, self.gram_scope = cfg.gram, cfg.rank_weight, cfg.gram_scope
        self.gram_weights = {f"kd_{t}": cfg.kd_weight if t in cfg.kd_terms else 0.0 for t in KD_TERMS}
        self.soft_temperature = cfg.temperature or SOFT_TEMPERATURE
        # with the cache the teacher never runs in training: it stays where it is (the CPU) until asked
        self.teacher, self.cache = (teacher if cache is not None else prepare(teacher, device)).eval(), cache

    def __call__(self, net: torch.nn.Module, x: torch.Tensor, b: int, t: int, device: torch.device,
                 precision: str, ids: torch.Tensor | None = None,
                 clean: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        s, terms = self.student_terms(net, x, b, t, device, precision, features=True, clean=clean)
        if self.cache is not None and ids is not None:
            tch = self.cache.lookup(ids)
        else:
            with torch.no_grad(), autocast(device, precision):
                tch = prepare(self.teacher, device)(x if clean is None else clean, return_features=True)
        hard = terms["hard"]
        rows = gram_rows(t, self.pos_num, self.gram_scope)
        kd = kd_terms(pick_rows(s, rows, b, t), pick_rows(tch, rows, b, t), self.form,
                      (len(rows) if rows else t) if self.gram_scope == "tuple" else None)
        easy = t - self.pos_num  # kd_rank ranks the query's positive and negatives
        kd["kd_rank"] = soft_ranking_kd(_rows(s["desc"], b, t, easy), _rows(tch["desc"], b, t, easy), b, easy,
                                        self.soft_temperature)
        weights = {**self.gram_weights, "kd_rank": self.rank_weight}
        # a term of weight 0 is logged, but kept out of the graph (no gradient to take for its share)
        weighted = {"hard": hard, **{k: w * kd[k] if w else kd[k].detach() * 0.0 for k, w in weights.items()}}
        soft = {}
        if self.generations > 1:  # SFRS's soft loss on region similarities, from generation 1 on
            soft["soft_loss"] = terms.get("soft_loss", torch.zeros((), device=hard.device))  # 0 in generation 0
            weighted["soft"] = self.soft_weight * soft["soft_loss"]
        return {"loss": sum(weighted.values()), "hard_loss": hard, **soft, **kd,
                **gradient_shares(weighted, s["features"])}


def gram_rows(t: int, pos_num: int, scope: str) -> list[int] | None:
    """Rows of a tuple of ``t`` images (the last ``pos_num`` its difficult positives) that the Gram terms
    see: None = all (``batch`` scope, or tuples without difficult positives); at ``tuple`` scope with
    difficult positives, the authors' 9 images of a tuple: query, positive, negatives, the query again,
    the difficult positives (their ``inputs_easy`` then ``inputs_diff``)."""
    easy = t - pos_num
    if scope != "tuple" or t == easy:
        return None
    return [*range(easy), 0, *range(easy, t)]


def _rows(x: torch.Tensor, b: int, t: int, n: int) -> torch.Tensor:
    """The first ``n`` images of each of the ``b`` tuples of ``t`` images in ``x`` (``[b*t, ...]``)."""
    return x.view(b, t, *x.shape[1:])[:, :n].flatten(0, 1)


def pick_rows(out: dict[str, torch.Tensor], rows: list[int] | None, b: int, t: int) -> dict[str, torch.Tensor]:
    """``out``'s tensors with each tuple's images reduced / repeated to ``rows`` (None: unchanged)."""
    if rows is None:
        return out
    idx = torch.tensor(rows, device=next(iter(out.values())).device)
    return {k: v.view(b, t, *v.shape[1:])[:, idx].flatten(0, 1) for k, v in out.items() if k != "desc"}


def distill(cfg: DistillConfig, resume: str | os.PathLike | None = None) -> dict:
    """Train the student of ``cfg`` against the frozen teacher ``cfg.teacher``; see :func:`wakd.stages.train.train`."""
    teacher = load_teacher(cfg.teacher, cfg.teacher_arch, cfg.teacher_num_clusters, cfg.teacher_arch_kwargs)

    def objective(device: torch.device, ds: PlaceDataset) -> DistillObjective:
        return DistillObjective(cfg, teacher, device, TeacherCache.build(teacher, ds, cfg, device))

    return train(cfg, resume=resume, objective=objective)


