"""`wakd cluster` and `wakd pca` on the tiny synthetic city."""

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from wakd.cli import main
from wakd.data import load_dataset
from wakd.data.loader import ImageList
from wakd.models.build import build_embednet
from wakd.models.pca import load_pca_layer


def test_cluster_layout_and_non_degenerate_assignment(tiny_city, tmp_path):
    out = tmp_path / "vgg16_synthetic_16_desc_cen.hdf5"
    assert main(["cluster", "--arch", "vgg16", "--dataset", "synthetic", "--root", str(tiny_city),
                 "--num-images", "40", "--per-image", "30", "--num-clusters", "16", "--workers", "0",
                 "--out", str(out)]) == 0
    with h5py.File(out) as f:
        assert f["descriptors"].shape == (40 * 30, 512)  # 96x128 -> a 6x8 map: 30 of 48 locations
        assert f["centroids"].shape == (16, 512)
        assert f["descriptors"].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(f["descriptors"][:], axis=1), 1.0, atol=1e-3)
        assert f.attrs["arch"] == "vgg16" and f.attrs["num_images"] == 40

    torch.manual_seed(0)
    model = build_embednet("vgg16", 16, clusters=out).eval()
    ds = load_dataset("synthetic", "test", tiny_city)
    x = torch.stack([ImageList(ds.q_paths)[i][0] for i in range(8)])
    with torch.no_grad():
        feats = F.normalize(model.backbone(x), dim=1)
        assign = torch.softmax(model.pool.conv(feats).flatten(2), dim=1)  # [8, K, HW]
    top = assign.max(1).values
    used = assign.argmax(1).unique().numel()
    assert top.mean() < 0.99  # soft, not all mass on one cluster per location
    assert used >= 4  # locations spread over several clusters
    assert model.pool.alpha.item() > 0


def test_pca_command_writes_whitening(tiny_city, tmp_path):
    cen = tmp_path / "c.hdf5"
    assert main(["cluster", "--arch", "resnet18", "--dataset", "synthetic", "--root", str(tiny_city),
                 "--num-images", "20", "--num-clusters", "4", "--workers", "0", "--out", str(cen)]) == 0
    pca = tmp_path / "pca.hdf5"
    assert main(["pca", "--arch", "resnet18", "--num-clusters", "4", "--clusters", str(cen), "--dataset",
                 "synthetic", "--root", str(tiny_city), "--num-images", "30", "--dim", "16", "--workers", "0",
                 "--precision", "fp32", "--out", str(pca)]) == 0
    layer = load_pca_layer(pca, expected_dim=4 * 256)
    assert (layer.in_features, layer.out_features) == (1024, 16)
    model = build_embednet("resnet18", 4, clusters=cen, pca=pca).eval()
    with torch.no_grad():
        d = model(torch.randn(2, 3, 96, 128))
    assert d.shape == (2, 16)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2))
