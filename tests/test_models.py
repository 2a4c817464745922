"""Backbones, NetVLAD, weight loading and PCA (CPU, random weights, tiny inputs)."""

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wakd.models import BACKBONE_NAMES
from wakd.models.backbones import create_model, list_models
from wakd.models.build import build_embednet
from wakd.models.netvlad import EmbedNet, NetVLAD
from wakd.models.pca import fit_pca, pca_linear
from wakd.models.weights import load_weights
from wakd.utils import WakdError

EXPECTED = {  # name -> (channels, stride)
    "vgg16": (512, 16), "mobilenetv3_large": (512, 32), "mobilenetv3_small": (512, 32),
    "resnet18": (256, 16), "resnet50": (1024, 16), "resnet152": (1024, 16),
}


def test_registry_lists_and_rejects():
    assert set(EXPECTED) <= set(list_models())
    assert tuple(list_models()) == BACKBONE_NAMES  # the CLI's choices
    with pytest.raises(WakdError, match=r"Unknown model \(vgg19\); expected one of .*vgg16"):
        create_model("vgg19")


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("size", [(64, 96), (96, 128)])
def test_backbone_shapes(name, size):
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert (model.out_channels, model.stride) == EXPECTED[name]
    with torch.no_grad():
        y = model(torch.randn(2, 3, *size))
    assert y.shape[:2] == (2, EXPECTED[name][0])
    assert y.shape[2:] == tuple(math.ceil(s / EXPECTED[name][1]) for s in size)
    assert torch.isfinite(y).all()
    with torch.no_grad():
        d = EmbedNet(model, NetVLAD(4, model.out_channels)).eval()(torch.randn(2, 3, *size))
    assert d.shape == (2, 4 * EXPECTED[name][0]) and torch.isfinite(d).all()
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2))


def test_resnet_layer4_and_bad_option():
    m = create_model("resnet18", last_layer=4)
    assert (m.out_channels, m.stride) == (512, 32)
    with pytest.raises(WakdError, match="last_layer must be 3 or 4"):
        create_model("resnet50", last_layer=2)
    with pytest.raises(WakdError, match="model vgg16: .*unexpected keyword"):
        create_model("vgg16", last_layer=4)


@pytest.mark.parametrize("name,last_channels", [("mobilenetv3_small", 48), ("mobilenetv3_large", 112)])
def test_mobilenet_output_stride_16(name, last_channels, tmp_path):
    """The demo student: the last stage dropped, so 96x128 gives a 6x8 map like the ResNet18-l3 teacher's."""
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision import models as tvm

    m16, m32 = create_model(name, output_stride=16).eval(), create_model(name).eval()
    assert (m16.out_channels, m16.stride) == (512, 16)
    assert m16.proj[0].in_channels == last_channels
    with torch.no_grad():
        assert m16(torch.randn(2, 3, 96, 128)).shape == (2, 512, 6, 8)

    def flops(model):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(torch.zeros(1, 3, 96, 128))
        return fc.get_total_flops()

    assert flops(m16) < flops(m32)
    # torchvision (ImageNet) weights load into the kept layers; the dropped stage's are unused
    tv = getattr(tvm, name.replace("v3_", "_v3_"))(weights=None)
    torch.save(tv.state_dict(), tmp_path / "w.pth")
    report = load_weights(m16, tmp_path / "w.pth")
    assert report["missing"] == sorted(k for k in m16.state_dict() if k.startswith("proj.")
                                       and not k.endswith("num_batches_tracked"))
    assert any(k.startswith(f"features.{len(m16.features)}.") for k in report["unused"])
    with pytest.raises(WakdError, match="output_stride must be 16 or 32"):
        create_model(name, output_stride=8)


def test_narrow_resnet18():
    """The demo student: ResNet18 with 3/8 of the channels, layer3 cut, >= 4x cheaper than the teacher."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(model):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(torch.zeros(1, 3, 96, 128))
        return fc.get_total_flops()

    narrow, full = create_model("resnet18", width=0.375).eval(), create_model("resnet18").eval()
    assert (narrow.out_channels, narrow.stride) == (96, 16)
    assert [narrow.layer1[0].conv1.out_channels, narrow.layer2[0].conv1.out_channels] == [24, 48]
    with torch.no_grad():
        assert narrow(torch.randn(2, 3, 96, 128)).shape == (2, 96, 6, 8)
    assert flops(full) > 5 * flops(narrow)
    assert build_embednet("resnet18", 16, width=0.375).out_dim == 16 * 96
    with pytest.raises(WakdError, match="width must be in"):
        create_model("resnet18", width=1.5)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small"])
def test_input_norm_ignores_exposure_and_colour_cast(name, tmp_path):
    """--input-norm instance: a per-channel gain and offset of the whole image does not reach the features;
    the state dict is that of the plain backbone, so a checkpoint records the option and is refused by a network
    built without it (and the other way round)."""
    torch.manual_seed(0)
    plain, normed = create_model(name), create_model(name, input_norm="instance")
    normed.load_state_dict(plain.state_dict())
    plain.eval(), normed.eval()
    x = torch.rand(2, 3, 64, 80)
    cast = x * torch.tensor([0.3, 0.2, 0.1]).view(1, 3, 1, 1) + torch.tensor([0.05, 0.0, 0.1]).view(1, 3, 1, 1)
    def rel(a, b):
        return ((a - b).norm() / b.norm()).item()

    with torch.no_grad():
        assert rel(normed(cast), normed(x)) < 1e-2 and rel(plain(cast), plain(x)) > 0.05  # up to the eps 1e-5
    assert set(plain.state_dict()) == set(normed.state_dict())
    with pytest.raises(WakdError, match="input_norm 'batch'"):
        create_model(name, input_norm="batch")
    net = EmbedNet(normed, NetVLAD(4, normed.out_channels))
    torch.save({"model": net.state_dict(), "config": {"arch": name, "arch_kwargs": {"input_norm": "instance"}}},
               tmp_path / "n.pth.tar")
    load_weights(EmbedNet(create_model(name, input_norm="instance"), NetVLAD(4, normed.out_channels)),
                 tmp_path / "n.pth.tar")
    with pytest.raises(WakdError, match="trained with --input-norm instance, but this network is built with "
                                        "--input-norm none"):
        load_weights(EmbedNet(create_model(name), NetVLAD(4, normed.out_channels)), tmp_path / "n.pth.tar")


def test_vgg16_conv1_to_conv4_frozen():
    m = create_model("vgg16")
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert "features.0.weight" in frozen and "features.21.weight" in frozen
    assert trainable == {f"features.{i}.{w}" for i in (24, 26, 28) for w in ("weight", "bias")}
    x = torch.randn(1, 3, 64, 64)
    m(x).sum().backward()
    assert m.features[0].weight.grad is None and m.features[28].weight.grad is not None
    assert all(p.requires_grad for p in create_model("vgg16", train_conv5_only=False).parameters())
    assert all(p.requires_grad for p in create_model("mobilenetv3_large").parameters())


def reference_netvlad(x, weight, centroids):
    """NetVLAD by loops over clusters and locations, in float64."""
    x = x.double()
    n, d, h, w = x.shape
    k = centroids.shape[0]
    out = torch.zeros(n, k, d, dtype=torch.float64)
    for b in range(n):
        feats = x[b].reshape(d, -1).T
        feats = feats / feats.norm(dim=1, keepdim=True)
        logits = feats @ weight.double().T
        a = torch.softmax(logits, dim=1)
        for c in range(k):
            for i in range(feats.shape[0]):
                out[b, c] += a[i, c] * (feats[i] - centroids[c].double())
            out[b, c] /= out[b, c].norm()
    flat = out.reshape(n, -1)
    return flat / flat.norm(dim=1, keepdim=True)


def test_netvlad_matches_reference():
    torch.manual_seed(0)
    pool = NetVLAD(num_clusters=5, dim=8)
    x = torch.randn(2, 8, 3, 4)
    got = pool(x)
    want = reference_netvlad(x, pool.conv.weight[:, :, 0, 0].detach(), pool.centroids.detach())
    assert got.shape == (2, 40)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


def test_netvlad_alpha_initialisation():
    cen = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    desc = np.array([[1.0, 0.0], [0.6, 0.8]])
    unit = cen / np.linalg.norm(cen, axis=1, keepdims=True)
    # dots of desc 0: (1, 0, -0.707): gap 1; desc 1: (0.6, 0.8, -0.99): gap 0.2
    alpha_hand = -math.log(0.01) / np.mean([1.0, 0.2])
    pool = NetVLAD(3, 2)
    alpha = pool.init_from_clusters(cen, desc)
    assert alpha == pytest.approx(alpha_hand)
    np.testing.assert_allclose(pool.conv.weight[:, :, 0, 0].detach().numpy(), alpha_hand * unit, rtol=1e-6)
    np.testing.assert_allclose(pool.centroids.detach().numpy(), cen, rtol=1e-6)


def test_embednet_returns_features_and_unit_descriptors():
    torch.manual_seed(0)
    model = build_embednet("resnet18", num_clusters=8).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 64, 64), return_features=True)
    assert out["desc"].shape == (3, 8 * 256) and out["features"].shape == (3, 256, 4, 4)
    torch.testing.assert_close(out["desc"].norm(dim=1), torch.ones(3))
    torch.testing.assert_close(F.normalize(out["vlad_intra"], dim=1), out["desc"])
    with pytest.raises(ValueError, match="gives 512 channels, NetVLAD expects 256"):
        EmbedNet(create_model("vgg16"), NetVLAD(4, 256))


def test_weights_roundtrip_torchvision_format(tmp_path):
    from torchvision.models import resnet18

    tv = resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("resnet18")
    report = load_weights(model, tmp_path / "resnet18.pth")
    assert "fc.weight" in report["unused"] and "layer4.0.conv1.weight" in report["unused"]
    assert report["missing"] == []
    torch.testing.assert_close(model.layer3[0].conv1.weight, tv.layer3[0].conv1.weight)


def test_weights_roundtrip_openibl_checkpoint(tmp_path):
    src = build_embednet("vgg16", num_clusters=4)
    sd = {}
    for k, v in src.state_dict().items():  # OpenIBL naming: module.base_model.base.N / module.net_vlad
        k = k.replace("backbone.features.", "base_model.base.").replace("pool.", "net_vlad.")
        sd["module." + k] = v
    torch.save({"state_dict": sd, "epoch": 3, "best_recall5": 0.9}, tmp_path / "model_best.pth.tar")
    dst = build_embednet("vgg16", num_clusters=4, checkpoint=tmp_path / "model_best.pth.tar")
    for (ka, a), (kb, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(a, b)
    # the same file's trunk loads into a bare backbone
    bb = create_model("vgg16")
    report = load_weights(bb, tmp_path / "model_best.pth.tar")
    assert len(report["loaded"]) == 26 and "net_vlad.centroids" in report["unused"]


class Evil:
    def __reduce__(self):
        return (print, ("this code ran while loading",))


def test_malicious_pickle_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(WakdError, match=r"evil\.pth: refused: not a plain state dict"):
        load_weights(create_model("resnet18"), path)
    assert "this code ran" not in capsys.readouterr().out


def test_weights_errors(tmp_path):
    with pytest.raises(WakdError, match="no such file"):
        load_weights(create_model("resnet18"), tmp_path / "none.pth")
    torch.save({"conv1.weight": torch.zeros(3, 3, 7, 7)}, tmp_path / "bad.pth")
    with pytest.raises(WakdError, match=r"'conv1.weight' has shape \(3, 3, 7, 7\) but the model's"):
        load_weights(create_model("resnet18"), tmp_path / "bad.pth")
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WakdError, match="no tensor matches the model"):
        load_weights(create_model("resnet18"), tmp_path / "other.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(WakdError, match="expected a state dict"):
        load_weights(create_model("resnet18"), tmp_path / "list.pth")


def low_rank(n, d, rank, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ (rng.normal(size=(rank, d)) * np.linspace(3, 1, rank)[:, None]) + 5.0


def test_pca_whitening_identity_covariance():
    x = low_rank(200, 64, 10)
    mean, comps, var = fit_pca(x, 10)
    y = pca_linear(mean, comps, var)(torch.from_numpy(x).float()).detach().double().numpy()
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(10), atol=1e-3)
    np.testing.assert_allclose(comps @ comps.T, np.eye(10), atol=1e-6)
    assert (np.diff(var) <= 0).all()


def test_pca_dual_equals_primal():
    x = low_rank(40, 100, 8, seed=1)  # D > n: the dual form
    m1, c1, v1 = fit_pca(x, 8, dual=True)
    m2, c2, v2 = fit_pca(x, 8, dual=False)
    np.testing.assert_allclose(v1, v2, rtol=1e-4)
    np.testing.assert_allclose(np.abs((c1 * c2).sum(1)), np.ones(8), atol=1e-4)  # same up to sign
    with pytest.raises(WakdError, match="cannot keep 40 components from 40 samples"):
        fit_pca(x, 40)
