"""``wakd evaluate --map`` at Pitts250k scale: 254,064 database and 8,280 query positions (a street grid of the
size of Pittsburgh's, 4 km), a model right for 60 % of the queries and otherwise off by up to 2 km.

    python bench/bench_map.py [--out map.png] [--json bench/results/map_pitts250k_scale.json]

Records the drawing time, the PNG's size and the machine; look at the PNG for legibility.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info, write_json  # noqa: E402

from wakd.data.base import PlaceDataset  # noqa: E402
from wakd.maps import evaluation_map  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("map_pitts250k_scale.png"))
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    n_db, n_q, side = 254_064, 8_280, 4000.0
    streets = np.linspace(0, side, 60)
    along = rng.uniform(0, side, n_db)
    on = rng.choice(streets, n_db)
    db = np.where(rng.random(n_db)[:, None] < 0.5, np.c_[along, on], np.c_[on, along]) + 585000.0
    q_idx = rng.choice(n_db, n_q, replace=False)
    q = db[q_idx] + rng.normal(0, 3, (n_q, 2))
    ds = PlaceDataset(name="pitts250k-scale", split="test", db_paths=[""] * n_db, db_utm=db, q_paths=[""] * n_q,
                      q_utm=q)
    right = rng.random(n_q) < 0.6
    far = rng.choice(n_db, n_q)
    pred = np.where(right, q_idx, far)[:, None]
    t0 = time.perf_counter()
    counts = evaluation_map(ds, pred, a.out, title="pitts250k-scale")
    seconds = time.perf_counter() - t0
    result = {"machine": machine_info(), "database": n_db, "queries": n_q, "seconds": round(seconds, 2),
              "png_bytes": a.out.stat().st_size, "green": counts["all"][0]}
    print(result)
    write_json(a.json, result)


if __name__ == "__main__":
    main()
