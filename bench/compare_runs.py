"""Compare two finished pipeline runs output by output (a refactor must not change results).

    python bench/compare_runs.py OLD/results NEW/results

Recall tables must be equal; descriptors, NetVLAD centres, PCA files and trained weights bitwise
equal (on CPU, same config and seed). Prints one line per file and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from wakd.models.weights import load_trusted


def _hdf5_equal(a: Path, b: Path) -> bool:
    with h5py.File(a) as x, h5py.File(b) as y:
        keys: list[str] = []
        x.visit(lambda k: keys.append(k) if isinstance(x[k], h5py.Dataset) else None)
        return all(k in y and np.array_equal(x[k][:], y[k][:]) for k in keys)


def _weights_equal(a: Path, b: Path) -> bool:
    x = load_trusted(a)["model"]
    y = load_trusted(b)["model"]
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    a = p.parse_args()
    checks = [(f, lambda f, g: pd.read_csv(f).equals(pd.read_csv(g))) for f in sorted(a.old.glob("*_recall.csv"))]
    checks += [(f, _hdf5_equal) for pattern in ("descriptors/*.hdf5", "clusters/*.hdf5", "pca/*.hdf5")
               for f in sorted(a.old.glob(pattern))]
    checks += [(f, _weights_equal) for f in sorted(a.old.glob("train/*/*/model_best.pth.tar"))]
    bad = 0
    for f, same in checks:
        g = a.new / f.relative_to(a.old)
        ok = g.exists() and same(f, g)
        bad += not ok
        print(f"{'same' if ok else 'DIFFERENT'}\t{f.relative_to(a.old)}")
    print(f"{len(checks) - bad} of {len(checks)} outputs identical")
    return 1 if bad or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
