"""Losses, tuple mining and the training loop (tiny synthetic city, CPU)."""

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import state_digest

from wakd.data import load_dataset
from wakd.data.tuples import best_positive, hardest, mining_sets, negative_pool
from wakd.losses import check_loss_options, get_loss
from wakd.models.build import build_embednet
from wakd.stages.train import TrainConfig, TupleImages, mine_chunk, train
from wakd.utils import WakdError


def unit(*rows):
    x = torch.tensor(rows, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True)


def test_losses_hand_computed():
    q, p = unit([1.0, 0.0]), unit([1.0, 0.0])
    n = unit([0.0, 1.0], [1.0, 0.0])[None]  # |q-n|^2 = 2 and 0; |q-p| = 0; q.p = 1, q.n = 0 and 1
    # triplet on Euclidean distances (pytorch-NetVlad / OpenIBL), default margin sqrt(0.1)
    assert get_loss("triplet")(q, p, n).item() == pytest.approx((0 + math.sqrt(0.1)) / 2, abs=1e-6)
    assert get_loss("triplet")(q, p, n, 0.5).item() == pytest.approx(0.5 / 2, abs=1e-6)
    ref = torch.nn.functional.triplet_margin_loss(q.expand(2, 2), p.expand(2, 2), n[0], margin=0.3, eps=0)
    assert get_loss("triplet")(q, p, n, 0.3).item() == pytest.approx(ref.item(), abs=1e-6)
    # triplet_sq on squared distances, default margin 0.1
    assert get_loss("triplet_sq")(q, p, n).item() == pytest.approx((0 + 0.1) / 2)
    # SARE on negative squared distances (no temperature)
    joint = -math.log(math.exp(0) / (math.exp(0) + math.exp(-2) + math.exp(0)))
    assert get_loss("sare_joint")(q, p, n).item() == pytest.approx(joint)
    ind = (-math.log(1 / (1 + math.exp(-2))) - math.log(0.5)) / 2
    assert get_loss("sare_ind")(q, p, n).item() == pytest.approx(ind)
    # SARE on dot products / T (the WAKD code)
    t = 0.07
    joint_t = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0) + math.exp(1 / t)))
    assert get_loss("sare_joint")(q, p, n, temperature=t).item() == pytest.approx(joint_t)
    ind_t = (-math.log(math.exp(1 / t) / (math.exp(1 / t) + 1)) - math.log(0.5)) / 2
    assert get_loss("sare_ind")(q, p, n, temperature=t).item() == pytest.approx(ind_t)
    # on unit vectors the Euclidean form is the dot-product form at T = 0.5
    torch.manual_seed(0)
    qr, pr, nr = (torch.nn.functional.normalize(torch.randn(*s, 8, dtype=torch.float64), dim=-1)
                  for s in ((3,), (3,), (3, 5)))
    for name in ("sare_ind", "sare_joint"):
        assert get_loss(name)(qr, pr, nr).item() == pytest.approx(get_loss(name)(qr, pr, nr, temperature=0.5).item())
    with pytest.raises(WakdError, match="Unknown loss 'arcface'; expected one of triplet"):
        get_loss("arcface")
    with pytest.raises(WakdError, match="--temperature -1"):
        check_loss_options("sare_ind", None, -1.0)
    with pytest.raises(WakdError, match="--margin 0"):
        check_loss_options("triplet", 0.0, None)


def test_mining_rules(tiny_city):
    ds = load_dataset("synthetic", "train", tiny_city)
    sets = mining_sets(ds, neg_num=5)
    rng = np.random.default_rng(0)
    for q in sets.queries[:30]:
        d_pos = np.linalg.norm(ds.db_utm[sets.positives[q]] - ds.q_utm[q], axis=1)
        assert len(d_pos) and (d_pos <= 10.0).all()
        first = negative_pool(rng, ds.num_db, sets.non_negatives[q], 40)
        pool = negative_pool(rng, ds.num_db, sets.non_negatives[q], 40, previous=np.r_[-1, first[:3]])
        assert len(first) == 40 and set(first[:3]) <= set(pool)  # previous hard negatives stay candidates
        for cand in (first, pool):
            assert (np.linalg.norm(ds.db_utm[cand] - ds.q_utm[q], axis=1) > 25.0).all()
    # hardest keeps the most similar candidates, best positive the nearest in descriptor space
    qd = np.array([1.0, 0.0])
    cand = np.array([7, 3, 9, 4])
    desc = np.array([[0.1, 1], [0.9, 0.1], [0.5, 0.5], [0.9, 0.1]])
    assert hardest(qd, cand, desc, 3).tolist() == [3, 4, 9]
    assert best_positive(qd, np.array([11, 12]), np.array([[0.2, 1.0], [0.8, 0.1]])) == 12
    with pytest.raises(WakdError, match="needs at least that many"):
        mining_sets(ds, neg_num=10**6)


def _cfg(tiny_city, tmp_path, clusters, **kw):
    base = dict(arch="resnet18", dataset="synthetic", root=str(tiny_city), out_dir=str(tmp_path / "run"),
                num_clusters=8, clusters=str(clusters), epochs=2, loss="triplet_sq", optimizer="adam", lr=3e-4,
                weight_decay=0.0, tuples_per_batch=4, neg_num=4, neg_pool=60, cache_size=40, queries_per_epoch=64,
                workers=0, batch_size=32, seed=0, precision="fp32", recall_values=(1, 5, 10))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def clusters(teacher_clusters):
    return teacher_clusters


def test_training_learns_and_resume_is_bitwise(tiny_city, tmp_path, clusters):
    cfg = _cfg(tiny_city, tmp_path, clusters)
    last = train(cfg)
    hist = pd.read_csv(tmp_path / "run/history.csv")
    assert list(hist["epoch"]) == [0, 1]
    assert {"loss", "R@1", "R@5", "cache_seconds", "train_seconds", "cache_share"} <= set(hist.columns)
    ck = torch.load(tmp_path / "run/checkpoint.pth.tar", weights_only=True)
    assert ck["epoch"] == 1 and ck["hard_negatives"].shape[1] == 4
    assert (tmp_path / "run/model_best.pth.tar").exists()
    assert last["R@5"] == hist["R@5"].iloc[-1]

    # interrupted after epoch 0, resumed: the same weights as the uninterrupted run
    cfg1 = _cfg(tiny_city, tmp_path, clusters, epochs=1, out_dir=str(tmp_path / "part"))
    train(cfg1)
    cfg2 = _cfg(tiny_city, tmp_path, clusters, out_dir=str(tmp_path / "part"))
    train(cfg2, resume=tmp_path / "part/checkpoint.pth.tar")
    a = torch.load(tmp_path / "run/checkpoint.pth.tar", weights_only=True)
    b = torch.load(tmp_path / "part/checkpoint.pth.tar", weights_only=True)
    assert state_digest(a["model"]) == state_digest(b["model"])
    assert torch.equal(a["hard_negatives"], b["hard_negatives"])

    # the checkpoint loads into an unwrapped model for extraction
    model = build_embednet("resnet18", 8, checkpoint=tmp_path / "run/model_best.pth.tar")
    assert state_digest(model.state_dict()) == state_digest(torch.load(tmp_path / "run/model_best.pth.tar",
                                                             weights_only=True)["model"])


def _tuple_loss(model, tuples, ds, cfg):
    """Mean triplet loss of ``model`` on fixed tuples (eval mode, no grad)."""
    x = torch.stack([TupleImages(tuples, ds, None)[i][0] for i in range(len(tuples))])
    model.eval()
    with torch.no_grad():
        d = model(x.flatten(0, 1)).view(x.shape[0], x.shape[1], -1)
    return get_loss(cfg.loss)(d[:, 0], d[:, 1], d[:, 2:], cfg.margin).item()


def test_loss_decreases_and_recall_improves(tiny_city, tmp_path, clusters):
    from wakd.stages.train import validate

    cfg = _cfg(tiny_city, tmp_path, clusters, epochs=4, queries_per_epoch=120, lr=1e-3)
    ds = load_dataset("synthetic", "train", tiny_city)
    val = load_dataset("synthetic", "val", tiny_city)
    torch.manual_seed(0)
    start_model = build_embednet("resnet18", 8, clusters=clusters)
    sets = mining_sets(ds, cfg.neg_num)
    hard = np.full((ds.num_queries, cfg.neg_num), -1)
    fixed = mine_chunk(start_model, ds, sets.queries[:32], sets, hard, cfg, np.random.default_rng(1),
                       torch.device("cpu"))  # tuples that are hard for the starting model
    start_loss = _tuple_loss(start_model, fixed, ds, cfg)
    start_recall = validate(start_model, val, cfg, torch.device("cpu"))
    train(cfg)
    trained = build_embednet("resnet18", 8, checkpoint=tmp_path / "run/checkpoint.pth.tar")
    assert _tuple_loss(trained, fixed, ds, cfg) < start_loss
    assert pd.read_csv(tmp_path / "run/history.csv")["R@5"].max() > start_recall["R@5"]


def test_non_finite_loss_stops_and_keeps_checkpoint(tiny_city, tmp_path, clusters):
    train(_cfg(tiny_city, tmp_path, clusters, epochs=1, queries_per_epoch=16))
    ck = tmp_path / "run/checkpoint.pth.tar"
    before = ck.read_bytes()
    with pytest.raises(WakdError, match="loss became nan at epoch 1; stopped, the last good checkpoint"):
        train(_cfg(tiny_city, tmp_path, clusters, epochs=2, queries_per_epoch=16), resume=ck,
              objective=lambda device, ds: lambda *args, **kw: {"loss": torch.tensor(float("nan"))})
    assert ck.read_bytes() == before


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun on Linux")
def test_torchrun_two_processes_gloo(tiny_city, tmp_path, clusters):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "wakd", "train", "--arch", "resnet18", "--num-clusters", "8", "--clusters", str(clusters),
           "--dataset", "synthetic", "--root", str(tiny_city), "--out-dir", str(out), "--epochs", "1",
           "--neg-num", "4", "--neg-pool", "60", "--cache-size", "40", "--queries-per-epoch", "32",
           "--workers", "0", "--threads", "1", "--precision", "fp32", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    ck = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    single = build_embednet("resnet18", 8).state_dict()
    assert list(ck["model"]) == list(single)  # no "module." prefixes
    # both ranks' hard negatives are in the checkpoint: 16 queries each
    assert int((ck["hard_negatives"][:, 0] >= 0).sum()) == 32
    assert len(pd.read_csv(out / "history.csv")) == 1
