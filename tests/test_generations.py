"""Generations with region soft labels (SFRS, the WAKD script): regions, soft loss, tuple-scope Gram terms,
difficult positives, k-reciprocal re-ranking, restarts and resume (CPU)."""


import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import state_digest

from wakd.cli import main
from wakd.data.tuples import difficult_positives
from wakd.losses import region_hardest_negatives, region_soft_loss
from wakd.models.netvlad import NetVLAD
from wakd.models.regions import anchor_region_similarities, region_vlads
from wakd.rerank import Reranker
from wakd.stages.distill import DistillConfig, distill, gram_rows, kd_terms, pick_rows
from wakd.stages.train import RankingObjective, Run, TrainConfig, build_model, load_splits, start_generation
from wakd.training import loop as train_stage
from wakd.utils import WakdError

# the authors' regions as rectangles of cells: (first row, last row + 1, first col, last col + 1) in cells
SFRS = [(0, 2, 0, 2), (0, 1, 0, 2), (1, 2, 0, 2), (0, 2, 0, 1), (0, 2, 1, 2), (0, 1, 0, 1), (0, 1, 1, 2),
        (1, 2, 0, 1), (1, 2, 1, 2)]
WAKD = [(0, 3, 0, 3), (0, 1, 0, 3), (1, 2, 0, 3), (2, 3, 0, 3), (0, 3, 0, 1), (0, 3, 1, 2), (0, 3, 2, 3)]


def _netvlad_numpy(x, conv, centroids):
    """Raw residual sums [K, D] of locations x [D, L] (rows L2-normalised per location, as NetVLAD)."""
    x = x / np.linalg.norm(x, axis=0, keepdims=True)
    logits = conv @ x
    a = np.exp(logits - logits.max(0))
    a /= a.sum(0)
    return a @ x.T - a.sum(1, keepdims=True) * centroids


def _norm(v):
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    v = v.reshape(-1)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize(("layout", "grid", "cells"), [("sfrs", 2, SFRS), ("wakd", 3, WAKD)])
def test_region_descriptors_are_netvlad_of_their_cells_summed(layout, grid, cells):
    torch.manual_seed(0)
    pool = NetVLAD(num_clusters=3, dim=4)
    h = w = 6
    feats = torch.randn(2, 4, h, w, dtype=torch.float64).float()
    got = region_vlads(pool, feats, layout).detach()
    assert got.shape == (2, len(cells), 3 * 4)
    conv = pool.conv.weight.detach()[:, :, 0, 0].double().numpy()
    cen = pool.centroids.detach().double().numpy()
    step = h // grid
    for n in range(2):
        x = feats[n].double().numpy()
        cell = {(i, j): _netvlad_numpy(x[:, i * step:(i + 1) * step, j * step:(j + 1) * step].reshape(4, -1),
                                       conv, cen) for i in range(grid) for j in range(grid)}
        for r, (r0, r1, c0, c1) in enumerate(cells):
            v = sum(cell[(i, j)] for i in range(r0, r1) for j in range(c0, c1))
            np.testing.assert_allclose(got[n, r].numpy(), _norm(v), atol=1e-5)
    # region 0 is the global descriptor
    torch.testing.assert_close(got[:, 0], pool(feats).detach(), atol=1e-5, rtol=0)


def test_regions_of_a_map_not_divisible_by_the_grid():
    """7 x 8 map, 3x3 grid: rows 3+2+2, columns 3+3+2 (torch.tensor_split); the strips are crops."""
    torch.manual_seed(1)
    pool = NetVLAD(num_clusters=2, dim=3)
    feats = torch.randn(1, 3, 7, 8)
    got = region_vlads(pool, feats, "wakd").detach()
    crops = [feats, feats[:, :, :3], feats[:, :, 3:5], feats[:, :, 5:], feats[..., :3], feats[..., 3:6], feats[..., 6:]]
    for r, crop in enumerate(crops):
        torch.testing.assert_close(got[0, r], pool(crop)[0].detach(), atol=1e-5, rtol=0)


def test_region_soft_loss_by_hand():
    g = torch.Generator().manual_seed(2)
    student, labels = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    t0, tg = 0.07, 0.05
    s, lab = student.double().numpy().reshape(2, -1) / t0, labels.double().numpy().reshape(2, -1) / tg
    logq = s - s.max(1, keepdims=True) - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True))
    p = np.exp(lab - lab.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = np.mean(-(p * logq).sum(1))
    assert region_soft_loss(student, labels, t0, tg).item() == pytest.approx(want, rel=1e-5)


def test_anchor_similarities_and_region_hardest_negatives_by_hand():
    q = F.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=1)
    negs = F.normalize(torch.tensor([[[[0.0, 1.0, 0.0], [0.9, 0.1, 0.0]], [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]]]), dim=-1)
    picked = region_hardest_negatives(q, negs)
    torch.testing.assert_close(picked[0, 0], negs[0, 0, 1])
    torch.testing.assert_close(picked[0, 1], negs[0, 1, 0])
    anchor = torch.stack([q[0], negs[0, 1, 1]])[None]  # [1, R=2, 3]
    sims = anchor_region_similarities(anchor, negs)
    torch.testing.assert_close(sims, torch.einsum("d,prd->pr", q[0], negs[0])[None])


def _authors_gram(x):
    return F.normalize(x @ x.T, p=2, dim=1)


def test_tuple_scope_gram_terms_follow_the_authors_nine_images():
    """b=2 tuples of q, p, 3 negatives, 3 difficult positives: the authors' per-process batch is
    inputs_easy (q, p, 3 negatives) + inputs_diff (q again, 3 difficult positives) = 9 images; their
    loss is MSE(G_s, G_t) per process; ours averages it over tuples (equal sizes: the same as the mean
    of per-tuple MSEs)."""
    g = torch.Generator().manual_seed(3)
    b, t = 2, 8
    rows = gram_rows(t, 3, "tuple")
    assert rows == [0, 1, 2, 3, 4, 0, 5, 6, 7]
    assert gram_rows(t, 3, "batch") is None
    s = {"vlad_intra": torch.randn(b * t, 12, generator=g), "features": torch.rand(b * t, 5, 4, 3, generator=g)}
    tch = {"vlad_intra": torch.randn(b * t, 20, generator=g), "att": torch.rand(b * t, 30, generator=g)}
    got = kd_terms(pick_rows(s, rows, b, t), pick_rows(tch, rows, b, t), "rownorm", len(rows))
    from wakd.models.attention import attention_map

    att_s = attention_map(s["features"])
    want_v, want_a = [], []
    for k in range(b):
        idx = [k * t + r for r in rows]
        want_v.append(F.mse_loss(_authors_gram(s["vlad_intra"][idx]), _authors_gram(tch["vlad_intra"][idx])))
        want_a.append(F.mse_loss(_authors_gram(att_s[idx]), _authors_gram(tch["att"][idx])))
    assert got["kd_vlad"].item() == pytest.approx(torch.stack(want_v).mean().item(), rel=1e-5)
    assert got["kd_att"].item() == pytest.approx(torch.stack(want_a).mean().item(), rel=1e-5)


def test_difficult_positives_promoted_first():
    nearest = np.array([10, 11, 12, 13])
    assert difficult_positives(nearest, None, 3).tolist() == [10, 11, 12]  # generation 0: the nearest
    # re-ranked order 11, 12, 10, 13: 11 and 12 promoted (by one place each), 13 stays, 10 demoted
    assert difficult_positives(nearest, np.array([0.5, 0.1, 0.3, 0.9]), 3).tolist() == [11, 12, 13]
    assert difficult_positives(nearest, np.array([0.5, 0.1, 0.3, 0.9]), 4).tolist() == [11, 12, 13, 10]
    assert difficult_positives(np.array([7]), None, 3).tolist() == [7, 7, 7]


def _dense_rerank(x, k1=20, lam=0.1):
    """The textbook k-reciprocal re-ranking (Zhong et al. 2017, k2 = 1) on a full distance matrix,
    with OpenIBL's input (squared distances, squared again)."""
    d = (np.maximum(2 - 2 * x @ x.T, 0)) ** 2
    d = d / d.max(1, keepdims=True)
    rank = np.argsort(d, axis=1, kind="stable")
    n = len(x)
    v = np.zeros((n, n))

    def recip(i, k):
        f = rank[i, :k + 1]
        return f[[i in rank[j, :k + 1] for j in f]]

    for i in range(n):
        r = recip(i, k1)
        exp = list(r)
        for c in r:
            rc = recip(c, int(np.around(k1 / 2)))
            if len(np.intersect1d(rc, r)) > 2 / 3 * len(rc):
                exp += list(rc)
        exp = np.unique(exp)
        w = np.exp(-d[i, exp])
        v[i, exp] = w / w.sum()
    inter = np.minimum(v[:, None, :], v[None, :, :]).sum(-1)
    jac = 1 - inter / (2 - inter)
    return jac * (1 - lam) + d * lam


def test_reranker_equals_the_dense_computation():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(6, 8))
    x = np.repeat(centres, 10, axis=0) + 0.4 * rng.normal(size=(60, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dense = _dense_rerank(x, k1=6)
    rr = Reranker(x, k1=6, lambda_value=0.1)
    for i in (0, 17, 42):
        js = np.array([1, 5, 11, 30, 59])
        np.testing.assert_allclose(rr.distances(i, js), dense[i, js], atol=1e-5)


def test_generation_options_are_checked():
    with pytest.raises(WakdError, match="--pos-num"):
        TrainConfig(arch="resnet18", dataset="synthetic", out_dir="x", generations=2)
    with pytest.raises(WakdError, match="--soft-temperatures"):
        TrainConfig(arch="resnet18", dataset="synthetic", out_dir="x", soft_temperatures=(0.07, 0.0))
    cfg = TrainConfig(arch="resnet18", dataset="synthetic", out_dir="x", generations=3, pos_num=2, epochs=4,
                      first_generation_epochs=1)
    assert cfg.total_epochs == 9
    assert [cfg.generation_of(e) for e in (0, 1, 4, 5, 8)] == [(0, 0), (1, 0), (1, 3), (2, 0), (2, 3)]
    assert main(["train", "--arch", "resnet18", "--dataset", "synthetic", "--out-dir", "x", "--generations", "2",
                 "--soft-labels", "latest"]) == 2


def _params(model):
    """Digest of the weights only (a labels network built from random weights gets precise-BN statistics)."""
    return state_digest(dict(model.named_parameters()))


@pytest.mark.parametrize("labels", ["previous", "initial"])
def test_generation_restart_restores_the_initial_weights(tiny_city, student_clusters, labels):
    cfg = TrainConfig(arch="mobilenetv3_small", dataset="synthetic", root=str(tiny_city), out_dir="unused",
                      num_clusters=8, clusters=str(student_clusters), generations=2, pos_num=2, soft_labels=labels,
                      neg_num=4, tuples_per_batch=4, precise_bn=40, workers=0)
    run = Run(cfg, 0, 1, torch.device("cpu"), None, None)
    load_splits(run)
    build_model(run)
    initial, initial_params = state_digest(run.model.state_dict()), _params(run.model)
    with torch.no_grad():
        for p in run.model.parameters():
            p.add_(0.01)
    ended = state_digest(run.model.state_dict())
    objective = RankingObjective(cfg)
    start_generation(run, 1, objective)
    assert state_digest(run.model.state_dict()) == initial
    if labels == "previous":
        assert state_digest(objective.labels.state_dict()) == ended
    else:  # the network as built, its BatchNorm statistics re-estimated (trained from random weights)
        assert _params(objective.labels) == initial_params
        assert state_digest(objective.labels.state_dict()) != initial
    assert not any(p.requires_grad for p in objective.labels.parameters())
    assert run.opt.state == {}  # a new optimiser


def test_initial_soft_labels_come_from_the_built_network_not_init(tiny_city, teacher_clusters, trained_teacher):
    """The WAKD script's model_cache is the network as built (ImageNet + k-means), not its --resume student."""
    cfg = TrainConfig(arch="resnet18", dataset="synthetic", root=str(tiny_city), out_dir="unused", num_clusters=8,
                      clusters=str(teacher_clusters), generations=2, pos_num=2, soft_labels="initial", neg_num=4,
                      tuples_per_batch=4, init=str(trained_teacher), precise_bn=40, workers=0)
    run = Run(cfg, 0, 1, torch.device("cpu"), None, None)
    load_splits(run)
    build_model(run)
    torch.manual_seed(cfg.seed)
    from wakd.models.build import build_embednet

    built = build_embednet("resnet18", 8, clusters=str(teacher_clusters))
    saved = torch.load(trained_teacher, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in run.model.named_parameters())  # the model starts from --init
    objective = RankingObjective(cfg)
    start_generation(run, 1, objective)
    assert _params(objective.labels) == _params(built) != _params(run.model)


def _gcfg(tiny_city, out, clusters, teacher, **kw):
    base = dict(arch="mobilenetv3_small", dataset="synthetic", root=str(tiny_city), out_dir=str(out), num_clusters=8,
                clusters=str(clusters), teacher=str(teacher), epochs=2, generations=2, pos_num=3, pos_pool=6,
                gram_scope="tuple", optimizer="adam", lr=1e-3, weight_decay=0.0, tuples_per_batch=4, neg_num=3,
                neg_pool=60, cache_size=40, queries_per_epoch=24, workers=0, precision="fp32", recall_values=(1, 5))
    base.update(kw)
    return DistillConfig(**base)


def test_two_generations_and_resume_mid_generation_is_bitwise(tiny_city, tmp_path, trained_teacher, student_clusters,
                                                              monkeypatch, caplog):
    whole = _gcfg(tiny_city, tmp_path / "whole", student_clusters, trained_teacher)
    with caplog.at_level("INFO", logger="wakd.stages.train"):
        distill(whole)
    said = caplog.text  # epoch lines count from 1 and name the generation; steps logged as lines off a terminal
    assert "epoch 3/3 (generation 1):" in said and "epoch 1/3 train: step 1/6" in said and "\r" not in said
    hist = pd.read_csv(tmp_path / "whole/history.csv")
    assert list(hist["generation"]) == [0, 1, 1] and list(hist["epoch"]) == [0, 1, 2]
    steps = pd.read_csv(tmp_path / "whole/steps.csv")
    assert {"soft_loss", "kd_vlad", "kd_att"} <= set(steps.columns)
    assert (steps[steps["epoch"] == 0]["soft_loss"] == 0).all() and (steps[steps["epoch"] > 0]["soft_loss"] > 0).all()
    ck = torch.load(tmp_path / "whole/checkpoint.pth.tar", weights_only=True)
    assert ck["generation"] == 1 and "label_model" in ck

    # killed after generation 1's first epoch was saved, then resumed: the same weights
    real_end = train_stage.end_epoch

    def killed(run, epoch, *args):
        real_end(run, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_stage, "end_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        distill(_gcfg(tiny_city, tmp_path / "part", student_clusters, trained_teacher))
    monkeypatch.setattr(train_stage, "end_epoch", real_end)
    distill(_gcfg(tiny_city, tmp_path / "part", student_clusters, trained_teacher,
                  resume=str(tmp_path / "part/checkpoint.pth.tar")))
    a = torch.load(tmp_path / "whole/checkpoint.pth.tar", weights_only=True)
    b = torch.load(tmp_path / "part/checkpoint.pth.tar", weights_only=True)
    assert state_digest(a["model"]) == state_digest(b["model"])
    assert pd.read_csv(tmp_path / "part/history.csv").equals(hist.assign(**{
        c: pd.read_csv(tmp_path / "part/history.csv")[c] for c in hist.columns if c.endswith("seconds")
        or c == "cache_share"}))


def test_init_starts_every_generation_and_is_checked(tiny_city, tmp_path, trained_teacher, student_clusters):
    with pytest.raises(WakdError, match="--init"):
        distill(_gcfg(tiny_city, tmp_path / "x", student_clusters, trained_teacher, init=str(tmp_path / "none.pth")))
    with pytest.raises(WakdError, match="--init"):  # a resnet18 checkpoint cannot start a mobilenet
        distill(_gcfg(tiny_city, tmp_path / "y", student_clusters, trained_teacher, init=str(trained_teacher)))
