"""``wakd train``: weakly supervised training of backbone + NetVLAD from GPS alone.

One loop serves the teacher here and the student later (distillation plugs in its own loss):

* each epoch shuffles the usable training queries (seeded by ``(seed, epoch)``) and walks them in
  chunks of ``cache_size``; before each chunk the current model re-describes what the chunk needs
  and mines tuples (:mod:`wakd.data.tuples`): 1 query, its best positive, ``neg_num`` hard negatives;
* a network trained from random weights has its BatchNorm statistics re-estimated (precise BN,
  :mod:`wakd.models.bn`) before each validation and each re-mining after training steps (an epoch's
  first mining uses the statistics its previous epoch ended with), so eval mode describes what
  training optimised (and the checkpoints hold those statistics);
* with ``--query-balance condition`` the epoch's queries are drawn with each capture condition equally
  likely instead of uniformly;
* ``--jitter`` / ``--relight`` augment the images of each training step (:mod:`wakd.augment`), on the
  step's device, drawn per image from ``(seed, epoch, step, rank)``: mining, validation and the saved
  networks' BatchNorm statistics see the images as decoded;
* batches of ``tuples_per_batch`` tuples are trained with a ranking loss (:mod:`wakd.losses`),
  SGD (lr 0.001, momentum 0.9, weight decay 0.001, step decay) or Adam, under the chosen autocast;
* after each epoch, Recall@N on the validation split selects ``model_best`` (by R@5 by default) and
  a row is added to ``history.csv`` (loss, recalls, time spent refreshing the cache, training,
  validating);
* checkpoints are plain state dicts (read back by :func:`wakd.models.weights.load_trusted`), written
  atomically each epoch with model, optimiser, scheduler, epoch, RNG state and the hard-negative cache, so
  ``resume`` continues an interrupted run and reaches the same result (bitwise on CPU);
* with ``--generations G`` (SFRS; the WAKD script), every generation restarts from the initial
  weights (``--init``) with a new optimiser; from generation 1 on, tuples carry ``--pos-num``
  difficult positives chosen by k-reciprocal re-ranking (:mod:`wakd.rerank`), negatives enter the
  ranking loss by their hardest region and a soft cross-entropy on region similarities
  (:mod:`wakd.models.regions`) to a frozen soft-label network (the previous generation, or the
  initial network) is added; checkpoints hold the generation and that network;
* under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel (nccl on
  GPU, gloo on CPU), each rank mines its own share of the queries, the ranks' hard-negative caches
  are merged after each epoch (so a checkpoint holds all of them), only rank 0 validates and
  writes; checkpoints hold the unwrapped model's state.
"""

from __future__ import annotations

from dataclasses import dataclass

from wakd.loss_names import LOSS_NAMES, check_loss_options
from wakd.models import PRECISE_BN_IMAGES as DEFAULT_IMAGES
from wakd.models import REGION_LAYOUTS
from wakd.options import NetOptions, RunOptions, TrainSplit, option
from wakd.recall import RECALL_VALUES
from wakd.utils import WakdError

SOFT_LABELS = ("previous", "initial")
QUERY_BALANCES = ("none", "condition")
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

    out_dir: str = option(help="run folder (checkpoints, history)", path="dir")
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
    generations: int = option(1, "generations (SFRS): each restarts from the initial weights (--init, or the built "
                                 "network) with a new optimiser; from generation 1 on, difficult positives are "
                                 "re-ranked (k-reciprocal), negatives compared by their hardest region, and the soft "
                                 "loss on region similarities is added", low=1)
    first_generation_epochs: int = option(1, "epochs of generation 0 when --generations > 1 (the authors' scripts: 1, "
                                             "the last epoch of a generation); later generations run --epochs",
                                          low=1)
    init: str | None = option(None, "checkpoint (wakd train / distill) whose network every generation starts from "
                                    "(the WAKD script's --resume: a student trained without KD)", path="in")
    soft_labels: str = option("previous", "network giving the soft labels of generation g >= 1: previous = generation "
                                          "g-1 as it ended (OpenIBL's SFRS), initial = the network as built (--weights "
                                          "+ k-means NetVLAD, not --init), never refreshed (the WAKD script as "
                                          "released)", choices=SOFT_LABELS)
    pos_num: int = option(0, "difficult positives per tuple for the soft loss (the authors: 3 for WAKD, 10 for SFRS; "
                             "0: none, tuples of query, positive, negatives)", low=0)
    pos_pool: int = option(20, "nearest positives the difficult ones are chosen from", low=1)
    regions: str = option("sfrs", "regions of the soft loss and of the region-hardest negatives: sfrs = whole + 4 "
                                  "halves + 4 quarters of a 2x2 grid (9), wakd = whole + 3 horizontal + 3 vertical "
                                  "strips of a 3x3 grid (7)", choices=REGION_LAYOUTS)
    soft_weight: float = option(0.5, "weight of the soft loss from generation 1 on (SFRS, WAKD: 0.5)", low=0)
    soft_temperatures: tuple[float, ...] = option((0.07, 0.07, 0.06, 0.05), "temperatures of the soft loss: the "
                                                  "student's logits use the first, generation g's labels the g-th "
                                                  "(the last for later generations)", low=0)
    jitter: tuple[float, ...] = option((0.0, 0.0, 0.0, 0.0), "colour jitter of the training step's images, drawn "
                                       "per image: BRIGHTNESS CONTRAST SATURATION HUE (CosPlace: 0.7 0.7 0.7 0.5; "
                                       "zeros: off); never in mining, validation or extraction", low=0,
                                       metavar="V")
    relight: float = option(0.0, "probability that a training step's image is relit as another light would show "
                                 "it: exposure down to 0.04 in linear light, a colour tint, sensor noise (ours; "
                                 "0: off); never in mining, validation or extraction", low=0, metavar="P")
    query_balance: str = option("none", "how each epoch's queries are drawn: none = uniformly, condition = every "
                                        "capture condition (day, sunset, night) equally often (datasets that "
                                        "record conditions)", choices=QUERY_BALANCES)
    select_metric: str = option("R@5", "validation metric choosing model_best",
                                choices=tuple(f"R@{n}" for n in RECALL_VALUES))
    threads: int | None = option(None, "torch threads (set from the Snakemake rule)", low=1)
    recall_values: tuple[int, ...] = option(RECALL_VALUES, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature == 0:
            self.temperature = None
        check_loss_options(self.loss, self.margin, self.temperature)
        if self.neg_pool < self.neg_num:
            raise WakdError(f"--neg-pool {self.neg_pool}: fewer random candidates than --neg-num {self.neg_num} hard "
                            "negatives to keep; expected --neg-pool >= --neg-num")
        if not self.soft_temperatures or min(self.soft_temperatures) <= 0:
            raise WakdError(f"--soft-temperatures {' '.join(map(str, self.soft_temperatures))}: expected positive "
                            "numbers")
        if len(self.jitter) != 4 or self.jitter[3] > 0.5:
            raise WakdError(f"--jitter {' '.join(map(str, self.jitter))}: expected 4 values, brightness contrast "
                            "saturation hue, each >= 0, hue <= 0.5")
        if self.relight > 1:
            raise WakdError(f"--relight {self.relight}: expected a probability in [0, 1]")
        if self.generations > 1 and self.soft_weight > 0 and self.pos_num == 0:
            raise WakdError(f"--generations {self.generations}: the soft loss of generations 1.. needs difficult "
                            "positives: give --pos-num (the authors: 3), or --soft-weight 0")

    @property
    def total_epochs(self) -> int:
        """Epochs over all generations."""
        return self.epochs if self.generations == 1 else self.first_generation_epochs + (self.generations - 1) * \
            self.epochs

    def generation_of(self, epoch: int) -> tuple[int, int]:
        """(generation, epoch within it) of the run's ``epoch``."""
        if self.generations == 1 or epoch < self.first_generation_epochs:
            return 0, epoch
        g, e = divmod(epoch - self.first_generation_epochs, self.epochs)
        return g + 1, e


def run(cfg: TrainConfig) -> dict:
    """The ``wakd train`` command: :func:`wakd.training.loop.train` (imported here, so that parsing the
    options, e.g. the pipeline's planning check, does not import torch)."""
    from wakd.training.loop import train

    return train(cfg)


def __getattr__(name: str):
    """The training loop's names (:mod:`wakd.training.loop`: ``train``, ``Run``, ``RankingObjective``,
    ...), imported when first asked for."""
    if name.startswith("__"):
        raise AttributeError(name)
    from wakd.training import loop

    try:
        return getattr(loop, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
