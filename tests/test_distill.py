"""WAKD distillation: attention maps, Gram matrices, the KD loss and a short distillation run (CPU)."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from wakd.data import load_dataset
from wakd.models.attention import attention_map, channel_weights
from wakd.models.build import build_embednet
from wakd.stages.distill import (
    DistillConfig,
    DistillObjective,
    TeacherCache,
    distill,
    gram,
    kd_terms,
    load_teacher,
    soft_ranking_kd,
)
from wakd.stages.train import TupleImages
from wakd.utils import WakdError


def test_attention_map_properties():
    torch.manual_seed(0)
    feats = torch.randn(3, 16, 5, 7, requires_grad=True)
    att = attention_map(feats)
    assert att.shape == (3, 35)
    assert (att >= 0).all()
    assert torch.allclose(att.max(dim=1).values, torch.ones(3))
    # gradients of a loss on the map reach the features (the student learns through A)
    att.sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    # a zero map stays zero rather than dividing by zero
    assert torch.equal(attention_map(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 4))


def test_attention_weights_are_the_softmax_gradient():
    torch.manual_seed(1)
    feats = torch.randn(2, 6, 3, 4)
    w = channel_weights(feats)
    assert not w.requires_grad
    a = feats.clamp_min(0)
    p = a.mean(dim=(2, 3)).softmax(dim=1)
    m = p.argmax(dim=1)
    # d max_c p / d A_c(h,w) = p_m (delta_cm - p_c) / (H W), uniform over space
    expected = p.gather(1, m[:, None]) * (torch.nn.functional.one_hot(m, 6) - p) / 12
    assert torch.allclose(w, expected, atol=1e-7)
    cam = torch.relu((a * w[:, :, None, None]).mean(dim=1)).flatten(1)
    assert torch.allclose(attention_map(feats), cam / cam.max(dim=1, keepdim=True).values)


def test_gram_forms_hand_computed():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    # rownorm (the WAKD code): X Xt = [[25, 3, 8], [3, 1, 0], [8, 0, 4]], then each row L2-normalised
    xxt = torch.tensor([[25.0, 3, 8], [3, 1, 0], [8, 0, 4]])
    expected = xxt / xxt.norm(dim=1, keepdim=True)
    g = gram(x)
    assert torch.allclose(g, expected)
    assert g[0, 0].item() == pytest.approx(25 / (25**2 + 3**2 + 8**2) ** 0.5)
    assert torch.allclose(g.norm(dim=1), torch.ones(3)) and not torch.allclose(g, g.T)
    # cosine: rows normalised first -> symmetric, unit diagonal, scale-invariant per image
    c = gram(x, "cosine")
    assert torch.allclose(c, torch.tensor([[1.0, 0.6, 0.8], [0.6, 1.0, 0.0], [0.8, 0.0, 1.0]]))
    assert torch.allclose(gram(x * torch.tensor([[2.0], [5.0], [0.5]]), "cosine"), c)
    assert torch.equal(gram(torch.zeros(2, 3), "cosine")[0], torch.zeros(2))
    assert torch.equal(gram(torch.zeros(2, 3))[0], torch.zeros(2))
    with pytest.raises(WakdError, match="--gram 'gauss'"):
        gram(x, "gauss")


def test_soft_ranking_kd_hand_computed():
    """KL from the teacher's softmax over each tuple's candidates to the student's (dot products / T)."""
    import math

    t = 0.5
    # one tuple: query, positive, one negative; teacher: q.p = 1, q.n = 0; student: q.p = 0, q.n = 1
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    pt = torch.tensor([1 / t, 0.0]).softmax(0)
    ps = torch.tensor([0.0, 1 / t]).softmax(0)
    expected = sum(pt[i] * math.log(pt[i] / ps[i]) for i in range(2))
    assert soft_ranking_kd(student, teacher, 1, 3, t).item() == pytest.approx(float(expected), rel=1e-5)
    assert soft_ranking_kd(teacher, teacher, 1, 3, t).item() == pytest.approx(0.0, abs=1e-7)
    # only the student receives a gradient
    s = student.clone().requires_grad_(True)
    tt = teacher.clone().requires_grad_(True)
    soft_ranking_kd(s, tt, 1, 3, t).backward()
    assert s.grad.abs().sum() > 0 and tt.grad is None


def test_rownorm_kd_is_much_weaker_than_cosine_kd():
    """The reason for the default: at the authors' weight, the cosine form's KD swamps the ranking loss."""
    torch.manual_seed(5)
    norm = torch.nn.functional.normalize
    base = torch.randn(1, 16, 32)  # VLAD vectors of one city share a large common part, as real ones do
    s = {"vlad_intra": norm(base + 0.5 * torch.randn(28, 16, 32), dim=2), "features": torch.randn(28, 8, 6, 8)}
    t = {"vlad_intra": norm(base + 1.0 * torch.randn(28, 16, 32), dim=2), "features": torch.randn(28, 9, 6, 8)}
    row, cos = kd_terms(s, t, "rownorm"), kd_terms(s, t, "cosine")
    assert cos["kd_vlad"].item() > 20 * row["kd_vlad"].item() > 0


def test_kd_loss_zero_for_same_features_positive_otherwise():
    torch.manual_seed(3)
    out = {"vlad_intra": torch.nn.functional.normalize(torch.randn(4, 8, 16), dim=2),
           "features": torch.randn(4, 16, 5, 5)}
    same = kd_terms(out, {k: v.clone() for k, v in out.items()})
    assert same["kd_vlad"].item() == pytest.approx(0.0, abs=1e-12)
    assert same["kd_att"].item() == pytest.approx(0.0, abs=1e-12)
    # a teacher of another size (K, channels, resolution) is still comparable through the Gram matrices
    other = {"vlad_intra": torch.nn.functional.normalize(torch.randn(4, 16, 32), dim=2),
             "features": torch.randn(4, 32, 8, 10)}
    diff = kd_terms(out, other)
    assert diff["kd_vlad"].item() > 0 and diff["kd_att"].item() > 0


def test_no_gradient_reaches_the_teacher():
    torch.manual_seed(4)
    student = build_embednet("mobilenetv3_small", 4)
    teacher = build_embednet("resnet18", 4)  # parameters left trainable on purpose
    cfg = DistillConfig(arch="mobilenetv3_small", dataset="synthetic", root=".", out_dir=".", teacher="",
                        kd_weight=100.0)
    obj = DistillObjective(cfg, teacher, torch.device("cpu"))
    student.train()
    parts = obj(student, torch.randn(2 * 4, 3, 64, 64), 2, 4, torch.device("cpu"), "fp32")
    assert set(parts) == {"loss", "hard_loss", "kd_vlad", "kd_att", "kd_rank", "gshare_hard", "gshare_kd_vlad",
                          "gshare_kd_att", "gshare_kd_rank"}
    shares = [parts[f"gshare_{k}"].item() for k in ("hard", "kd_vlad", "kd_att")]
    assert sum(shares) == pytest.approx(1.0) and all(0 < v < 1 for v in shares)
    assert parts["gshare_kd_rank"].item() == 0.0 and parts["kd_rank"].item() > 0  # logged, weight 0 by default
    assert parts["loss"].item() == pytest.approx(
        parts["hard_loss"].item() + 100 * (parts["kd_vlad"].item() + parts["kd_att"].item()), rel=1e-5)
    parts["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    assert sum(p.grad.abs().sum().item() for p in student.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("form", ["rownorm", "cosine"])
def test_tuple_scope_gram_terms_by_hand(form):
    """--gram-scope tuple: one Gram matrix per tuple (the authors' scope), the MSE over every tuple's
    entries; computed here tuple by tuple with explicit sums, from the formulas of the WAKD code
    (G = normalize(X Xt, dim=1); MSE averaged over entries)."""
    torch.manual_seed(6)
    b, t = 3, 4
    s = {"features": torch.randn(b * t, 5, 3, 4), "vlad_intra": torch.randn(b * t, 12)}
    te = {"features": torch.randn(b * t, 7, 3, 4), "vlad_intra": torch.randn(b * t, 20)}

    def by_hand(x, y):
        total = 0.0
        for i in range(b):
            gx = [[float(x[i * t + r].flatten() @ x[i * t + c].flatten()) for c in range(t)] for r in range(t)]
            gy = [[float(y[i * t + r].flatten() @ y[i * t + c].flatten()) for c in range(t)] for r in range(t)]
            for g in (gx, gy):
                if form == "cosine":
                    d = [g[r][r] ** 0.5 for r in range(t)]
                    g[:] = [[g[r][c] / (d[r] * d[c]) for c in range(t)] for r in range(t)]
                else:
                    g[:] = [[v / sum(w * w for w in row) ** 0.5 for v in row] for row in g]
            total += sum((gx[r][c] - gy[r][c]) ** 2 for r in range(t) for c in range(t))
        return total / (b * t * t)

    got = kd_terms(s, te, form, tuple_size=t)
    assert got["kd_vlad"].item() == pytest.approx(by_hand(s["vlad_intra"], te["vlad_intra"]), rel=1e-5)
    att_s, att_t = attention_map(s["features"]), attention_map(te["features"])
    assert got["kd_att"].item() == pytest.approx(by_hand(att_s, att_t), rel=1e-5)
    # the batch scope is one matrix over all b*t images: another number
    assert kd_terms(s, te, form)["kd_vlad"].item() != pytest.approx(got["kd_vlad"].item(), rel=1e-3)


@pytest.mark.parametrize("terms", [("vlad",), ("att",)])
def test_kd_terms_weights_one_gram_term(terms):
    """--kd-terms vlad (att): kd_weight applies to that Gram term alone; the other is logged, with no gradient."""
    torch.manual_seed(5)
    student, teacher = build_embednet("mobilenetv3_small", 4), build_embednet("resnet18", 4)
    cfg = DistillConfig(arch="mobilenetv3_small", dataset="synthetic", root=".", out_dir=".", teacher="",
                        kd_weight=100.0, kd_terms=terms)
    student.train()
    parts = DistillObjective(cfg, teacher, torch.device("cpu"))(student, torch.randn(8, 3, 64, 64), 2, 4,
                                                                 torch.device("cpu"), "fp32")
    (on,), (off,) = [f"kd_{t}" for t in terms], [f"kd_{t}" for t in ("vlad", "att") if t not in terms]
    assert parts[on].item() > 0 and parts[off].item() > 0  # both logged
    assert parts[f"gshare_{on}"].item() > 0 and parts[f"gshare_{off}"].item() == 0.0
    assert parts["loss"].item() == pytest.approx(parts["hard_loss"].item() + 100 * parts[on].item(), rel=1e-5)


def test_kd_terms_option_is_checked():
    from wakd.cli import main

    assert main(["distill", "--dataset", "synthetic", "--root", ".", "--out-dir", ".", "--teacher", "t",
                 "--arch", "resnet18", "--kd-terms", "residuals"]) == 2


def _dcfg(tiny_city, out, clusters, teacher, **kw):
    base = dict(arch="mobilenetv3_small", dataset="synthetic", root=str(tiny_city), out_dir=str(out),
                num_clusters=8, clusters=str(clusters), teacher=str(teacher), epochs=1, optimizer="adam", lr=1e-3,
                weight_decay=0.0, tuples_per_batch=4, neg_num=4, neg_pool=60, cache_size=40, queries_per_epoch=32,
                workers=0, precision="fp32", recall_values=(1, 5))
    base.update(kw)
    return DistillConfig(**base)


def test_distill_run_writes_loadable_checkpoint_and_logs_terms(tiny_city, tmp_path, trained_teacher, student_clusters):
    teacher_before = torch.load(trained_teacher, weights_only=True)["model"]
    distill(_dcfg(tiny_city, tmp_path / "kd", student_clusters, trained_teacher, epochs=2))
    steps = pd.read_csv(tmp_path / "kd/steps.csv")
    assert list(steps.columns) == ["epoch", "step", "loss", "hard_loss", "kd_vlad", "kd_att", "kd_rank", "gshare_hard",
                                   "gshare_kd_vlad", "gshare_kd_att", "gshare_kd_rank"]
    shares = steps[["gshare_hard", "gshare_kd_vlad", "gshare_kd_att", "gshare_kd_rank"]].sum(axis=1)
    assert shares.to_numpy() == pytest.approx(1.0)
    assert len(steps) == 2 * 32 // 4 and set(steps["epoch"]) == {0, 1}
    assert (steps["kd_vlad"] > 0).all() and (steps["kd_att"] >= 0).all()
    assert steps["loss"].to_numpy() == pytest.approx(
        (steps["hard_loss"] + 100 * (steps["kd_vlad"] + steps["kd_att"])).to_numpy(), rel=1e-4)
    hist = pd.read_csv(tmp_path / "kd/history.csv")
    assert {"loss", "hard_loss", "kd_vlad", "kd_att", "R@1", "R@5"} <= set(hist.columns) and len(hist) == 2
    ck = torch.load(tmp_path / "kd/model_best.pth.tar", weights_only=True)
    assert ck["config"]["teacher"] == str(trained_teacher) and ck["config"]["kd_weight"] == 100.0
    student = build_embednet("mobilenetv3_small", 8, checkpoint=tmp_path / "kd/model_best.pth.tar")
    assert all(torch.equal(v, ck["model"][k]) for k, v in student.state_dict().items())
    # the teacher file is untouched, and distillation with kd_weight 0 (the ablation) differs from KD
    teacher_after = torch.load(trained_teacher, weights_only=True)["model"]
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher_after.items())
    distill(_dcfg(tiny_city, tmp_path / "nokd", student_clusters, trained_teacher, epochs=2, kd_weight=0.0))
    s0 = pd.read_csv(tmp_path / "nokd/steps.csv")
    assert s0["loss"].to_numpy() == pytest.approx(s0["hard_loss"].to_numpy())
    assert (s0["gshare_hard"] == 1.0).all()  # no KD: all of the gradient is the ranking loss's
    assert s0["hard_loss"].iloc[0] == pytest.approx(steps["hard_loss"].iloc[0], rel=1e-5)  # same start, same tuples
    assert s0["hard_loss"].iloc[1] != pytest.approx(steps["hard_loss"].iloc[1], rel=1e-4)  # then KD changes it

    # resume after epoch 0 continues to the same student
    distill(_dcfg(tiny_city, tmp_path / "part", student_clusters, trained_teacher, epochs=1))
    distill(_dcfg(tiny_city, tmp_path / "part", student_clusters, trained_teacher, epochs=2),
            resume=tmp_path / "part/checkpoint.pth.tar")
    a = torch.load(tmp_path / "kd/checkpoint.pth.tar", weights_only=True)["model"]
    b = torch.load(tmp_path / "part/checkpoint.pth.tar", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pd.read_csv(tmp_path / "part/steps.csv").equals(steps)


def test_tuple_scope_distillation_runs(tiny_city, tmp_path, trained_teacher, student_clusters):
    """--gram-scope tuple trains (the cached teacher rows are looked up per tuple) and differs from the batch scope."""
    cfg = _dcfg(tiny_city, tmp_path / "tuple", student_clusters, trained_teacher, gram_scope="tuple")
    distill(cfg)
    tup = pd.read_csv(tmp_path / "tuple/steps.csv")
    distill(_dcfg(tiny_city, tmp_path / "batch", student_clusters, trained_teacher))
    bat = pd.read_csv(tmp_path / "batch/steps.csv")
    assert (tup["kd_vlad"] > 0).all() and tup["loss"].notna().all()
    assert tup["kd_vlad"].iloc[0] != pytest.approx(bat["kd_vlad"].iloc[0], rel=1e-3)
    assert torch.load(tmp_path / "tuple/model_best.pth.tar", weights_only=True)["config"]["gram_scope"] == "tuple"


def test_teacher_cache_gives_the_teachers_outputs(tiny_city, tmp_path, trained_teacher, student_clusters):
    """The looked-up teacher outputs are the teacher's own on the same images, so a step's KD terms
    are those of a step that runs the teacher; a cache over its memory budget is not made."""
    ds = load_dataset("synthetic", "train", tiny_city)
    cfg = _dcfg(tiny_city, tmp_path, student_clusters, trained_teacher, size=(64, 80))
    teacher = load_teacher(trained_teacher)
    cache = TeacherCache.build(teacher, ds, cfg, torch.device("cpu"))
    assert cache.rows.shape[0] == ds.num_queries + ds.num_db and not teacher.training
    tuples = [torch.tensor([3, 5, 7, 1]).numpy(), torch.tensor([0, 2, 4, 6]).numpy()]
    items = [TupleImages(tuples, ds, cfg.size)[i] for i in range(2)]
    x, ids = torch.cat([i[0] for i in items]), torch.cat([i[1] for i in items])
    assert ids.tolist() == [3, 5 + ds.num_queries, 7 + ds.num_queries, 1 + ds.num_queries,
                            0, 2 + ds.num_queries, 4 + ds.num_queries, 6 + ds.num_queries]
    with torch.no_grad():
        direct = teacher(x, return_features=True)
    looked = cache.lookup(ids)
    torch.testing.assert_close(looked["desc"], direct["desc"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(looked["vlad_intra"], direct["vlad_intra"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(looked["att"], attention_map(direct["features"]), rtol=1e-4, atol=1e-5)
    student = build_embednet("mobilenetv3_small", 8, clusters=student_clusters).train()
    cfg.rank_weight = 1.0
    torch.manual_seed(0)
    cached = DistillObjective(cfg, teacher, torch.device("cpu"), cache)(student, x, 2, 4, torch.device("cpu"), "fp32",
                                                                        ids=ids)
    torch.manual_seed(0)
    run = DistillObjective(cfg, teacher, torch.device("cpu"))(student, x, 2, 4, torch.device("cpu"), "fp32", ids=ids)
    assert set(cached) == set(run)
    for k in run:
        assert cached[k].item() == pytest.approx(run[k].item(), rel=1e-4, abs=1e-7), k
    cfg.teacher_cache_gb = 1e-6
    assert TeacherCache.build(teacher, ds, cfg, torch.device("cpu")) is None


def test_teacher_errors(tmp_path, trained_teacher):
    with pytest.raises(WakdError, match="no such checkpoint"):
        load_teacher(tmp_path / "missing.pth.tar")
    bare = tmp_path / "bare.pth"
    torch.save(torch.load(trained_teacher, weights_only=True)["model"], bare)
    with pytest.raises(WakdError, match="does not record its architecture; give --teacher-arch"):
        load_teacher(bare)
    teacher = load_teacher(bare, arch="resnet18", num_clusters=8, arch_kwargs={"last_layer": 3})
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(WakdError, match="shape"):
        load_teacher(bare, arch="resnet18", num_clusters=16)


def test_openibl_layout_vgg16_teacher_loads(tmp_path):
    """A VGG16 K=64 teacher saved by OpenIBL/WAKD: module. prefixes, base_model.base.*, net_vlad.*, no alpha."""
    torch.manual_seed(6)
    ref = build_embednet("vgg16", 64)
    state = {}
    for k, v in ref.state_dict().items():
        k = k.replace("backbone.features.", "base_model.base.").replace("pool.", "net_vlad.")
        state["module." + k] = v.clone()
    assert not any("alpha" in k for k in state) and any(k.startswith("module.base_model.base.28.") for k in state)
    path = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": state, "epoch": 4, "best_recall5": 0.9}, path)
    teacher = load_teacher(path, arch="vgg16", num_clusters=64)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in ref.state_dict().items():
        assert torch.equal(teacher.state_dict()[k], v), k
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert torch.allclose(teacher(x), ref.eval()(x), atol=1e-5)
    # a teacher missing part of the network is still refused, naming what is missing
    del state["module.net_vlad.centroids"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(WakdError, match="lacks 1 tensor.*pool.centroids"):
        load_teacher(path, arch="vgg16", num_clusters=64)


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun on Linux")
def test_torchrun_two_processes_distill(tiny_city, tmp_path, trained_teacher, student_clusters):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
           "-m", "wakd", "distill", "--arch", "mobilenetv3_small", "--num-clusters", "8",
           "--clusters", str(student_clusters), "--teacher", str(trained_teacher), "--dataset", "synthetic",
           "--root", str(tiny_city), "--out-dir", str(out), "--epochs", "1", "--optimizer", "adam",
           "--neg-num", "4", "--neg-pool", "60", "--cache-size", "40", "--queries-per-epoch", "32",
           "--workers", "0", "--threads", "1", "--precision", "fp32", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    ck = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert list(ck["model"]) == list(build_embednet("mobilenetv3_small", 8).state_dict())
    assert {"kd_vlad", "kd_att"} <= set(pd.read_csv(out / "history.csv").columns)
    assert ck["provenance"]["config"]["teacher"] == str(trained_teacher) and "torch" in ck["provenance"]["packages"]
