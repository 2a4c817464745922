"""Training, distillation and the hard-negative refresh, timed on the embedded city with the demo recipe.

    python bench/bench_steps.py --city resources/synthetic/demo-seed0 --json steps_cpu.json
    python bench/bench_steps.py --city CITY --device cuda --precision auto --json steps_cuda.json   # on a GPU

Runs, each in a child process, with the options of `config/config.yaml` (models.synthetic: size,
teacher and student `train:` options) but ``--epochs`` epochs: `wakd cluster` for both networks (200
images), `wakd train` (the teacher), `wakd distill` with KD and without (kd_weight 0, rank_weight 0)
from that teacher. Recorded per run from its `history.csv` and log: seconds per training step and
images per second of training, seconds refreshing the cache (precise BN + describing what mining
needs) and its share of refresh + training (`cache_share`, the issue-15 figure), validation
seconds, the teacher cache's build time (distillation), and the command's wall time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import exit_on_sigterm, machine_info, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def flags(options: dict) -> list[str]:
    out = []
    for k, v in options.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def net_flags(net: dict) -> list[str]:
    return ["--arch", net["arch"], "--num-clusters", str(net["num_clusters"]), *flags(net.get("arch_options", {}))]


def wakd(args: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wakd", "--log-file", str(log), *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"wakd {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return round(time.perf_counter() - t0, 2)


def summary(run: Path, log: Path, wall: float, images_per_step: int) -> dict:
    h = pd.read_csv(run / "history.csv")
    steps_per_epoch = len(pd.read_csv(run / "steps.csv")) / len(h)
    train_s = h["train_seconds"].to_numpy()
    text = log.read_text()
    cached = re.search(r"teacher outputs of (\d+) training images cached \((\d+) MiB\) in ([\d.]+) s", text)
    return {"wall_s": wall, "epochs": len(h),
            "s_per_step": round(float(train_s.mean()) / steps_per_epoch, 4),
            "train_img_per_s": round(steps_per_epoch * images_per_step / float(train_s.mean()), 1),
            "train_s_per_epoch": [round(v, 2) for v in train_s],
            "refresh_s_per_epoch": h["cache_seconds"].round(2).tolist(),
            "val_s_per_epoch": h["val_seconds"].round(2).tolist(),
            "cache_share": h["cache_share"].round(3).tolist(),
            "teacher_cache": None if cached is None else {"images": int(cached[1]), "mib": int(cached[2]),
                                                           "seconds": float(cached[3])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--city", type=Path, required=True, help="a synthetic city (wakd synth --preset demo)")
    ap.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default=None, help="default: the config's")
    ap.add_argument("--workers", type=int, default=None, help="default: the config's loader_workers")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", "--out", dest="json", type=Path)
    args = ap.parse_args()
    exit_on_sigterm()
    cfg = yaml.safe_load(args.config.read_text())
    setup = cfg["models"]["synthetic"]
    common = ["--dataset", "synthetic", "--root", str(args.city), "--device", args.device,
              "--precision", args.precision or cfg["precision"], "--seed", str(cfg["seed"]),
              "--size", setup["size"], "--workers", str(args.workers if args.workers is not None
                                                        else cfg["loader_workers"])]
    threads = ["--threads", str(args.threads)] if args.threads else []
    tmp = Path(tempfile.mkdtemp(prefix="wakd-steps-"))
    result = {"bench": "steps", "machine": machine_info(args.device), "city": str(args.city), "epochs": args.epochs,
              "runs": {}}
    try:
        clusters = {}
        for role in ("teacher", "student"):
            clusters[role] = tmp / f"{role}_centres.hdf5"
            wakd(["cluster", *net_flags(setup[role]), *common, "--num-images", "200", "--per-image", "100",
                  "--out", str(clusters[role])], tmp / f"cluster_{role}.log")
        runs = {"teacher": ("train", "teacher", {}),
                "student_kd": ("distill", "student", {}),
                "student_nokd": ("distill", "student", {"kd_weight": 0.0, "rank_weight": 0.0})}
        for name, (command, role, override) in runs.items():
            opts = {**setup[role]["train"], **override, "epochs": args.epochs}
            extra = ["--teacher", str(tmp / "teacher/model_best.pth.tar")] if command == "distill" else []
            log = tmp / f"{name}.log"
            wall = wakd([command, *net_flags(setup[role]), *common, *flags(opts), *threads, *extra,
                         "--clusters", str(clusters[role]), "--out-dir", str(tmp / name)], log)
            per_step = opts["tuples_per_batch"] * (2 + opts["neg_num"])
            result["runs"][name] = r = summary(tmp / name, log, wall, per_step)
            print(f"{name}: {r['s_per_step']} s/step ({r['train_img_per_s']} img/s), refresh "
                  f"{r['refresh_s_per_epoch']} s = {r['cache_share']} of refresh + training, val "
                  f"{r['val_s_per_epoch']} s, wall {wall} s"
                  + (f", teacher cache {r['teacher_cache']}" if r["teacher_cache"] else ""), flush=True)
    except SystemExit as exc:  # the runs measured so far are still written, with the failure
        result["error"] = str(exc)[-2000:]
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        write_json(args.json, result)


if __name__ == "__main__":
    main()
