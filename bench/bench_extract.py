"""Extraction from JPEG files to HDF5, end to end: `wakd extract` in a child process, per network.

    python bench/bench_extract.py --size 96x128 --models resnet18:16 resnet18:16:width=0.375 --json extract_demo.json
    python bench/bench_extract.py --size 480x640 --images 2000 --models vgg16:64 mobilenetv3_large:64 \
        --device cuda --workers 15 --batch-size 32 --json extract_480x640.json          # on a GPU machine

A gmberton-layout folder dataset (``images/test/{database,queries}/@east@north@...@.jpg``) of
``--images`` JPEG files of ``--size`` pixels (quality 90, textured so that decoding costs what a
photo's does) is written once; then for each ``ARCH:K[:option=value...]`` network (random weights,
``--precise-bn 0``: the network's cost does not depend on its weights) the command

    wakd extract --dataset folder --split test --arch ARCH --num-clusters K --size HxW ...

runs in a child process. Recorded per network: wall time of the whole command (start-up, model,
loading, writing the HDF5), images per second over it, the child's peak RSS, the precision it
used (from the output file), the descriptor size.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import exit_on_sigterm, machine_info, run_child, write_json  # noqa: E402


def write_folder(root: Path, n: int, size: tuple[int, int], seed: int = 0) -> None:
    """``n`` JPEGs (3/4 database, 1/4 queries) in the gmberton layout, positions on a 1 km line."""
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(n):
        part = "queries" if i % 4 == 3 else "database"
        folder = root / "images" / "test" / part
        folder.mkdir(parents=True, exist_ok=True)
        low = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((w, h), Image.BILINEAR), dtype=np.int16)
        img = np.clip(img + rng.integers(-24, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        east, north = 585000.0 + i * 1000.0 / n, 4477000.0
        Image.fromarray(img).save(folder / f"@{east:.2f}@{north:.2f}@17@T@@@{i:06d}@.jpg", quality=90)


def network_args(spec: str) -> tuple[str, list[str]]:
    """``ARCH:K[:option=value...]`` -> (label, wakd extract options)."""
    arch, k, *extra = spec.split(":")
    args = ["--arch", arch, "--num-clusters", k]
    for e in extra:
        key, _, value = e.partition("=")
        args += [f"--{key.replace('_', '-')}", value]
    return spec, args


def run_extract(root: Path, out: Path, net: list[str], args: argparse.Namespace) -> dict:
    import h5py

    cmd = [sys.executable, "-m", "wakd", "extract", "--dataset", "folder", "--root", str(root), "--split", "test",
           *net, "--size", args.size, "--device", args.device, "--precision", args.precision,
           "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--precise-bn", "0",
           "--decode", args.decode, "--out", str(out)]
    if args.threads:
        cmd = ["env", f"OMP_NUM_THREADS={args.threads}", *cmd]
    wall, peak, _ = run_child(cmd)
    with h5py.File(out) as f:
        n = len(f["db/descriptors"]) + len(f["queries/descriptors"])
        dim = f["db/descriptors"].shape[1]
        precision = str(f.attrs.get("precision", ""))
    return {"images": n, "wall_s": round(wall, 2), "img_per_s": round(n / wall, 1),
            "peak_rss_mb": round(peak / 2**20, 1), "precision": precision, "dim": int(dim)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18:16", "resnet18:16:width=0.375"], help="ARCH:K[:opt=v]")
    ap.add_argument("--size", default="96x128", help="image and network input size HxW")
    ap.add_argument("--images", type=int, default=1314, help="JPEG files to write (demo test split: 1314)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--decode", default="pil", choices=["pil", "torchvision"],
                    help="wakd extract --decode: PIL in the loader workers, or torchvision on --device (nvjpeg)")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the child (default: all cores)")
    ap.add_argument("--data", type=Path, help="keep the JPEG folder here (reused if it holds the same images)")
    ap.add_argument("--json", "--out", dest="json", type=Path, help="JSON file to write")
    args = ap.parse_args()
    exit_on_sigterm()
    h, w = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="wakd-extract-"))
    root = args.data or tmp / "folder"
    stamp = root / f".bench-{args.images}-{args.size}"
    if not stamp.exists():
        if root.exists() and any(root.iterdir()) and not any(root.glob(".bench-*")):
            raise SystemExit(f"--data {root}: a folder this script did not write; give an empty or new one")
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        write_folder(root, args.images, (h, w))
        stamp.touch()
        print(f"wrote {args.images} JPEGs of {w}x{h} in {time.perf_counter() - t0:.1f} s", flush=True)
    result = {"bench": "extract", "size": args.size, "images": args.images,
              "batch_size": args.batch_size, "workers": args.workers, "decode": args.decode, "threads": args.threads,
              "networks": {}}
    failed = []
    try:
        for spec in args.models:
            label, net = network_args(spec)
            try:
                result["networks"][label] = r = run_extract(root, tmp / "desc.hdf5", net, args)
            except RuntimeError as exc:  # one network's failure is recorded; the others are still measured
                print(exc, file=sys.stderr, flush=True)
                result["networks"][label] = {"error": str(exc)[-2000:]}
                failed.append(label)
                continue
            print(f"{label}: {r['images']} images in {r['wall_s']} s = {r['img_per_s']} img/s end to end, "
                  f"peak RSS {r['peak_rss_mb']} MB, {r['precision']}, {r['dim']}-d", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        # after the children: a child forked from a parent holding torch would count its pages in its peak RSS
        result["machine"] = machine_info(args.device)
        write_json(args.json, result)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
