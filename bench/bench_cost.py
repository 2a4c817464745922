"""Size and speed of teacher and student networks: parameters, FLOPs at 480x640, images/s.

    python bench/bench_cost.py --models vgg16:64 mobilenetv3_large:64 resnet18:16 mobilenetv3_small:16 \
        --device cpu --size 96x128 --out bench/results/cost_cpu.json

FLOPs are counted by ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs) for one 480x640
image through backbone + NetVLAD. Throughput is inference (eval, no grad, the precision ``auto``
picks) on random images of ``--size``, batch ``--batch-size``, after two warm-up batches.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from wakd.device import autocast, prepare, resolve_device, resolve_precision, to_input
from wakd.models.build import build_embednet
from wakd.options import parse_size


def cost(arch: str, k: int, device: torch.device, size: tuple[int, int], batch: int, iters: int) -> dict:
    model = build_embednet(arch, k).eval()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.randn(1, 3, 480, 640))
    gflops = fc.get_total_flops() / 1e9
    precision = resolve_precision(device, "auto")
    model = prepare(model, device)
    x = to_input(torch.randn(batch, 3, *size), device)
    with torch.no_grad(), autocast(device, precision):
        for i in range(iters + 2):
            if i == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    ips = batch * iters / (time.perf_counter() - t0)
    return {"arch": arch, "K": k, "params_M": round(params / 1e6, 2), "gflops_480x640": round(gflops, 1),
            "descriptor_dim": model.out_dim, "device": str(device), "precision": precision,
            "size": f"{size[0]}x{size[1]}", "images_per_s": round(ips, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vgg16:64", "mobilenetv3_large:64"], help="ARCH:K ...")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", "--out", dest="out", help="JSON file to write")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    rows = []
    for spec in a.models:
        arch, k = spec.split(":")
        rows.append(cost(arch, int(k), dev, parse_size(a.size), a.batch_size, a.iters))
        print(json.dumps(rows[-1]), flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(rows, fh, indent=1)
