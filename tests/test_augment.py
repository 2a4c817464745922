"""Photometric augmentation of the training steps (--jitter, --relight), condition-balanced queries, and the
hubness and captions of the evaluation (issue 26)."""

import subprocess
import sys
from collections import Counter

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import state_digest

from wakd.augment import Photometric
from wakd.data import load_dataset
from wakd.recall import hub_share
from wakd.stages.extract import ExtractConfig
from wakd.stages.extract import run as run_extract
from wakd.stages.train import TrainConfig, train
from wakd.training.loop import Run, epoch_queries
from wakd.utils import WakdError


def _batch(n=6, seed=0):
    """Normalised images (pixels in [0, 1], like the loader's)."""
    from wakd.data.loader import IMAGENET_MEAN, IMAGENET_STD

    g = torch.Generator().manual_seed(seed)
    img = torch.rand(n, 3, 24, 32, generator=g)
    x = (img - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x.contiguous(memory_format=torch.channels_last)


def test_augmentation_is_seeded_per_step_and_per_image():
    x = _batch()
    aug = Photometric((0.7, 0.7, 0.7, 0.5), 0.5, seed=3)
    a, b = aug(x, (1, 2, 0)), aug(x, (1, 2, 0))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert not torch.equal(a, aug(x, (1, 3, 0))) and not torch.equal(a, aug(x, (1, 2, 1)))  # step, rank
    assert not torch.equal(a, Photometric((0.7, 0.7, 0.7, 0.5), 0.5, seed=4)(x, (1, 2, 0)))
    change = (a - x).abs().flatten(1).mean(1)
    assert len(set(change.tolist())) == len(x)  # every image its own draw
    before = torch.get_rng_state()
    aug(x, (0, 0, 0))
    assert torch.equal(before, torch.get_rng_state())  # the global random state is not drawn from
    # off: the batch itself; relight alone changes only the picked images, and darkens them
    assert Photometric()(x, (0, 0, 0)) is x
    dark = Photometric(relight=0.5)(x, (0, 1, 0))
    changed = (dark - x).flatten(1).abs().amax(1) > 1e-4
    assert 0 < changed.sum() < len(x)
    assert dark[changed].mean() < x[changed].mean()
    torch.testing.assert_close(dark[~changed], x[~changed], rtol=0, atol=1e-5)  # up to the normalisation's rounding


def _cfg(tiny_city, tmp_path, clusters, **kw):
    base = dict(arch="resnet18", dataset="synthetic", root=str(tiny_city), out_dir=str(tmp_path / "run"),
                num_clusters=8, clusters=str(clusters), epochs=2, loss="triplet_sq", optimizer="adam", lr=3e-4,
                weight_decay=0.0, tuples_per_batch=4, neg_num=4, neg_pool=60, cache_size=40, queries_per_epoch=24,
                workers=0, batch_size=32, seed=0, precision="fp32", recall_values=(1, 5, 10), size=(48, 64),
                precise_bn=64,
                jitter=(0.7, 0.7, 0.7, 0.5), relight=0.5)
    base.update(kw)
    return TrainConfig(**base)


def test_augmented_training_resumes_bitwise_and_extraction_ignores_it(tiny_city, tmp_path, teacher_clusters):
    train(_cfg(tiny_city, tmp_path, teacher_clusters))
    train(_cfg(tiny_city, tmp_path, teacher_clusters, epochs=1, out_dir=str(tmp_path / "part")))
    train(_cfg(tiny_city, tmp_path, teacher_clusters, out_dir=str(tmp_path / "part")),
          resume=tmp_path / "part/checkpoint.pth.tar")
    a = torch.load(tmp_path / "run/checkpoint.pth.tar", weights_only=True)
    b = torch.load(tmp_path / "part/checkpoint.pth.tar", weights_only=True)
    assert state_digest(a["model"]) == state_digest(b["model"])
    assert a["config"]["jitter"] == [0.7, 0.7, 0.7, 0.5] and a["config"]["relight"] == 0.5
    steps = pd.read_csv(tmp_path / "run/steps.csv")
    assert steps["loss"].tolist() == pd.read_csv(tmp_path / "part/steps.csv")["loss"].tolist()

    # the same run unaugmented mines the same first tuples (the augmentation draws nothing global) and
    # takes different steps
    train(_cfg(tiny_city, tmp_path, teacher_clusters, epochs=1, out_dir=str(tmp_path / "plain"),
               jitter=(0.0, 0.0, 0.0, 0.0), relight=0.0))
    plain = torch.load(tmp_path / "plain/checkpoint.pth.tar", weights_only=True)
    part1 = torch.load(tmp_path / "run/checkpoint.pth.tar", weights_only=True)
    assert pd.read_csv(tmp_path / "plain/steps.csv")["loss"].iloc[0] != steps["loss"].iloc[0]
    assert state_digest(plain["model"]) != state_digest(part1["model"])

    # extraction reads the network, not how it was trained: a checkpoint whose recorded augmentation is
    # changed describes every image bitwise alike
    a["config"]["jitter"], a["config"]["relight"] = [0.0, 0.0, 0.0, 0.0], 0.0
    torch.save(a, tmp_path / "relabelled.pth.tar")
    common = dict(arch="resnet18", num_clusters=8, dataset="synthetic", root=str(tiny_city), split="test",
                  size=(48, 64), workers=0, precision="fp32", device="cpu")
    run_extract(ExtractConfig(out=str(tmp_path / "a.h5"), checkpoint=str(tmp_path / "run/checkpoint.pth.tar"),
                              **common))
    run_extract(ExtractConfig(out=str(tmp_path / "b.h5"), checkpoint=str(tmp_path / "relabelled.pth.tar"), **common))
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        for g in ("db", "queries"):
            assert fa[f"{g}/descriptors"][:].tobytes() == fb[f"{g}/descriptors"][:].tobytes()


def test_condition_balanced_queries(tiny_city, tmp_path, teacher_clusters):
    cfg = _cfg(tiny_city, tmp_path, teacher_clusters, queries_per_epoch=60, query_balance="condition")
    ds = load_dataset("synthetic", "train", tiny_city)
    from wakd.data.tuples import mining_sets

    run = Run(cfg=cfg, rank=0, world=1, device=torch.device("cpu"), out=tmp_path, state=tmp_path, ds=ds,
              sets=mining_sets(ds, cfg.neg_num))
    conds = np.asarray(ds.q_conditions)
    usable = Counter(conds[run.sets.queries].tolist())
    drawn = Counter()
    for epoch in range(20):
        q, _ = epoch_queries(run, epoch)
        assert len(q) == 60 and len(set(q.tolist())) == 60 and set(q.tolist()) <= set(run.sets.queries.tolist())
        drawn.update(conds[q].tolist())
    share = {c: drawn[c] / sum(drawn.values()) for c in usable}
    assert usable["day"] > 1.5 * usable["night"]  # the training split favours day ...
    assert max(share.values()) - min(share.values()) < 0.12, share  # ... the balanced epochs do not
    q0, _ = epoch_queries(run, 0)
    q0b, _ = epoch_queries(run, 0)
    assert q0.tolist() == q0b.tolist()  # seeded by (seed, epoch)


def test_hub_share():
    assert hub_share(np.array([3, 3, 3, 1])) == 0.75
    assert hub_share(np.array([0, 1, 2, 3])) == 0.25
    assert hub_share(np.array([-1, 2, 2])) == 1.0  # padded rows do not count
    assert hub_share(np.array([], dtype=np.int64)) == 0.0


@pytest.mark.parametrize("args, message", [
    (["--jitter", "0.7", "0.7", "0.7"], "--jitter 0.7 0.7 0.7: expected 4 values"),
    (["--jitter", "0.7", "0.7", "0.7", "0.8"], "hue <= 0.5"),
    (["--jitter", "0.7", "-1", "0.7", "0.5"], "--jitter"),
    (["--relight", "1.5"], "--relight 1.5: expected a probability"),
    (["--query-balance", "night"], "--query-balance"),
])
def test_augmentation_options_are_checked(tmp_path, args, message):
    out = subprocess.run([sys.executable, "-m", "wakd", "train", "--arch", "resnet18", "--dataset", "synthetic",
                          "--root", str(tmp_path),
                          "--out-dir", str(tmp_path / "run"), *args], capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


def test_query_balance_needs_recorded_conditions(tmp_path, teacher_clusters):
    from PIL import Image

    root = tmp_path / "folder"
    for split in ("train", "val"):
        for kind in ("database", "queries"):
            d = root / "images" / split / kind
            d.mkdir(parents=True)
            for i in range(12):
                east = 10.0 * (i % 6) + (0.5 if kind == "queries" else 0.0) + (1000 if i >= 6 else 0)
                Image.new("RGB", (32, 24), (20 * i, 50, 90)).save(d / f"@{east:.2f}@{5.0:.2f}@17@T@.jpg")
    cfg = TrainConfig(arch="resnet18", dataset="folder", root=str(root), out_dir=str(tmp_path / "run"),
                      num_clusters=8, clusters=str(teacher_clusters), epochs=1, tuples_per_batch=1, neg_num=1,
                      neg_pool=2, workers=0, query_balance="condition", size=(24, 32))
    with pytest.raises(WakdError, match="--query-balance condition: .* records no capture condition"):
        train(cfg)
