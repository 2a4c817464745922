"""Where the synthetic city is photographed: Pittsburgh-style panoramas and Tokyo-style queries.

* Database: a panorama every ``db_spacing`` metres along every street (laterally jittered by up
  to 2 m), each giving ``yaws`` images at evenly spaced headings aligned with the street (plus a
  few degrees of jitter). The images of one panorama share a position, a capture time (day) and a
  file-name prefix: ``images/000/000042_yaw1.jpg`` ... ``_yaw4.jpg``.
* Queries: at random positions along the streets (so between database points), laterally up to
  3 m off the centre line, heading along or across the street with +-15 degrees of jitter, each at
  its own time, under ``day`` / ``sunset`` / ``night`` (Tokyo 24/7's conditions):
  ``queries/test/000017_night.jpg``.
* Splits: geographically disjoint like Pitts30k: the southern half of the city is ``train``, the
  north-west quarter ``val`` and the north-east quarter ``test``, with a 30 m no-capture strip
  between regions so that no image has a 25 m positive in another split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wakd.synth.presets import Preset
from wakd.synth.world import City

SPLITS = ("train", "val", "test")
BUFFER = 15.0  # half-width of the no-capture strip between split regions (metres)
CONDITION_WEIGHTS = {
    "train": (0.5, 0.3, 0.2),
    "val": (1 / 3, 1 / 3, 1 / 3),
    "test": (1 / 3, 1 / 3, 1 / 3),
}
CONDITIONS = ("day", "sunset", "night")


@dataclass(frozen=True)
class Capture:
    """One image to render."""

    split: str
    set: str  # "db" or "query"
    image: str  # path relative to the image folder (images/ or queries/)
    x: float
    y: float
    yaw: float  # degrees, counter-clockwise from east
    condition: str
    seed: int  # per-image randomness (occluders, noise)
    light_seed: int  # per capture time (shared by the images of one panorama)
    n_cars: int
    n_people: int


def split_of(xy: np.ndarray, extent: tuple[float, float]) -> np.ndarray:
    """Split name of each position ('' inside the buffer strips between regions)."""
    xmid, ymid = extent[0] / 2, extent[1] / 2
    x, y = xy[:, 0], xy[:, 1]
    out = np.full(len(xy), "", dtype=object)
    out[y < ymid - BUFFER] = "train"
    north = y > ymid + BUFFER
    out[north & (x < xmid - BUFFER)] = "val"
    out[north & (x > xmid + BUFFER)] = "test"
    return out


def plan_captures(city: City, preset: Preset, seed: int) -> dict[str, list[Capture]]:
    """Every image of the city, per split, in a deterministic order (database first)."""
    rng = np.random.default_rng([seed, 3])
    pts, dirs = city.street_samples(preset.db_spacing, offset=preset.db_spacing / 2)
    perp = np.where(dirs[:, None] == 90.0, [[1.0, 0.0]], [[0.0, 1.0]])
    pts = pts + perp * rng.uniform(-2.0, 2.0, (len(pts), 1))
    splits = split_of(pts, city.extent)
    out: dict[str, list[Capture]] = {s: [] for s in SPLITS}
    counter = 0
    for pano, (p, base, split) in enumerate(zip(pts, dirs, splits)):
        if not split:
            continue
        light_seed = int(rng.integers(0, 2**31))
        for k in range(preset.yaws):
            yaw = float((base + 360.0 * k / preset.yaws + rng.normal(0, 3.0)) % 360.0)
            out[split].append(Capture(split, "db", f"{pano // 1000:03d}/{pano:06d}_yaw{k + 1}.jpg",
                                      float(p[0]), float(p[1]), yaw, "day", _seed(seed, counter), light_seed,
                                      int(rng.poisson(1.2)), int(rng.poisson(0.8))))
            counter += 1
    dense, dense_dirs = city.street_samples(1.0, offset=0.5)
    dense_split = split_of(dense, city.extent)
    for split, n in zip(SPLITS, preset.queries):
        pool = np.flatnonzero(dense_split == split)
        if n and not len(pool):
            raise ValueError(f"the {preset.blocks} city has no street in the {split} region")
        cond_idx = rng.choice(3, size=n, p=CONDITION_WEIGHTS[split])
        for i in range(n):
            j = pool[rng.integers(len(pool))]
            along = dense_dirs[j]
            perp = np.array([1.0, 0.0]) if along == 90.0 else np.array([0.0, 1.0])
            p = dense[j] + perp * rng.uniform(-3.0, 3.0)
            if split_of(p[None], city.extent)[0] != split:
                p = dense[j]
            yaw = float((along + 90.0 * rng.integers(4) + rng.uniform(-15.0, 15.0)) % 360.0)
            cond = CONDITIONS[cond_idx[i]]
            out[split].append(Capture(split, "query", f"{split}/{i:06d}_{cond}.jpg", float(p[0]), float(p[1]),
                                      yaw, cond, _seed(seed, counter), int(rng.integers(0, 2**31)),
                                      int(rng.poisson(2.0)), int(rng.poisson(1.5))))
            counter += 1
    return out


def _seed(seed: int, index: int) -> int:
    return int(np.random.default_rng([seed, 7, index]).integers(0, 2**31))
