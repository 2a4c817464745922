"""The CUDA paths, checked against the CPU (skipped without a GPU; `bench/gpu_suite.sh` runs them).

bf16 autocast + channels_last against fp32, the distillation teacher cache held on the GPU, a training
resumed on the GPU, the GPU search of evaluation and validation against faiss on the CPU, pinned loading
of in-memory images.
"""

import numpy as np
import pytest
import torch

from wakd.data import load_dataset
from wakd.data.loader import decoded_images, image_loader
from wakd.device import autocast, prepare, to_input
from wakd.models.build import build_embednet
from wakd.search import knn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("arch,k,kw", [("resnet18", 16, {}), ("resnet18", 16, {"width": 0.375}),
                                       ("mobilenetv3_large", 16, {}), ("vgg16", 16, {})])
def test_bf16_channels_last_matches_fp32(arch, k, kw):
    torch.manual_seed(0)
    model = prepare(build_embednet(arch, k, **kw), CUDA).eval()
    x = to_input(torch.randn(4, 3, 96, 128), CUDA)
    with torch.no_grad():
        ref = model(x)
        with autocast(CUDA, "bf16"):
            low = model(x)
    assert low.dtype == torch.float32 and ref.shape == low.shape  # NetVLAD pools in fp32
    cos = torch.nn.functional.cosine_similarity(ref, low.float()).min().item()
    assert cos > 0.99, cos


def test_gpu_search_matches_faiss():
    rng = np.random.default_rng(0)
    db = rng.standard_normal((5000, 256)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[rng.choice(5000, 300, replace=False)] + 0.05 * rng.standard_normal((300, 256)).astype(np.float32)
    _, cpu = knn(db, q, 5)
    _, gpu = knn(db, q, 5, chunk_rows=1024, device="cuda")
    assert (cpu[:, 0] == gpu[:, 0]).all() and (cpu == gpu).mean() > 0.99  # float32 on both sides
    stored = db.astype(np.float16)  # a float16 file: copied as stored, scored in float32
    s16, gpu16 = knn(stored, q, 5, chunk_rows=1024, device="cuda")
    assert s16.dtype == np.float32 and (gpu16[:, 0] == cpu[:, 0]).mean() > 0.99


def test_teacher_cache_on_the_gpu(tiny_city, tmp_path):
    from wakd.stages.distill import DistillConfig, TeacherCache

    ds = load_dataset("synthetic", "train", tiny_city)
    torch.manual_seed(0)
    teacher = build_embednet("resnet18", 8).eval()
    cfg = DistillConfig(arch="resnet18", dataset="synthetic", root=str(tiny_city), out_dir=str(tmp_path), teacher="",
                        size=(64, 80), workers=0, precision="fp32")
    # TF32 convolutions (cuDNN's default) move the attention maps by ~1e-3: the logic is checked in fp32
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        gpu = TeacherCache.build(teacher, ds, cfg, CUDA)
    cpu = TeacherCache.build(teacher.cpu(), ds, cfg, torch.device("cpu"))
    assert gpu.rows.device.type == "cuda"
    ids = torch.tensor([0, 3, ds.num_queries + 2])
    for key, value in gpu.lookup(ids).items():
        torch.testing.assert_close(value.cpu(), cpu.lookup(ids)[key], rtol=1e-3, atol=1e-4)


def test_in_memory_images_load_pinned(tiny_city):
    ds = load_dataset("synthetic", "val", tiny_city)
    with decoded_images(1.0, 10**8) as on:
        assert on
        batches = list(image_loader(ds.db_paths[:20], 8, workers=2, size=(64, 80), pin_memory=True))
    x, idx = batches[0]
    assert x.is_pinned() and x.shape == (8, 3, 64, 80) and idx.tolist() == list(range(8))


def test_training_resumes_on_the_gpu(tiny_city, tmp_path):
    """A resumed optimiser's momentum lives on the GPU with the parameters (it is placed at load time)."""
    import pandas as pd

    from wakd.cli import main

    run = tmp_path / "run"
    argv = ["train", "--arch", "resnet18", "--num-clusters", "8", "--dataset", "synthetic", "--workers", "0",
            "--root", str(tiny_city), "--queries-per-epoch", "16", "--cache-size", "16", "--neg-num", "4",
            "--neg-pool", "40", "--tuples-per-batch", "4", "--precise-bn", "0", "--device", "cuda",
            "--out-dir", str(run)]
    assert main([*argv, "--epochs", "1"]) == 0
    assert main([*argv, "--epochs", "2", "--resume", str(run / "checkpoint.pth.tar")]) == 0
    assert len(pd.read_csv(run / "history.csv")) == 2
