"""A catalogue of bad inputs and faults, one case per row, across every command.

Each case runs ``wakd`` and asserts: exit status 2, one line on stderr (``wakd: error: ...``, no
traceback) naming the bad file or option, and nothing under the output's final name (and no
temporary left beside it). Kill-and-rerun tests follow: a SIGTERM or SIGINT mid-run leaves no
partial output and no temporary, and the rerun succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from wakd.cli import main

STR = h5py.string_dtype("utf-8")


def descriptor_file(path: Path, n_db=20, n_q=5, dim=8, db_rows=None, q_dim=None, nan_db=False, nan_q=False,
                    yaw_nan=False, scale_db=1.0) -> Path:
    """A small descriptor file in the `wakd extract` layout (see wakd.descriptors): unit rows, the database's
    times ``scale_db``."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset": "synthetic", "split": "test", "pos_dist_thr": 25.0})
        for group, n, d in (("db", n_db, dim), ("queries", n_q, q_dim or dim)):
            rows = db_rows if (group == "db" and db_rows is not None) else n
            x = rng.normal(size=(rows, d))
            x = (x / np.linalg.norm(x, axis=1, keepdims=True) * (scale_db if group == "db" else 1.0)).astype(np.float16)
            if (nan_db and group == "db") or (nan_q and group == "queries"):
                x[min(3, rows - 1), 0] = np.nan
            g = f.create_group(group)
            g.create_dataset("descriptors", data=x)
            g.create_dataset("paths", data=np.asarray([f"{group}/{i}.jpg" for i in range(n)], dtype=object),
                             dtype=STR)
            g.create_dataset("utm", data=np.c_[np.arange(n) * 10.0, np.zeros(n)])
            yaw = np.zeros(n)
            if yaw_nan:
                yaw[0] = np.nan
            g.create_dataset("yaw", data=yaw)
    return path


def cluster_file(path: Path, k=8, dim=256, nan=False, drop=None) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        cen = rng.normal(size=(k, dim)).astype(np.float32)
        if nan:
            cen[2, 5] = np.nan
        if drop != "centroids":
            f.create_dataset("centroids", data=cen)
        f.create_dataset("descriptors", data=rng.normal(size=(50, dim)).astype(np.float32))
    return path


def pca_file(path: Path, nan=False) -> Path:
    with h5py.File(path, "w") as f:
        mean = np.zeros(8 * 256)
        if nan:
            mean[0] = np.nan
        f.create_dataset("mean", data=mean)
        f.create_dataset("components", data=np.eye(4, 8 * 256))
        f.create_dataset("variances", data=np.ones(4))
    return path


def recall_csv(path: Path, r1="0.5") -> Path:
    path.write_text("model,dataset,split,rule,condition,R@1,R@5,queries\n"
                    f"m,synthetic,test,25m,all,{r1},0.6,10\n")
    return path


class Malicious:
    def __reduce__(self):
        return (os.system, ("echo owned > /tmp/wakd_owned",))


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_city):
    d = tmp_path_factory.mktemp("bad")
    f = {"city": tiny_city, "d": d}
    f["desc"] = descriptor_file(d / "good.hdf5")
    (d / "link.hdf5").symlink_to(f["desc"])
    f["desc_link"] = d / "link.hdf5"
    os.link(f["desc"], d / "hard.hdf5")
    f["desc_hard"] = d / "hard.hdf5"
    f["desc_rows"] = descriptor_file(d / "rows.hdf5", db_rows=17)
    f["desc_nan_db"] = descriptor_file(d / "nan_db.hdf5", nan_db=True)
    f["desc_nan_q"] = descriptor_file(d / "nan_q.hdf5", nan_q=True)
    f["desc_dim"] = descriptor_file(d / "dim.hdf5", q_dim=16)
    f["desc_empty"] = descriptor_file(d / "empty.hdf5", n_db=0)
    f["desc_yaw"] = descriptor_file(d / "yaw.hdf5", yaw_nan=True)
    f["desc_scaled"] = descriptor_file(d / "scaled.hdf5", scale_db=3.0)
    with h5py.File(d / "noq.hdf5", "w") as h:
        h.create_dataset("db/descriptors", data=np.zeros((2, 4)))
    f["desc_noq"] = d / "noq.hdf5"
    f["clu_nan"] = cluster_file(d / "clu_nan.hdf5", nan=True)
    f["clu_k"] = cluster_file(d / "clu_k.hdf5", k=5)
    f["clu_nocen"] = cluster_file(d / "clu_nocen.hdf5", drop="centroids")
    f["pca_nan"] = pca_file(d / "pca_nan.hdf5", nan=True)
    (d / "text.hdf5").write_text("not hdf5\n")
    f["text"] = d / "text.hdf5"
    (d / "truncated.pth.tar").write_bytes(b"PK\x03\x04truncated")
    f["truncated"] = d / "truncated.pth.tar"
    torch.save({"model": Malicious()}, d / "evil.pth")
    f["evil"] = d / "evil.pth"
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "epoch": 0, "hard_negatives": torch.zeros(1),
                "config": {"arch": "vgg16", "num_clusters": 64, "loss": "triplet"}}, d / "foreign.pth.tar")
    f["foreign_run"] = d / "foreign.pth.tar"
    from wakd.models.build import build_embednet

    state = build_embednet("resnet18", 8).state_dict()
    partial = {k: v for k, v in state.items() if k != "pool.centroids"}
    record = {"arch": "resnet18", "num_clusters": 8, "arch_kwargs": {"last_layer": 3}}
    torch.save({"model": partial, "config": record}, d / "partial.pth.tar")
    f["partial"] = d / "partial.pth.tar"
    torch.save({"model": {**state, "head.weight": torch.zeros(2)}, "config": record}, d / "extra.pth.tar")
    f["extra"] = d / "extra.pth.tar"
    f["csv"] = recall_csv(d / "good.csv")
    f["csv_text"] = recall_csv(d / "text.csv", r1="high")
    f["csv_other"] = recall_csv(d / "other.csv", r1="0.25")  # the same result key as good.csv, another recall
    (d / "latin1.csv").write_bytes("model,dataset,split,rule,condition,R@1,R@5,queries\n"
                                   "modèle,synthetic,test,25m,all,0.5,0.6,10\n".encode("latin-1"))
    f["csv_latin1"] = d / "latin1.csv"
    (d / "dupcol.csv").write_text("model,dataset,split,rule,condition,R@1,R@1,queries\nm,synthetic,test,25m,all,"
                                  "0.5,0.6,10\n")
    f["csv_dupcol"] = d / "dupcol.csv"
    (d / "norows.csv").write_text("model,dataset,split,rule,condition,R@1,R@5,queries\n")
    f["csv_norows"] = d / "norows.csv"
    f["csv_big"] = recall_csv(d / "big.csv", r1="1.5")
    (d / "cols.csv").write_text("a,b\n1,2\n")
    f["csv_cols"] = d / "cols.csv"
    notes = d / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep\n")
    f["notes"] = notes
    run = d / "run"
    run.mkdir()
    (run / "checkpoint.pth.tar").write_bytes(b"an earlier run")
    f["run"] = run
    bomb = d / "bomb/images/test"
    for sub in ("database", "queries"):
        (bomb / sub).mkdir(parents=True)
        Image.new("RGB", (16, 12)).save(bomb / sub / "@0@0@@.jpg")
    Image.new("L", (15000, 15000)).save(bomb / "queries" / "@5@0@@.png")
    f["bomb"] = d / "bomb"
    corrupt = d / "corrupt/images/test"
    for sub in ("database", "queries"):
        (corrupt / sub).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(corrupt / sub / "@0@0@@.jpg")
    (corrupt / "database" / "@9@0@@.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    f["corrupt"] = d / "corrupt"
    return f


NET = ["--arch", "resnet18", "--num-clusters", "8", "--dataset", "synthetic", "--workers", "0"]

def net_case(name: str, command: str, options: list[str], needle: str, flag: str = "--out",
             out: str = "{out}") -> tuple:
    """A case of a network command on the tiny city, writing ``out`` (default ``{out}``, which must not appear)."""
    return name, [command, *NET, "--root", "{city}", *options, flag, out], needle, "{out}" if out == "{out}" else None


def run_case(name: str, command: str, options: list[str], needle: str, out: str = "{out}") -> tuple:
    """A case of ``train`` / ``distill`` writing the run folder ``out``."""
    return net_case(name, command, options, needle, flag="--out-dir", out=out)


def eval_case(name: str, descriptors: str, options: list[str], needle: str, out: str = "{out}") -> tuple:
    """A case of ``evaluate`` on a descriptor file of the fixture, writing ``out``."""
    return (name, ["evaluate", "--descriptors", descriptors, "--model", "m", *options, "--out", out], needle,
            "{out}" if out == "{out}" else None)


# (id, argv template, text the message must hold, output that must not appear). {name} is a file of
# the fixture, {out} the case's output path, {city} the tiny city.
CASES = [
    # data inspect
    ("inspect-dataset", ["data", "inspect", "--dataset", "pitts31k"], "--dataset", None),
    ("inspect-root", ["data", "inspect", "--dataset", "synthetic", "--root", "{d}/nowhere", "--out", "{out}"],
     "nowhere", "{out}"),
    ("inspect-split", ["data", "inspect", "--dataset", "synthetic", "--split", "dev"], "'dev'", None),
    # synth
    ("synth-overwrite-foreign", ["synth", "--out", "{notes}", "--preset", "tiny", "--overwrite"], "notes", None),
    ("synth-nonempty", ["synth", "--out", "{notes}", "--preset", "tiny"], "--overwrite", None),
    ("synth-size-text", ["synth", "--out", "{out}", "--size", "100xabc"], "--size", "{out}"),
    ("synth-size-big", ["synth", "--out", "{out}", "--size", "2000x2000"], "--size", "{out}"),
    ("synth-preset", ["synth", "--out", "{out}", "--preset", "huge"], "--preset", "{out}"),
    ("synth-workers", ["synth", "--out", "{out}", "--workers", "0"], "--workers", "{out}"),
    # baseline
    ("baseline-method", ["baseline", "--dataset", "synthetic", "--root", "{city}", "--methods", "sift",
                         "--out", "{out}"], "--methods", "{out}"),
    ("baseline-recall", ["baseline", "--dataset", "synthetic", "--root", "{city}", "--recall-values", "0",
                         "--out", "{out}"], "--recall-values", "{out}"),
    ("baseline-root", ["baseline", "--dataset", "synthetic", "--root", "{d}/nowhere", "--out", "{out}"],
     "nowhere", "{out}"),
    ("baseline-bomb", ["baseline", "--dataset", "folder", "--root", "{bomb}", "--recall-values", "1", "--out", "{out}"],
     "@5@0@@.png",
     "{out}"),
    # cluster
    net_case("cluster-k", "cluster", ["--num-clusters", "0"], "--num-clusters"),
    net_case("cluster-images", "cluster", ["--num-images", "0"], "--num-images"),
    net_case("cluster-too-few-features", "cluster", ["--num-images", "1", "--per-image", "4", "--precise-bn", "0"],
             "--num-clusters 8: only 4 local features to cluster (1 images x at most --per-image 4"),
    net_case("cluster-precise-bn", "cluster", ["--precise-bn", "-1"], "--precise-bn"),
    net_case("cluster-weights-missing", "cluster", ["--weights", "{d}/none.pth"], "none.pth"),
    net_case("cluster-weights-pickle", "cluster", ["--weights", "{evil}"], "evil.pth"),
    net_case("cluster-size", "cluster", ["--size", "97x128"], "--size"),
    net_case("cluster-batch", "cluster", ["--batch-size", "0"], "--batch-size"),
    net_case("cluster-workers", "cluster", ["--workers", "-1"], "--workers"),
    ("cluster-arch", ["cluster", "--arch", "vit", "--dataset", "synthetic", "--out", "{out}"], "--arch", "{out}"),
    # pca
    net_case("pca-dim-0", "pca", ["--dim", "0"], "--dim"),
    net_case("pca-dim-neg", "pca", ["--dim", "-5"], "--dim"),
    net_case("pca-dim-too-many", "pca", ["--num-images", "10", "--dim", "50"], "--dim"),
    net_case("pca-clusters-missing", "pca", ["--clusters", "{d}/none.hdf5"], "none.hdf5"),
    net_case("pca-clusters-nan", "pca", ["--clusters", "{clu_nan}"], "clu_nan.hdf5"),
    net_case("pca-checkpoint-missing", "pca", ["--checkpoint", "{d}/none.pth.tar"], "none.pth.tar"),
    # extract
    net_case("extract-clusters-nan", "extract", ["--clusters", "{clu_nan}"], "clu_nan.hdf5"),
    net_case("extract-clusters-k", "extract", ["--clusters", "{clu_k}"], "clu_k.hdf5"),
    net_case("extract-clusters-text", "extract", ["--clusters", "{text}"], "text.hdf5"),
    net_case("extract-clusters-layout", "extract", ["--clusters", "{clu_nocen}"], "centroids"),
    net_case("extract-pca-nan", "extract", ["--pca", "{pca_nan}"], "pca_nan.hdf5"),
    net_case("extract-pca-missing", "extract", ["--pca", "{d}/none.hdf5"], "none.hdf5"),
    net_case("extract-checkpoint-truncated", "extract", ["--checkpoint", "{truncated}"], "truncated.pth.tar"),
    net_case("extract-checkpoint-arch-contradicts", "extract", ["--checkpoint", "{foreign_run}"],
             "--arch resnet18: {foreign_run} records a vgg16 K=64 network"),
    net_case("extract-checkpoint-partial", "extract", ["--checkpoint", "{partial}"],
             "--checkpoint {partial}: the checkpoint lacks 1 tensor(s) of a resnet18 K=8 network (first: "
             "pool.centroids)"),
    net_case("pca-checkpoint-partial", "pca", ["--checkpoint", "{partial}", "--dim", "4"], "lacks 1 tensor(s)"),
    net_case("extract-dtype", "extract", ["--dtype", "float64"], "--dtype"),
    net_case("extract-device", "extract", ["--device", "tpu"], "tpu"),
    net_case("extract-shard-text", "extract", ["--shard", "2of3"], "--shard"),
    net_case("extract-shard-range", "extract", ["--shard", "4/3"], "--shard"),
    net_case("extract-shard-zero", "extract", ["--shard", "0/3"], "--shard"),
    net_case("extract-shard-many", "extract", ["--shard", "1/9999"], "at most"),
    # gather
    ("gather-missing", ["gather", "--shards", "{d}/none.hdf5", "--out", "{out}"], "none.hdf5", "{out}"),
    ("gather-text", ["gather", "--shards", "{text}", "--out", "{out}"], "text.hdf5", "{out}"),
    ("gather-not-a-shard", ["gather", "--shards", "{desc}", "--out", "{out}"], "good.hdf5", "{out}"),
    # own photos: index, query, export
    ("index-images-missing", ["index", "--checkpoint", "{foreign_run}", "--images", "{d}/nowhere", "--out", "{out}"],
     "nowhere", "{out}"),
    ("index-checkpoint-pickle", ["index", "--checkpoint", "{evil}", "--images", "{city}", "--out", "{out}"],
     "evil.pth", "{out}"),
    ("index-checkpoint-foreign", ["index", "--checkpoint", "{foreign_run}", "--images", "{city}", "--out", "{out}"],
     "foreign.pth.tar", "{out}"),
    ("index-checkpoint-extra-tensors", ["index", "--checkpoint", "{extra}", "--images", "{city}", "--out", "{out}"],
     "extra.pth.tar: holds 1 tensor(s) that a resnet18 K=8 network has no place for (first: head.weight)", "{out}"),
    ("query-index-missing", ["query", "--index", "{d}/none.h5", "{d}/photo.jpg"], "none.h5", None),
    ("query-index-text", ["query", "--index", "{text}", "{d}/photo.jpg"], "text.hdf5", None),
    ("export-checkpoint-truncated", ["export", "--checkpoint", "{truncated}", "--format", "onnx", "--out", "{out}"],
     "truncated.pth.tar", "{out}"),
    ("export-format", ["export", "--checkpoint", "{foreign_run}", "--format", "tflite", "--out", "{out}"], "--format",
     "{out}"),
    # evaluate
    eval_case("evaluate-missing", "{d}/none.hdf5", [], "none.hdf5"),
    eval_case("evaluate-text", "{text}", [], "text.hdf5"),
    eval_case("evaluate-rows", "{desc_rows}", [], "rows.hdf5"),
    eval_case("evaluate-nan-db", "{desc_nan_db}", [], "nan_db.hdf5"),
    eval_case("evaluate-nan-queries", "{desc_nan_q}", [], "nan_q.hdf5"),
    eval_case("evaluate-dims", "{desc_dim}", [], "dim.hdf5"),
    eval_case("evaluate-empty-db", "{desc_empty}", [], "empty.hdf5"),
    eval_case("evaluate-nan-yaw", "{desc_yaw}", [], "yaw.hdf5"),
    eval_case("evaluate-layout", "{desc_noq}", [], "noq.hdf5"),
    eval_case("evaluate-recall", "{desc}", ["--recall-values", "-1"], "--recall-values"),
    eval_case("evaluate-cuda", "{desc}", ["--device", "cuda"], "--device"),
    eval_case("evaluate-figure-rows", "{desc}", ["--num-queries", "0"], "--num-queries"),
    eval_case("evaluate-not-unit", "{desc_scaled}", [], "scaled.hdf5: /db/descriptors row 0 has L2 norm 3"),
    eval_case("evaluate-recall-beyond-db", "{desc}", ["--recall-values", "1", "21"],
              "--recall-values 21: {desc} has only 20 database images"),
    eval_case("evaluate-device-typo", "{desc}", ["--device", "cud"], "--device 'cud'"),
    # summarize
    ("summarize-missing", ["summarize", "--csv", "{d}/none.csv", "--out", "{out}"], "none.csv", "{out}"),
    ("summarize-text", ["summarize", "--csv", "{csv_text}", "--out", "{out}"], "text.csv", "{out}"),
    ("summarize-range", ["summarize", "--csv", "{csv_big}", "--out", "{out}"], "big.csv", "{out}"),
    ("summarize-columns", ["summarize", "--csv", "{csv_cols}", "--out", "{out}"], "cols.csv", "{out}"),
    ("summarize-not-utf8", ["summarize", "--csv", "{csv_latin1}", "--out", "{out}"], "not UTF-8", "{out}"),
    ("summarize-column-twice", ["summarize", "--csv", "{csv_dupcol}", "--out", "{out}"], "'r@1' appears 2 times",
     "{out}"),
    ("summarize-no-rows", ["summarize", "--csv", "{csv_norows}", "--out", "{out}"], "norows.csv: the table has no rows",
     "{out}"),
    ("summarize-contradicting", ["summarize", "--csv", "{csv}", "{csv_other}", "--out", "{out}"],
     "appears twice with different recalls", "{out}"),
    ("summarize-condition", ["summarize", "--csv", "{csv}", "--condition", "dusk", "--out", "{out}"],
     "--condition", "{out}"),
    # train
    run_case("train-metric", "train", ["--select-metric", "R@7"], "--select-metric"),
    run_case("train-neg-num", "train", ["--neg-num", "0"], "--neg-num"),
    run_case("train-epochs", "train", ["--epochs", "0"], "--epochs"),
    run_case("train-lr", "train", ["--lr", "-1"], "--lr"),
    run_case("train-neg-pool", "train", ["--neg-num", "10", "--neg-pool", "5"], "--neg-pool 5"),
    run_case("train-generations-no-positives", "train", ["--generations", "2"], "--pos-num"),
    run_case("distill-soft-temperature", "distill", ["--teacher", "{truncated}", "--soft-temperatures", "0.07", "0"],
             "--soft-temperatures"),
    run_case("distill-init-missing", "distill", ["--teacher", "{foreign_run}", "--init", "{d}/none.pth.tar"],
             "none.pth.tar"),
    run_case("distill-regions", "distill", ["--teacher", "{truncated}", "--regions", "3x3"], "--regions"),
    run_case("train-margin-sare", "train", ["--loss", "sare_ind", "--margin", "0.2"], "--margin"),
    ("train-existing-run", ["train", *NET, "--root", "{city}", "--out-dir", "{run}"], "--resume", None),
    run_case("train-resume-missing", "train", ["--resume", "{d}/none.pth.tar"], "none.pth.tar"),
    run_case("train-resume-truncated", "train", ["--resume", "{truncated}"], "truncated.pth.tar"),
    run_case("train-resume-foreign", "train", ["--resume", "{foreign_run}"], "other options"),
    # distill
    run_case("distill-teacher-missing", "distill", ["--teacher", "{d}/none.pth.tar"], "none.pth.tar"),
    run_case("distill-teacher-text", "distill", ["--teacher", "{text}"], "text.hdf5"),
    run_case("distill-kd-weight", "distill", ["--teacher", "{truncated}", "--kd-weight", "-1"], "--kd-weight"),
    run_case("distill-gram", "distill", ["--teacher", "{truncated}", "--gram", "cos"], "--gram"),
    # a corrupt image read in a data-loader worker: the worker's message, not its traceback
    ("extract-corrupt-image", ["extract", "--arch", "resnet18", "--num-clusters", "8", "--dataset", "folder",
                               "--root", "{corrupt}", "--workers", "1", "--precise-bn", "0", "--out", "{out}"],
     "@9@0@@.jpg", "{out}"),
    # outputs where no file can be written: below a file
    ("evaluate-out-below-file", ["evaluate", "--descriptors", "{desc}", "--model", "m", "--out",
                                 "{notes}/notes.txt/r.csv"], "notes.txt", None),
    ("log-file-below-file", ["--log-file", "{notes}/notes.txt/w.log", "evaluate", "--descriptors", "{desc}",
                             "--model", "m", "--out", "{out}"], "notes.txt", "{out}"),
    # fingerprint
    ("fingerprint-stage", ["fingerprint", "training"], "training", None),
    # an output that is an input, another output, or a folder (one guard, every command; checked first)
    eval_case("evaluate-out-is-input", "{desc}", [], "is also the input --descriptors", out="{desc}"),
    eval_case("evaluate-out-symlink-to-input", "{desc}", [], "is also the input --descriptors", out="{desc_link}"),
    eval_case("evaluate-out-hardlink-to-input", "{desc}", [], "is also the input --descriptors", out="{desc_hard}"),
    eval_case("evaluate-figure-is-out", "{desc}", ["--figure", "{out}"], "is also --out"),
    eval_case("evaluate-predictions-is-input", "{desc}", ["--predictions", "{desc}"], "--predictions"),
    eval_case("evaluate-out-is-folder", "{desc}", [], "is a folder", out="{notes}"),
    ("export-out-is-checkpoint", ["export", "--checkpoint", "{foreign_run}", "--format", "onnx", "--out",
                                  "{foreign_run}"], "is also the input --checkpoint", None),
    ("summarize-out-is-csv", ["summarize", "--csv", "{csv}", "--out", "{csv}"], "is also the input --csv", None),
    ("summarize-figure-is-csv", ["summarize", "--csv", "{csv}", "--out", "{out}", "--figure", "{csv}"],
     "--figure", "{out}"),
    ("gather-out-is-shard", ["gather", "--shards", "{text}", "{desc}", "--out", "{desc}"], "is also the input --shards",
     None),
    ("index-out-is-checkpoint", ["index", "--checkpoint", "{foreign_run}", "--images", "{city}", "--out",
                                 "{foreign_run}"], "is also the input --checkpoint", None),
    net_case("extract-out-is-clusters", "extract", ["--clusters", "{clu_k}"], "is also the input --clusters",
             out="{clu_k}"),
    net_case("extract-device-typo", "extract", ["--device", "tpu"], "--device 'tpu': expected auto, cpu, cuda"),
    run_case("train-jitter-three", "train", ["--jitter", "0.7", "0.7", "0.7"], "--jitter 0.7 0.7 0.7: expected 4"),
    run_case("distill-relight-above-one", "distill", ["--teacher", "{foreign_run}", "--relight", "2"],
             "--relight 2.0: expected a probability"),
    run_case("distill-teacher-arch-contradicts", "distill", ["--teacher", "{foreign_run}", "--teacher-arch",
                                                             "resnet18"], "--teacher-arch resnet18: {foreign_run} "
             "records a vgg16 K=64 teacher"),
    run_case("train-init-in-out-dir", "train", ["--init", "{run}/checkpoint.pth.tar", "--overwrite"],
             "lies in --out-dir", out="{run}"),
    run_case("distill-teacher-in-out-dir", "distill", ["--teacher", "{run}/model_best.pth.tar", "--overwrite"],
             "lies in --out-dir", out="{run}"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(case, files, tmp_path, capsys):
    name, argv, needle, output = case
    if name == "evaluate-cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    values = {k: str(v) for k, v in files.items()} | {"out": str(tmp_path / "out" / "result.csv")}
    argv = [a.format(**values) for a in argv]
    before = {p: p.stat().st_mtime_ns for p in files["d"].rglob("*")}
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.startswith("wakd: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle.format(**values) in lines[0], lines[0]
    if output:
        out = Path(output.format(**values))
        assert not out.exists() and not (out.is_dir() and any(out.iterdir()))
        assert not list(out.parent.glob(".*")) if out.parent.exists() else True
    # nothing of the inputs was touched (the notes folder, an earlier run)
    assert {p: p.stat().st_mtime_ns for p in files["d"].rglob("*")} == before
    assert not Path("/tmp/wakd_owned").exists()


def test_the_catalogue_is_large():
    assert len(CASES) >= 50
    commands = {c[1][0] for c in CASES}
    assert {"data", "synth", "baseline", "cluster", "pca", "extract", "gather", "evaluate", "summarize", "train",
            "distill", "fingerprint", "index", "query", "export"} <= commands


def test_full_disk_is_refused_before_extracting(tiny_city, tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2**16, 2**16))
    out = tmp_path / "d.hdf5"
    assert main(["extract", *NET, "--root", str(tiny_city), "--precise-bn", "0", "--out", str(out)]) == 2
    assert "disk full" in capsys.readouterr().err and not out.exists() and _temporaries(tmp_path) == []


def test_debug_shows_the_traceback(files, capsys):
    assert main(["--debug", "evaluate", "--descriptors", str(files["desc_nan_db"]), "--model", "m", "--out",
                 str(files["d"] / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("wakd: error:")


def test_evaluate_writes_all_outputs_or_none(files, tmp_path, monkeypatch):
    """A failure after the table is computed (here: the figure) leaves no table either."""
    import wakd.report

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(wakd.report, "prediction_grid", broken)
    out = tmp_path / "r.csv"
    with pytest.raises(RuntimeError, match="figure failed"):
        main(["evaluate", "--descriptors", str(files["desc"]), "--model", "m", "--out", str(out), "--predictions",
              str(tmp_path / "p.hdf5"), "--figure", str(tmp_path / "f.png")])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert main(["evaluate", "--descriptors", str(files["desc"]), "--model", "m", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.csv.info.json"]
    assert pd.read_csv(out)["R@1"].between(0, 1).all()


def _kill_midway(argv: list[str], wait_for, sig=signal.SIGTERM, timeout=120) -> int:
    """Start ``wakd argv``, send ``sig`` once ``wait_for()`` is true, return the exit status."""
    # SIGINT at its default in the child: a shell without job control starts background jobs with it ignored
    proc = subprocess.Popen([sys.executable, "-m", "wakd", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not wait_for() and proc.poll() is None and time.time() - t0 < timeout:
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode not in (128 + signal.SIGTERM, 128 + signal.SIGINT, 130):
        print(f"wakd {' '.join(argv)} exited {proc.returncode}; its stderr:\n{err[-3000:]}")  # shown if it fails
    return proc.returncode


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*")) if folder.exists() else []


def test_sigterm_during_synth_leaves_nothing_and_rerun_works(tmp_path):
    out = tmp_path / "city"
    rc = _kill_midway(["synth", "--out", str(out), "--preset", "tiny", "--workers", "1"],
                      lambda: any(tmp_path.glob(".city.*/raw/images/*/*.jpg")))
    assert rc == 128 + signal.SIGTERM
    assert not out.exists() and _temporaries(tmp_path) == []


def test_interrupted_extract_leaves_nothing(tiny_city, tmp_path):
    out = tmp_path / "d.hdf5"
    argv = ["extract", *NET, "--root", str(tiny_city), "--batch-size", "4", "--out", str(out)]
    rc = _kill_midway(argv, lambda: any(tmp_path.glob(".d.hdf5.*")))
    assert rc == 128 + signal.SIGTERM and not out.exists() and _temporaries(tmp_path) == []
    assert main(argv) == 0 and out.exists() and _temporaries(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_training_leaves_no_temporaries(tiny_city, tmp_path, sig):
    run = tmp_path / "run"
    argv = ["train", *NET, "--root", str(tiny_city), "--epochs", "3", "--queries-per-epoch", "16",
            "--cache-size", "16", "--neg-num", "4", "--neg-pool", "40", "--tuples-per-batch", "4",
            "--optimizer", "adam", "--precise-bn", "0", "--out-dir", str(run)]
    # checkpoint.pth.tar is the last file an epoch writes: the kill lands in a later epoch
    rc = _kill_midway(argv, lambda: (run / "checkpoint.pth.tar").exists(), sig=sig)
    assert rc != 0 and _temporaries(run) == []
    # a rerun without --resume is refused (the run is not lost); with --resume it continues
    ck = run / "checkpoint.pth.tar"
    before = ck.read_bytes()
    assert main(argv) == 2 and ck.read_bytes() == before
    assert main([*argv, "--resume", str(ck)]) == 0
    assert len(pd.read_csv(run / "history.csv")) == 3


@pytest.mark.parametrize("signalled", [True, False], ids=["SIGTERM", "no-signal"])
def test_clean_up_failing_after_sigterm_still_exits_143(signalled, tmp_path, monkeypatch, capsys):
    """SIGTERM lands anywhere; clean-up code it unwinds through may raise another exception. The exit
    status still says "terminated" (143), not "internal error" (1); without a signal the error is raised."""
    import wakd.stages.summarize as summarize

    def command(cfg):
        try:
            if signalled:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler raises SystemExit(143) here
                time.sleep(10)
        finally:
            raise RuntimeError("a library's clean-up failed while unwinding")

    monkeypatch.setattr(summarize, "run", command)
    before = signal.getsignal(signal.SIGTERM)
    argv = ["summarize", "--csv", str(recall_csv(tmp_path / "in.csv")), "--out", str(tmp_path / "r.csv")]
    try:
        if signalled:
            assert main(argv) == 128 + signal.SIGTERM
            assert "terminated by signal 15" in capsys.readouterr().err
        else:
            with pytest.raises(RuntimeError, match="clean-up failed"):
                main(argv)
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_while_outputs_are_renamed_leaves_all_of_them(tmp_path, monkeypatch):
    """A signal that arrives between two renames of atomic_outputs is held until both are done."""
    import wakd.utils
    from wakd.cli import _terminate
    from wakd.utils import atomic_outputs

    replace = os.replace

    def replace_then_signal(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), signal.SIGTERM)  # lands after the first rename

    before = signal.signal(signal.SIGTERM, _terminate)
    monkeypatch.setattr(wakd.utils.os, "replace", replace_then_signal)
    # another thread, as torch and faiss start them: the kernel may hand the signal to it
    done = threading.Event()
    other = threading.Thread(target=done.wait, daemon=True)
    other.start()
    try:
        with pytest.raises(SystemExit) as exc:
            with atomic_outputs(tmp_path / "a.csv", tmp_path / "a.json") as (csv, note):
                csv.write_text("x")
                note.write_text("{}")
        assert exc.value.code == 128 + signal.SIGTERM  # delivered once both are in place
    finally:
        signal.signal(signal.SIGTERM, before)
        done.set()
    assert (tmp_path / "a.csv").read_text() == "x" and (tmp_path / "a.json").read_text() == "{}"
    assert _temporaries(tmp_path) == []


def test_stale_temporaries_of_a_killed_run_are_removed(tiny_city, tmp_path):
    """A SIGKILL leaves a temporary; the next write of the same output removes it."""
    stale = tmp_path / ".r.csv.999999.abc.tmp.csv"
    stale.write_text("left by a killed process")
    recall_csv(tmp_path / "in.csv")
    assert main(["summarize", "--csv", str(tmp_path / "in.csv"), "--out", str(tmp_path / "r.csv")]) == 0
    assert not stale.exists() and (tmp_path / "r.csv").exists()


def test_positions_csv_is_checked_where_it_is_read(tmp_path):
    """A positions CSV in another encoding or with a column named twice is refused, naming the column."""
    from wakd.index import read_positions
    from wakd.utils import WakdError

    (tmp_path / "twice.csv").write_text("image,east,north,east\na.jpg,1,2,3\n")
    with pytest.raises(WakdError, match="--positions .*twice.csv: column 'east' appears 2 times"):
        read_positions(tmp_path / "twice.csv")
    (tmp_path / "latin1.csv").write_bytes("image,east,north\ncafé.jpg,1,2\n".encode("latin-1"))
    with pytest.raises(WakdError, match="latin1.csv: not UTF-8 text"):
        read_positions(tmp_path / "latin1.csv")
    (tmp_path / "bom.csv").write_bytes("image,east,north\ncafé.jpg,1,2\n".encode("utf-8-sig"))
    assert read_positions(tmp_path / "bom.csv") == ("utm", {"café.jpg": (1.0, 2.0)})


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs (needs root, as the SLURM test does; skipped elsewhere)."""
    where = tmp_path / "full"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


def test_full_disk_hdf5_writers_end_in_one_line(files, tiny_city, full_disk, tmp_path):
    """gather, evaluate --predictions, index and export on a full file system: one line naming the output,
    exit 2, no temporary, no crash (HDF5 crashes closing a file whose writes failed: the program exits at once;
    torch's writers abort: they write into memory first)."""
    shards = []
    for i in (1, 2):
        shards.append(tmp_path / f"part{i}.h5")
        assert main(["extract", *NET, "--root", str(tiny_city), "--precise-bn", "0", "--shard", f"{i}/2",
                     "--out", str(shards[-1])]) == 0
    index_ck = tmp_path / "ck.pth.tar"
    from wakd.models.build import build_embednet

    torch.save({"model": build_embednet("mobilenetv3_small", 8).state_dict(),
                "config": {"arch": "mobilenetv3_small", "num_clusters": 8, "size": [48, 64], "arch_kwargs": {}}},
               index_ck)
    cases = [(["gather", "--shards", *map(str, shards)], "g.h5"),
             (["evaluate", "--descriptors", str(shards[0].parent / "whole.h5"), "--model", "m", "--out",
               str(tmp_path / "r.csv"), "--recall-values", "1", "136", "--predictions"], "p.h5"),  # 245 KB
             (["index", "--checkpoint", str(index_ck), "--images", str(tiny_city / "raw/images"), "--workers", "0"],
              "idx.h5"),
             # torch's own writers abort (SIGABRT) on a full disk: exports and checkpoints are written via memory
             (["export", "--checkpoint", str(index_ck), "--format", "torchscript"], "net.pt")]
    assert main(["gather", "--shards", *map(str, shards), "--out", str(shards[0].parent / "whole.h5")]) == 0
    for argv, name in cases:
        out = full_disk / name
        res = subprocess.run([sys.executable, "-m", "wakd", *argv, *([] if argv[-1] == "--predictions" else
                                                                     ["--out"]), str(out)],
                             capture_output=True, text=True, timeout=600)
        errors = [line for line in res.stderr.splitlines() if "Traceback" in line or line.startswith("wakd: error")]
        assert res.returncode == 2 and errors == [f"wakd: error: {out}: disk full while writing it (no space left "
                                                  f"in {full_disk}); nothing was written"], res.stderr[-2000:]
        assert list(full_disk.iterdir()) == []
