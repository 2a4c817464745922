"""Per-image latency of exported networks: PyTorch vs TorchScript vs onnxruntime, on this machine.

    python bench/bench_deploy.py --checkpoint student=results/train/synthetic/student_kd/model_best.pth.tar \
        teacher=results/train/synthetic/teacher/model_best.pth.tar --json deploy.json
    python bench/bench_deploy.py --benchmark-size      # + VGG16 / MobileNetV3-Large (K=64) at 480x640

Each network is exported with `wakd export` (ONNX and TorchScript) and timed at batch 1 and 16 in
fp32 with torch's threads (default: all cores) and onnxruntime's default session; the median of
`--repeats` timed runs after two warm-up runs. `--benchmark-size` adds the benchmark setup's
networks at 480x640 as initialised (random weights: latency does not depend on them), saved as
wakd checkpoints in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402


def _time(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _random_checkpoint(folder: Path, arch: str, size: tuple[int, int]) -> Path:
    from wakd.models.build import build_embednet

    net = build_embednet(arch, 64)
    path = folder / f"{arch}.pth.tar"
    torch.save({"model": net.state_dict(), "config": {"arch": arch, "num_clusters": 64, "arch_kwargs": {},
                                                      "size": list(size)}}, path)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="*", default=[], metavar="NAME=PATH")
    p.add_argument("--benchmark-size", action="store_true")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    import onnxruntime as ort

    import wakd

    work = Path(tempfile.mkdtemp(prefix="deploy-"))
    nets = dict(item.split("=", 1) for item in a.checkpoint)
    if a.benchmark_size:
        for arch in ("mobilenetv3_large", "vgg16"):
            nets[f"{arch}-K64"] = str(_random_checkpoint(work, arch, (480, 640)))
    rows = []
    for name, ckpt in nets.items():
        model = wakd.load_model(ckpt).float().eval()
        h, w = model.size
        files = {}
        for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
            files[fmt] = work / f"{name}{suffix}"
            subprocess.run([sys.executable, "-m", "wakd", "export", "--checkpoint", ckpt, "--format", fmt,
                            "--out", str(files[fmt])], check=True, capture_output=True)
        sess = ort.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"])
        scripted = torch.jit.load(str(files["torchscript"]))
        for b in a.batches:
            x = torch.rand(b, 3, h, w)
            xc = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                eager = _time(lambda: model(xc), a.repeats)
                script = _time(lambda: scripted(x), a.repeats)
            onnx = _time(lambda: sess.run(None, {"images": x.numpy()}), a.repeats)
            row = {"network": name, "input": f"{h}x{w}", "dim": model.dim, "batch": b,
                   "pytorch_ms_per_image": round(1000 * eager / b, 2),
                   "torchscript_ms_per_image": round(1000 * script / b, 2),
                   "onnxruntime_ms_per_image": round(1000 * onnx / b, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    info = {"command": " ".join(sys.argv), "runs": rows, "onnxruntime": ort.__version__, "machine": machine_info()}
    if a.json:
        a.json.write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
