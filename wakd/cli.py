"""The ``wakd`` command: one entry point with argparse subcommands, called by every Snakemake rule.

Each subcommand turns its options into explicit, typed arguments of a library function; no
argparse namespace goes deeper than this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from wakd import __version__
from wakd.utils import WakdError, atomic_path, setup_logging

log = logging.getLogger("wakd")


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from wakd.data import load_dataset

    ds = load_dataset(args.dataset, args.split, args.root, check_images=not args.no_check_images)
    text = json.dumps(ds.summary(), indent=2) + "\n"
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
        _provenance(args)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from wakd.data import load_dataset
    from wakd.synth.baseline import baseline_table

    ds = load_dataset(args.dataset, args.split, args.root)
    table = baseline_table(ds, methods=tuple(args.methods), ns=tuple(args.recall_values))
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    _provenance(args)
    print(table.to_string(index=False))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from wakd.synth.generate import generate, parse_size

    generate(args.out, preset=args.preset, seed=args.seed, size=parse_size(args.size) if args.size else None,
             workers=args.workers, overwrite=args.overwrite)
    return 0


def _cmd_synth_preview(args: argparse.Namespace) -> int:
    from wakd.synth.preview import write_preview

    write_preview(args.root, args.out, split=args.split, seed=args.seed)
    return 0


def _arch_kwargs(arch: str, last_layer: int, output_stride: int = 32, width: float = 1.0) -> dict:
    """Backbone factory options given on the command line (resnet*: the last layer, resnet18: the width;
    mobilenet*: the stride)."""
    if arch.startswith("resnet"):
        return {"last_layer": last_layer, **({"width": width} if width != 1.0 else {})}
    if arch.startswith("mobilenet") and output_stride != 32:
        return {"output_stride": output_stride}
    return {}


def _cli_arch_kwargs(args: argparse.Namespace) -> dict:
    return _arch_kwargs(args.arch, args.last_layer, args.output_stride, args.width)


def _size(args: argparse.Namespace):
    from wakd.synth.generate import parse_size

    return parse_size(args.size) if args.size else None


def _cmd_cluster(args: argparse.Namespace) -> int:
    from wakd.cluster import run_cluster

    run_cluster(args.arch, args.dataset, args.root, args.out, split=args.split, num_clusters=args.num_clusters,
                num_images=args.num_images, per_image=args.per_image, weights=args.weights, seed=args.seed,
                device=args.device, batch_size=args.batch_size, workers=args.workers, precision=args.precision,
                size=_size(args), arch_kwargs=_cli_arch_kwargs(args),
                precise_bn=args.precise_bn)
    _provenance(args)
    return 0


def _cmd_pca(args: argparse.Namespace) -> int:
    from wakd.data import load_dataset
    from wakd.device import resolve_device
    from wakd.features import sample_paths
    from wakd.models.build import build_embednet
    from wakd.pca import run_pca
    from wakd.utils import seed_everything

    seed_everything(args.seed)
    model = build_embednet(args.arch, args.num_clusters, clusters=args.clusters, weights=args.weights,
                           checkpoint=args.checkpoint, **_cli_arch_kwargs(args))
    ds = load_dataset(args.dataset, args.split, args.root)
    paths = sample_paths(ds.db_paths + ds.q_paths, args.num_images, args.seed)
    run_pca(model, paths, args.out, args.dim, resolve_device(args.device), batch_size=args.batch_size,
            workers=args.workers, precision=args.precision, size=_size(args))
    _provenance(args)
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from wakd.data import load_dataset
    from wakd.device import resolve_device
    from wakd.extract import calibrate_initialised, extract
    from wakd.models.build import build_embednet
    from wakd.provenance import write_run_info
    from wakd.utils import seed_everything

    seed_everything(args.seed)
    spec = {"arch": args.arch, "num_clusters": args.num_clusters, "clusters": args.clusters, "weights": args.weights,
            "checkpoint": args.checkpoint, "pca": args.pca,
            **_cli_arch_kwargs(args)}
    model = build_embednet(**spec)
    device = resolve_device(args.device)
    if not args.checkpoint:
        calibrate_initialised(model, args.dataset, args.root, device, args.precise_bn, args.seed,
                              pretrained=bool(args.weights), batch_size=max(args.batch_size, 16), workers=args.workers,
                              precision=args.precision, size=_size(args))
    ds = load_dataset(args.dataset, args.split, args.root)
    stats = extract(model, ds, args.out, device, dtype=args.dtype, batch_size=args.batch_size,
                    workers=args.workers, precision=args.precision, size=_size(args), model_info=spec)
    write_run_info(f"{args.out}.info.json", {**_plain(args), "stats": stats}, args.seed)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import h5py

    from wakd.evaluate import evaluate_file
    from wakd.extract import read_ground_truth
    from wakd.report import prediction_grid

    table, pred, scores = evaluate_file(args.descriptors, args.model, tuple(args.recall_values),
                                        dedup_panoramas=args.dedup_panoramas, chunk_rows=args.chunk_rows,
                                        device=_search_device(args.device))
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    if args.predictions:
        with atomic_path(args.predictions) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("predictions", data=pred)
            f.create_dataset("scores", data=scores)
            f.attrs.update({"descriptors": str(args.descriptors), "model": args.model})
    if args.figure:
        ds = read_ground_truth(args.descriptors)
        prediction_grid(ds.q_paths, ds.db_paths, pred, ds.positives(), args.figure, num_queries=args.num_queries,
                        num_preds=args.num_preds_to_save, only_wrong=args.only_wrong, seed=args.seed,
                        title=f"{args.model} on {ds.name} {ds.split}")
    _provenance(args)
    print(table.to_string(index=False))
    return 0


def _cmd_summarize(args: argparse.Namespace) -> int:
    from wakd.report import read_tables, recall_curves

    table = read_tables(args.csv)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    if args.figure:
        recall_curves(table, args.figure, rule=args.rule, condition=args.condition)
    _provenance(args)
    print(table.to_string(index=False))
    return 0


def _plain(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func"}


def _provenance(args: argparse.Namespace) -> None:
    """Write ``OUT.info.json`` beside the command's ``--out``: command, options, seed, versions, commit."""
    from wakd.provenance import write_run_info

    write_run_info(f"{args.out}.info.json", _plain(args), getattr(args, "seed", None))


def _search_device(name: str) -> str:
    from wakd.search import auto_device

    return auto_device() if name == "auto" else name


def _train_settings(args: argparse.Namespace) -> dict:
    """The TrainConfig fields shared by ``wakd train`` and ``wakd distill``."""
    return dict(
        arch=args.arch, dataset=args.dataset, root=args.root, out_dir=args.out_dir, num_clusters=args.num_clusters,
        clusters=args.clusters, weights=args.weights,
        arch_kwargs=_cli_arch_kwargs(args), train_split=args.split,
        val_split=args.val_split, epochs=args.epochs, loss=args.loss, margin=args.margin,
        temperature=args.temperature or None, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, lr_step=args.lr_step, lr_gamma=args.lr_gamma,
        tuples_per_batch=args.tuples_per_batch, neg_num=args.neg_num, neg_pool=args.neg_pool,
        cache_size=args.cache_size, queries_per_epoch=args.queries_per_epoch, precise_bn=args.precise_bn,
        select_metric=args.select_metric, seed=args.seed, device=args.device, precision=args.precision,
        workers=args.workers, threads=args.threads, batch_size=args.batch_size, size=_size(args),
    )


def _record_run(args: argparse.Namespace, name: str) -> None:
    from wakd.provenance import write_run_info

    if int(os.environ.get("RANK", "0")) == 0:
        write_run_info(os.path.join(args.out_dir, name), _plain(args), args.seed)


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from wakd.fingerprint import PACKAGE_DIR, fingerprint, stage_modules

    package_dir = args.package_dir or PACKAGE_DIR
    for stage in args.stages:
        print(f"{stage}\t{fingerprint(stage, package_dir)}")
        if args.files:
            for path in stage_modules(stage, package_dir):
                print(f"  {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from wakd.train import TrainConfig, train

    cfg = TrainConfig(**_train_settings(args))
    _record_run(args, "train_info.json")
    train(cfg, resume=args.resume)
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from wakd.distill import DistillConfig, distill

    # None: the options recorded in the teacher's checkpoint
    teacher_kwargs = (_arch_kwargs(args.teacher_arch, args.teacher_last_layer) or None) if args.teacher_arch else None
    cfg = DistillConfig(**_train_settings(args), teacher=args.teacher, teacher_arch=args.teacher_arch,
                        teacher_num_clusters=args.teacher_num_clusters, teacher_arch_kwargs=teacher_kwargs,
                        kd_weight=args.kd_weight, gram=args.gram, soft_weight=args.soft_weight)
    _record_run(args, "distill_info.json")
    distill(cfg, resume=args.resume)
    return 0


def _model_options(p: argparse.ArgumentParser, with_clusters: bool) -> None:
    from wakd.models import BACKBONE_NAMES

    p.add_argument("--arch", required=True, choices=BACKBONE_NAMES, help="backbone")
    p.add_argument("--last-layer", type=int, default=3, choices=[3, 4], help="resnet*: cut after layer3 or layer4")
    p.add_argument("--width", type=float, default=1.0,
                   help="resnet18: scale every layer's channels (0.375: the demo student, 6x fewer FLOPs; default 1)")
    p.add_argument("--output-stride", type=int, default=32, choices=[16, 32],
                   help="mobilenetv3_*: 16 drops the last stage (a 6x8 map at 96x128; default 32)")
    p.add_argument("--weights", help="local pretrained backbone weights (torchvision .pth or OpenIBL .pth.tar); "
                                     "without it the backbone starts from random initialisation")
    if with_clusters:
        p.add_argument("--num-clusters", type=int, default=64, help="NetVLAD K (default 64)")
        p.add_argument("--clusters", help="*_desc_cen.hdf5 from 'wakd cluster' to initialise NetVLAD")
        p.add_argument("--checkpoint", help="full-model checkpoint (wakd or OpenIBL)")
        p.add_argument("--pca", help="PCA-whitening HDF5 from 'wakd pca' (applied after NetVLAD, then L2)")


def _data_options(p: argparse.ArgumentParser, split: str) -> None:
    from wakd.data import DEFAULT_DATA_ROOT, list_datasets

    p.add_argument("--dataset", required=True, choices=list_datasets())
    p.add_argument("--split", default=split, help=f"train, val or test (default: {split})")
    p.add_argument("--root", default=DEFAULT_DATA_ROOT,
                   help="data root for pitts*/tokyo* (holding pitts/raw, tokyo/raw); the dataset folder "
                        f"for folder/synthetic (default: {DEFAULT_DATA_ROOT})")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="bf16 autocast or fp32 (always channels_last); auto (default): bf16 on CUDA and on "
                        "CPUs with AMX/AVX512-BF16, fp32 elsewhere")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="data-loader worker processes")
    p.add_argument("--size", help="resize images to HxW (default: keep)")
    p.add_argument("--seed", type=int, default=0)


def _training_options(p: argparse.ArgumentParser, loss: str, temperature: float | None) -> None:
    from wakd.losses import LOSSES
    from wakd.models.bn import DEFAULT_IMAGES

    p.add_argument("--val-split", default="val")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--resume", help="checkpoint.pth.tar of an interrupted run")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--loss", default=loss, choices=list(LOSSES),
                   help=f"ranking loss (default {loss}): triplet on Euclidean distances (pytorch-NetVlad, OpenIBL), "
                        "triplet_sq on squared distances, sare_joint / sare_ind (SARE)")
    p.add_argument("--margin", type=float, default=None,
                   help="triplet margin (default: sqrt(0.1) for triplet, 0.1 for triplet_sq)")
    p.add_argument("--temperature", type=float, default=temperature,
                   help="SARE on dot products / T (the WAKD code: 0.07); 0: on negative squared distances "
                        f"(OpenIBL's teacher) (default {temperature or 0})")
    p.add_argument("--precise-bn", type=int, default=DEFAULT_IMAGES, metavar="N",
                   help=f"re-estimate BatchNorm statistics over N training images before every use in eval mode "
                        f"(mining, validation, the saved checkpoints) of a network trained from random weights "
                        f"(default {DEFAULT_IMAGES}; 0: off; skipped for pretrained --weights)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.001)
    p.add_argument("--lr-step", type=int, default=5, help="epochs between learning-rate decays")
    p.add_argument("--lr-gamma", type=float, default=0.5)
    p.add_argument("--tuples-per-batch", type=int, default=4)
    p.add_argument("--neg-num", type=int, default=10, help="hard negatives per tuple")
    p.add_argument("--neg-pool", type=int, default=1000, help="random negative candidates per query")
    p.add_argument("--cache-size", type=int, default=1000, help="queries between cache refreshes")
    p.add_argument("--queries-per-epoch", type=int, default=None, help="default: all usable queries")
    p.add_argument("--select-metric", default="R@5", help="validation metric choosing model_best")
    p.add_argument("--threads", type=int, default=None, help="torch threads (set from the Snakemake rule)")
    _run_options(p)


def build_parser() -> argparse.ArgumentParser:
    from wakd.models.bn import DEFAULT_IMAGES
    from wakd.synth.presets import PRESETS

    parser = argparse.ArgumentParser(
        prog="wakd",
        description="Visual geo-localization: NetVLAD teacher, WAKD-distilled student, Recall@N.",
    )
    parser.add_argument("--version", action="version", version=f"wakd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-file", help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="dataset tools", description="Dataset tools.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    insp = data_sub.add_parser(
        "inspect", help="check a dataset split and print its counts as JSON",
        description="Load one split (checking the .mat fields and that every listed image exists) and print "
                    "one JSON object: counts, queries with positives, mean positives per query, thresholds.",
    )
    _data_options(insp, "test")
    insp.add_argument("--no-check-images", action="store_true", help="skip the image existence check")
    insp.add_argument("--out", help="write the JSON to this file instead of stdout")
    insp.set_defaults(func=_cmd_data_inspect)

    base = sub.add_parser(
        "baseline", help="Recall@N of simple global descriptors (tiny image, colour histogram)",
        description="The floor that learned models must beat: Recall@N of a 12x16 grey thumbnail and a colour "
                    "histogram, exact nearest-neighbour search, 25 m rule (and the view-aware rule where image "
                    "yaws are known), overall and per query condition. Writes a tidy CSV.",
    )
    _data_options(base, "test")
    base.add_argument("--methods", nargs="+", default=["thumbnail", "histogram"],
                      choices=["thumbnail", "histogram"])
    base.add_argument("--recall-values", nargs="+", type=int, default=[1, 5, 10, 20])
    base.add_argument("--out", required=True, help="CSV to write")
    base.set_defaults(func=_cmd_baseline)

    synth = sub.add_parser(
        "synth", help="render the embedded synthetic city in the Pittsburgh format",
        description="Render a deterministic procedural city and write raw/synthetic_{train,val,test}.mat "
                    "(Pittsburgh dbStruct), the images, side tables of yaws and query conditions, "
                    "preview.png and synth_info.json under OUT.",
    )
    synth.add_argument("--out", required=True, help="output folder (created; must not hold another city)")
    synth.add_argument("--preset", default="demo", choices=list(PRESETS), help="size of the city (default: demo)")
    synth.add_argument("--seed", type=int, default=0, help="world and capture seed (default: 0)")
    synth.add_argument("--size", help="image size HxW, e.g. 120x160 (default: the preset's)")
    synth.add_argument("--workers", type=int, default=None, help="render processes (default: all CPU cores)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing city in OUT")
    synth.set_defaults(func=_cmd_synth)

    clu = sub.add_parser(
        "cluster", help="k-means centres of local conv features (NetVLAD initialisation)",
        description="Sample local descriptors from the backbone's conv feature map on random training images, "
                    "run faiss k-means and write an HDF5 with datasets 'descriptors' [n x D] and "
                    "'centroids' [K x D] (the reference *_desc_cen.hdf5 layout).",
    )
    _model_options(clu, with_clusters=False)
    _data_options(clu, "train")
    clu.add_argument("--num-clusters", type=int, default=64)
    clu.add_argument("--num-images", type=int, default=500, help="training images sampled (default 500)")
    clu.add_argument("--per-image", type=int, default=100, help="locations sampled per image (default 100)")
    clu.add_argument("--precise-bn", type=int, default=DEFAULT_IMAGES, metavar="N",
                     help="a random-init backbone with BatchNorm: re-estimate its statistics over N of the sampled "
                          f"images first (default {DEFAULT_IMAGES}; 0: off)")
    clu.add_argument("--out", required=True, help="HDF5 file to write")
    _run_options(clu)
    clu.set_defaults(func=_cmd_cluster)

    pca = sub.add_parser(
        "pca", help="fit PCA whitening of the global descriptors",
        description="Describe up to --num-images training images with backbone + NetVLAD and fit PCA whitening "
                    "(dual Gram form when dim > n) keeping --dim components; writes HDF5 (mean, components, "
                    "variances).",
    )
    _model_options(pca, with_clusters=True)
    _data_options(pca, "train")
    pca.add_argument("--num-images", type=int, default=10000)
    pca.add_argument("--dim", type=int, default=4096, help="components kept (default 4096)")
    pca.add_argument("--out", required=True, help="HDF5 file to write")
    _run_options(pca)
    pca.set_defaults(func=_cmd_pca)

    ext = sub.add_parser(
        "extract", help="global descriptors of a dataset split -> HDF5",
        description="Run backbone + NetVLAD (+ PCA) over every database and query image of a split and write "
                    "L2-normalised descriptors, paths, UTM, yaws and query conditions to HDF5, batch by batch "
                    "(memory does not grow with the dataset).",
    )
    _model_options(ext, with_clusters=True)
    _data_options(ext, "test")
    ext.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored precision")
    ext.add_argument("--precise-bn", type=int, default=DEFAULT_IMAGES, metavar="N",
                     help="without --checkpoint (a network as initialised): re-estimate BatchNorm statistics over N "
                          f"training database images first, as 'wakd cluster' does (default {DEFAULT_IMAGES}; 0: off)")
    ext.add_argument("--out", required=True, help="HDF5 file to write")
    _run_options(ext)
    ext.set_defaults(func=_cmd_extract)

    ev = sub.add_parser(
        "evaluate", help="Recall@N of a descriptor file (exact search, 25 m rule)",
        description="Exact nearest-neighbour search (faiss IndexFlatIP on CPU, matmul + top-k on CUDA) over "
                    "database chunks, Recall@N overall and per query condition, tidy CSV with columns model, "
                    "dataset, split, rule, condition, R@N..., queries.",
    )
    ev.add_argument("--descriptors", required=True, help="HDF5 from 'wakd extract'")
    ev.add_argument("--model", required=True, help="name for the model column")
    ev.add_argument("--recall-values", nargs="+", type=int, default=[1, 5, 10, 20])
    ev.add_argument("--dedup-panoramas", action="store_true",
                    help="keep the best-ranked image of each database panorama (Tokyo 24/7 convention)")
    ev.add_argument("--chunk-rows", type=int, default=None, help="database rows searched at a time")
    ev.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ev.add_argument("--out", required=True, help="CSV to write")
    ev.add_argument("--predictions", help="also write the top-k indices and scores (HDF5)")
    ev.add_argument("--figure", help="also write a PNG grid of queries and their top predictions")
    ev.add_argument("--num-queries", type=int, default=8, help="rows of the figure")
    ev.add_argument("--num-preds-to-save", type=int, default=5, help="predictions per row of the figure")
    ev.add_argument("--only-wrong", action="store_true", help="figure: only queries wrong at R@1")
    ev.add_argument("--seed", type=int, default=0, help="which queries the figure shows")
    ev.set_defaults(func=_cmd_evaluate)

    summ = sub.add_parser("summarize", help="combine recall CSVs into one table and a Recall@N figure",
                          description="Concatenate recall CSVs (from 'wakd evaluate' / 'wakd baseline') into one "
                                      "table, and plot Recall@N against N, one panel per dataset, one line per model.")
    summ.add_argument("--csv", nargs="+", required=True, help="recall CSVs")
    summ.add_argument("--out", required=True, help="combined CSV to write")
    summ.add_argument("--figure", help="PNG of the Recall@N curves")
    summ.add_argument("--rule", default="25m", help="rule plotted (default 25m)")
    summ.add_argument("--condition", default="each",
                      help="condition plotted: each (default: one panel per condition), all, day, sunset, night")
    summ.set_defaults(func=_cmd_summarize)

    tr = sub.add_parser(
        "train", help="weakly supervised training (hard-negative mining, triplet / SARE losses)",
        description="Train backbone + NetVLAD from GPS alone: tuples of a query, its best positive (<10 m) and "
                    "hard negatives (>25 m) mined with the current model every --cache-size queries; validation "
                    "Recall@N each epoch selects model_best. Writes checkpoint.pth.tar, model_best.pth.tar, "
                    "history.csv in --out-dir. Multi-GPU: torchrun --nproc_per_node N -m wakd.cli train ...",
    )
    _model_options(tr, with_clusters=True)
    _data_options(tr, "train")
    _training_options(tr, loss="triplet", temperature=None)
    tr.set_defaults(func=_cmd_train)

    di = sub.add_parser(
        "distill", help="attention-based knowledge distillation of a student from a frozen teacher (WAKD)",
        description="Train the student (backbone + NetVLAD) with the teacher-training loop and the loss "
                    "hard_loss + kd_weight * (MSE of batch Gram matrices of NetVLAD residuals + of attention maps) "
                    "against the frozen --teacher. --kd-weight 0 trains the same student without distillation. "
                    "Writes checkpoint.pth.tar, model_best.pth.tar, history.csv, steps.csv in --out-dir. "
                    "Multi-GPU: torchrun --nproc_per_node N -m wakd.cli distill ...",
    )
    _model_options(di, with_clusters=True)
    _data_options(di, "train")
    di.add_argument("--teacher", required=True, help="the teacher's checkpoint (model_best.pth.tar of wakd train, "
                                                     "or an OpenIBL checkpoint with --teacher-arch)")
    di.add_argument("--teacher-arch", help="teacher backbone when the checkpoint does not record it")
    di.add_argument("--teacher-num-clusters", type=int, help="teacher NetVLAD K when not recorded")
    di.add_argument("--teacher-last-layer", type=int, default=3, choices=[3, 4], help="resnet* teacher cut")
    di.add_argument("--kd-weight", type=float, default=100.0, help="weight of the KD terms (default 100; 0: no KD)")
    di.add_argument("--soft-weight", type=float, default=0.0,
                    help="weight of the soft ranking term kd_rank: KL from the teacher's softmax over each tuple's "
                         "candidates (SFRS-style soft labels from the teacher; default 0)")
    di.add_argument("--gram", default="rownorm", choices=["rownorm", "cosine"],
                    help="batch similarity matrices of the KD terms: rownorm = normalize(X Xt, dim=1) as in the "
                         "WAKD code (default), cosine = rows of X normalised before the product")
    _training_options(di, loss="sare_ind", temperature=0.07)
    di.set_defaults(func=_cmd_distill)

    from wakd.fingerprint import STAGES

    fp = sub.add_parser(
        "fingerprint", help="hash of the library code a pipeline stage depends on",
        description="Print, per stage, 16 hex digits of SHA-256 over the source of the stage's modules and every "
                    "wakd module they import (transitively). The Snakemake rules pass it as a parameter, so "
                    "editing a stage's code reruns that stage and what follows, and nothing else.",
    )
    fp.add_argument("stages", nargs="+", choices=list(STAGES), metavar="STAGE",
                    help=f"one of: {', '.join(STAGES)}")
    fp.add_argument("--files", action="store_true", help="also list the source files hashed")
    fp.add_argument("--package-dir", help="the wakd package folder to hash (default: the installed one)")
    fp.set_defaults(func=_cmd_fingerprint)

    prev = sub.add_parser(
        "synth-preview", help="contact sheet of a synthetic city",
        description="One PNG: a database image, the nearest query under each condition, a far-away image.",
    )
    prev.add_argument("--root", required=True, help="the synthetic city folder (wakd synth --out)")
    prev.add_argument("--out", required=True, help="PNG file to write")
    prev.add_argument("--split", default="test")
    prev.add_argument("--seed", type=int, default=0, help="which places to show")
    prev.set_defaults(func=_cmd_synth_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_file)
    log.debug("wakd %s: %s", __version__, " ".join(sys.argv))
    try:
        return args.func(args)
    except WakdError as exc:
        print(f"wakd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
