"""CUDA checks and throughput of the model stack, run on a lent GPU machine (one short script).

    python bench/gpu_check.py --out $OUT/gpu_check.json            # on the GPU machine
    python bench/gpu_check.py --quick --out /tmp/gpu_check.json    # smoke test on a CPU

Sections (each recorded even if another fails): environment; teacher/student inference and
training-step throughput with bf16 autocast + channels_last vs fp32; NetVLAD GPU vs CPU parity;
`wakd cluster` on CUDA over the tiny synthetic city; PCA whitening (dual form) on CUDA at NetVLAD
scale; exact kNN with a chunked torch matmul + top-k at Pitts250k scale; one DistributedDataParallel
step with nccl on one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wakd.device import autocast, prepare, to_input
from wakd.models.build import build_embednet
from wakd.models.netvlad import NetVLAD

RESULTS: dict = {}


def section(name):
    def wrap(fn):
        def run(*a, **kw):
            t0 = time.perf_counter()
            try:
                RESULTS[name] = fn(*a, **kw)
            except Exception as exc:  # keep going: one failure must not hide the other checks
                RESULTS[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
            RESULTS[name + "_seconds"] = round(time.perf_counter() - t0, 2)
            print(name, json.dumps(RESULTS[name])[:600], flush=True)
        return run
    return wrap


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, iters):
    fn()
    fn()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(dev)
    return (time.perf_counter() - t0) / iters


@section("environment")
def environment(dev):
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(dev)}
    if dev.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()),
                    bf16=torch.cuda.is_bf16_supported(), nccl=torch.distributed.is_nccl_available())
    return info


@section("throughput")
def throughput(dev, quick):
    out = {}
    sizes = [(120, 160, 8)] if quick else [(480, 640, 32), (120, 160, 128)]
    for arch in ("vgg16", "mobilenetv3_large"):
        torch.manual_seed(0)
        model = prepare(build_embednet(arch, 64), dev)
        for h, w, bs in sizes:
            x = to_input(torch.randn(bs, 3, h, w), dev)
            key = f"{arch}_{h}x{w}"
            model.eval()
            with torch.no_grad():
                res = {}
                for prec in ("bf16", "fp32"):
                    def fwd(prec=prec):
                        with autocast(dev, prec):
                            return model(x)
                    res[f"infer_{prec}_img_s"] = round(bs / timed(fwd, dev, 2 if quick else 10), 1)
                with autocast(dev, "bf16"):
                    a = model(x).float()
                b = model(x).float()
                res["bf16_vs_fp32_cosine_mean"] = round(float(F.cosine_similarity(a, b).mean()), 5)
            model.train()
            opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

            def step():
                opt.zero_grad(set_to_none=True)
                with autocast(dev, "bf16"):
                    d = model(x)
                loss = (d[: bs // 2] - d[bs // 2:]).pow(2).sum(1).mean()
                loss.backward()
                opt.step()

            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            res["train_step_bf16_img_s"] = round(bs / timed(step, dev, 2 if quick else 5), 1)
            if dev.type == "cuda":
                res["train_peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            res["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
            out[key] = res
    return out


@section("netvlad_parity")
def netvlad_parity(dev):
    torch.manual_seed(0)
    pool = NetVLAD(64, 512)
    x = torch.randn(4, 512, 30, 40)
    cpu = pool(x)
    gpu = pool.to(dev)(x.to(dev)).cpu()
    with autocast(dev, "bf16"):  # NetVLAD runs in fp32 even under autocast
        gpu_ac = pool(x.to(dev)).cpu()
    return {"max_abs_diff": float((cpu - gpu).abs().max()), "autocast_max_abs_diff": float((cpu - gpu_ac).abs().max()),
            "dtype_under_autocast": str(gpu_ac.dtype)}


@section("cluster")
def cluster(dev, tmp):
    from wakd.stages.cluster import ClusterConfig
    from wakd.stages.cluster import run as run_cluster
    from wakd.synth.generate import generate

    city = tmp / "tiny"
    generate(city, "tiny", seed=0, workers=min(16, os.cpu_count() or 1), preview=False)
    out = tmp / "vgg16_synthetic_64_desc_cen.hdf5"
    info = run_cluster(ClusterConfig(arch="vgg16", dataset="synthetic", root=str(city),
                              out=str(out), num_images=200, per_image=40, device=str(dev),
                       batch_size=32, workers=4))
    import h5py

    with h5py.File(out) as f:
        info["centroids_shape"] = list(f["centroids"].shape)
        info["centroid_norm_mean"] = float(np.linalg.norm(f["centroids"][:], axis=1).mean())
    return info


@section("pca")
def pca(dev, quick):
    from wakd.models.pca import fit_pca

    n, d, k = (500, 4096, 256) if quick else (10000, 32768, 4096)
    x = torch.randn(n, d, device=dev)
    sync(dev)
    t0 = time.perf_counter()
    mean, comps, var = fit_pca(x, k, device=dev)
    sync(dev)
    secs = time.perf_counter() - t0
    orth = float(np.abs(comps[:64] @ comps[:64].T - np.eye(64)).max())
    # the same low-rank problem on CPU and GPU gives the same variances
    rng = np.random.default_rng(0)
    small = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 2000))
    v_cpu = fit_pca(small, 16)[2]
    v_gpu = fit_pca(small, 16, device=dev)[2]
    return {"n": n, "dim": d, "kept": k, "seconds": round(secs, 2), "orthonormality_err": orth,
            "cpu_gpu_variance_rel_diff": float(np.abs(v_cpu - v_gpu).max() / v_cpu.max())}


@section("knn")
def knn(dev, quick):
    nq, nd, d, k = (200, 5000, 256, 20) if quick else (8280, 83952, 4096, 20)
    g = torch.Generator(device=dev).manual_seed(0)
    db = F.normalize(torch.randn(nd, d, device=dev, generator=g), dim=1).half()
    q = F.normalize(torch.randn(nq, d, device=dev, generator=g), dim=1).half()

    def search():
        best_s = torch.full((nq, k), -2.0, device=dev)
        best_i = torch.zeros((nq, k), dtype=torch.long, device=dev)
        for start in range(0, nd, 32768):
            s = (q @ db[start:start + 32768].T).float()
            ts, ti = s.topk(min(k, s.shape[1]), dim=1)
            cat_s, cat_i = torch.cat([best_s, ts], 1), torch.cat([best_i, ti + start], 1)
            best_s, pos = cat_s.topk(k, dim=1)
            best_i = cat_i.gather(1, pos)
        return best_s, best_i

    secs = timed(search, dev, 3)
    _, idx = search()
    exact = (q[:50].double() @ db.double().T).topk(k, dim=1).indices
    agree = float((idx[:50] == exact).float().mean())
    out = {"queries": nq, "db": nd, "dim": d, "seconds": round(secs, 4), "top20_agreement_vs_fp64": agree}
    try:
        import faiss

        t0 = time.perf_counter()
        index = faiss.IndexFlatIP(d)
        index.add(db[: min(nd, 20000)].float().cpu().numpy())
        index.search(q[:1000].float().cpu().numpy(), k)
        out["faiss_cpu_1000q_20000db_seconds"] = round(time.perf_counter() - t0, 3)
    except ImportError:
        out["faiss"] = "not installed"
    return out


def _ddp_worker(rank, world, port, result_file):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    dev = torch.device("cuda", rank)
    torch.manual_seed(0)
    model = prepare(build_embednet("resnet18", 16), dev)
    ddp = DDP(model, device_ids=[rank])
    opt = torch.optim.SGD(ddp.parameters(), lr=1e-2)
    x = to_input(torch.randn(8, 3, 120, 160), dev)
    with autocast(dev, "bf16"):
        d = ddp(x)
    loss = (d[:4] - d[4:]).pow(2).sum()
    loss.backward()
    opt.step()
    t = torch.ones(1, device=dev) * (rank + 1)
    dist.all_reduce(t)
    keys = list(ddp.module.state_dict())
    if rank == 0:
        Path(result_file).write_text(json.dumps({"loss": float(loss), "all_reduce": float(t),
                                                 "module_prefix_in_keys": any(k.startswith("module.") for k in keys),
                                                 "world_size": world}))
    dist.destroy_process_group()


@section("ddp_nccl")
def ddp_nccl(tmp):
    import torch.multiprocessing as mp

    result = tmp / "ddp.json"
    mp.spawn(_ddp_worker, args=(1, 29517, str(result)), nprocs=1, join=True)
    return json.loads(result.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", "--out", dest="out", required=True)
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU smoke test)")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="wakd-gpu-"))
    RESULTS["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    environment(dev)
    netvlad_parity(dev)
    throughput(dev, args.quick)
    pca(dev, args.quick)
    knn(dev, args.quick)
    cluster(dev, tmp)
    if dev.type == "cuda":
        ddp_nccl(tmp)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
