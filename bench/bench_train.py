"""Teacher training from scratch on the synthetic city: does it learn, and at what cost?

    python bench/bench_train.py --city resources/synthetic/demo-seed0 --out-dir results/bench/train \
        --name adam3e-4 -- --epochs 4 --optimizer adam --lr 3e-4 --weight-decay 0 --neg-num 5 ...

Clusters the backbone's features on the training split, trains with the given `wakd train`
options, then compares the test-split Recall@N of `model_best` with the same network as initialised
(per condition, 25 m rule). Prints one JSON line per run and writes it to OUT_DIR/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from wakd.cli import main as wakd


def run(city: str, out_dir: Path, name: str, arch: str, k: int, device: str, workers: int,
        train_args: list[str], size: str | None = None) -> dict:
    out = out_dir / name
    out.mkdir(parents=True, exist_ok=True)
    sized = ["--size", size] if size else []
    common = ["--arch", arch, "--num-clusters", str(k), "--device", device, "--workers", str(workers), *sized]
    clusters = out_dir / f"{arch}_synthetic_{k}_{size or 'native'}_desc_cen.hdf5"
    if not clusters.exists():
        wakd(["cluster", "--arch", arch, "--dataset", "synthetic", "--root", city, "--num-clusters", str(k),
              "--device", device, "--workers", str(workers), *sized, "--out", str(clusters)])
    t0 = time.perf_counter()
    assert wakd(["train", *common, "--clusters", str(clusters), "--dataset", "synthetic", "--root", city,
                 "--out-dir", str(out / "run"), *train_args]) == 0
    train_s = time.perf_counter() - t0
    res = {"name": name, "arch": arch, "k": k, "size": size, "train_args": " ".join(train_args),
           "train_seconds": round(train_s, 1)}
    for tag, model_args in (("init", ["--clusters", str(clusters)]),
                            ("trained", ["--checkpoint", str(out / "run/model_best.pth.tar")])):
        desc = out / f"{tag}_test.hdf5"
        wakd(["extract", *common, *model_args, "--dataset", "synthetic", "--root", city, "--out", str(desc)])
        csv = out / f"{tag}.csv"
        wakd(["evaluate", "--descriptors", str(desc), "--model", tag, "--device", device, "--out", str(csv)])
        t = pd.read_csv(csv)
        t = t[t["rule"] == "25m"].set_index("condition")
        res[tag] = {c: {"R@1": round(100 * t.loc[c, "R@1"], 1), "R@5": round(100 * t.loc[c, "R@5"], 1)}
                    for c in t.index}
    hist = pd.read_csv(out / "run/history.csv")
    res["val_R@5_by_epoch"] = [round(100 * v, 1) for v in hist["R@5"]]
    res["cache_share"] = round(float(hist["cache_share"].mean()), 3)
    print(json.dumps(res), flush=True)
    (out_dir / f"{name}.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--city", required=True)
    ap.add_argument("--out-dir", default="results/bench/train")
    ap.add_argument("--name", required=True)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--size", help="resize every image to HxW (clustering, training and extraction)")
    ap.add_argument("train_args", nargs=argparse.REMAINDER, help="options passed to 'wakd train' after --")
    a = ap.parse_args()
    extra = a.train_args[1:] if a.train_args[:1] == ["--"] else a.train_args
    run(a.city, Path(a.out_dir), a.name, a.arch, a.k, a.device, a.workers, extra, a.size)
