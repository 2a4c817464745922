"""``wakd synth``: render the synthetic city into the Pittsburgh layout, in parallel, atomically.

Output under ``OUT`` (the layout :mod:`wakd.data.synthetic` reads)::

    raw/synthetic_{train,val,test}.mat     Pittsburgh dbStruct (byte-for-byte reproducible)
    raw/synthetic_{split}_images.csv       side table: set, image, easting, northing, yaw, condition
    raw/images/...  raw/queries/...        JPEG images (identical pixels for the same seed)
    preview.png                            contact sheet (wakd synth-preview)
    synth_info.json                        preset, seed, counts, timings, package versions, git commit

Everything is written into a temporary folder beside ``OUT`` and renamed at the end, so an
interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from wakd.data.matfile import PITTS_FIELDS, save_db_struct
from wakd.progress import Progress
from wakd.provenance import write_run_info
from wakd.synth.capture import SPLITS, Capture, plan_captures
from wakd.synth.presets import PRESETS, Preset
from wakd.synth.render import make_lighting, render
from wakd.synth.world import City, make_city, transient_occluders
from wakd.utils import WakdError, clean_stale_temporaries, temporary_name

log = logging.getLogger(__name__)

MAT_HEADER = "MATLAB 5.0 MAT-file, Platform: posix, Created by: wakd synth (deterministic header)"
JPEG_QUALITY = 92
_WORKER: dict = {}


def render_capture(city: City, cap: Capture, preset: Preset) -> np.ndarray:
    """Render one planned capture (deterministic given the capture's seeds)."""
    light = make_lighting(cap.condition, np.random.default_rng(cap.light_seed))
    rng = np.random.default_rng(cap.seed)
    cam = np.array([cap.x, cap.y])
    extra = transient_occluders(rng, city, cam, cap.yaw, cap.n_cars, cap.n_people)
    return render(city, cam, cap.yaw, preset.size, light, fov=preset.fov, extra=extra,
                  supersample=preset.supersample, rng=rng)


def _init_worker(seed: int, preset: Preset, raw: str) -> None:
    _WORKER.update(city=make_city(seed, preset.blocks), preset=preset, raw=Path(raw))


def _render_chunk(caps: list[Capture]) -> int:
    city, preset, raw = _WORKER["city"], _WORKER["preset"], _WORKER["raw"]
    for cap in caps:
        path = raw / ("images" if cap.set == "db" else "queries") / cap.image
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_capture(city, cap, preset)).save(path, quality=JPEG_QUALITY)
    return len(caps)


def generate(out: str | os.PathLike, preset: str | Preset = "demo", seed: int = 0,
             size: tuple[int, int] | None = None, workers: int | None = None, overwrite: bool = False,
             preview: bool = True) -> dict:
    """Render a synthetic city to ``out``.

    Args:
        out: output folder; must not exist or be empty, unless ``overwrite``.
        preset: a name from :data:`PRESETS` or a :class:`Preset`.
        seed: world and capture seed; the same seed gives identical files.
        size: image (height, width), overriding the preset's.
        workers: render processes (default: all CPU cores).
        overwrite: replace a city previously written to ``out`` (a folder with ``synth_info.json``);
            any other non-empty folder is refused.
        preview: also write ``preview.png``.

    Returns:
        The summary written to ``synth_info.json``.
    """
    preset_name, preset = _resolve_preset(preset, size)
    out = Path(out)
    _check_out(out, overwrite)
    workers = workers or os.cpu_count() or 1

    t0 = time.perf_counter()
    city = make_city(seed, preset.blocks)
    plan = plan_captures(city, preset, seed)
    caps = [c for s in SPLITS for c in plan[s]]
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out)
    tmp = out.parent / f"{temporary_name(out)}tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    raw = tmp / "raw"
    raw.mkdir(parents=True)
    try:
        log.info("rendering %d images (%s preset, %dx%d) with %d workers", len(caps), preset_name,
                 preset.size[0], preset.size[1], workers)
        render_s = _render_all(caps, seed, preset, raw, workers)
        counts = _write_splits(raw, plan)
        summary = {"preset": preset_name, "params": preset.to_dict(), "seed": seed, "images": len(caps),
                   "counts": counts, "extent_m": list(city.extent), "facades": int(len(city.segments)),
                   "render_seconds": round(render_s, 2), "workers": workers,
                   "images_per_second": round(len(caps) / max(render_s, 1e-9), 1)}
        if preview:
            from wakd.synth.preview import write_preview

            write_preview(tmp, tmp / "preview.png", split="test", seed=seed)
        summary["total_seconds"] = round(time.perf_counter() - t0, 2)
        write_run_info(tmp / "synth_info.json", summary, seed)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s: %d images in %.1f s (%.0f img/s rendering)", out, len(caps),
             summary["total_seconds"], summary["images_per_second"])
    return summary


def _resolve_preset(preset: str | Preset, size: tuple[int, int] | None) -> tuple[str, Preset]:
    """(name, preset at ``size``) of a preset name or object."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise WakdError(f"Unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        return preset, PRESETS[preset].with_size(size)
    return "custom", preset.with_size(size)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder, unless ``overwrite`` and it holds a city written by wakd synth."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise WakdError(f"{out}: folder exists and is not empty (use --overwrite to replace a city in it)")
        if not (out / "synth_info.json").is_file():
            raise WakdError(f"{out}: --overwrite replaces only a city written by wakd synth (with synth_info.json); "
                            "this folder holds other files, which are kept")


def _render_all(caps: list[Capture], seed: int, preset: Preset, raw: Path, workers: int) -> float:
    """Render every capture into ``raw`` in chunks of 32 (in ``workers`` processes); returns the seconds."""
    chunks = [caps[i:i + 32] for i in range(0, len(caps), 32)]
    t1 = time.perf_counter()
    with Progress(len(caps), "synth", "img", quiet_off_terminal=True, logger=log) as bar:
        if workers == 1:
            _init_worker(seed, preset, str(raw))
            for ch in chunks:
                bar.update(_render_chunk(ch))
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, _init_worker, (seed, preset, str(raw))) as pool:
                for n in pool.imap_unordered(_render_chunk, chunks):
                    bar.update(n)
    return time.perf_counter() - t1


def _write_splits(raw: Path, plan: dict[str, list[Capture]]) -> dict[str, dict[str, int]]:
    """Write every split's tables; returns each split's database and query counts."""
    counts = {}
    for split in SPLITS:
        _write_split(raw, split, plan[split])
        counts[split] = {"db": sum(c.set == "db" for c in plan[split]),
                         "queries": sum(c.set == "query" for c in plan[split])}
    return counts


def _write_split(raw: Path, split: str, caps: list[Capture]) -> None:
    db = [c for c in caps if c.set == "db"]
    qs = [c for c in caps if c.set == "query"]
    fields = {
        "whichSet": split,
        "dbImageFns": [c.image for c in db],
        "utmDb": np.array([[c.x, c.y] for c in db]).reshape(-1, 2),
        "qImageFns": [c.image for c in qs],
        "utmQ": np.array([[c.x, c.y] for c in qs]).reshape(-1, 2),
        "numImages": len(db),
        "numQueries": len(qs),
        "posDistThr": 25.0,
        "posDistSqThr": 625.0,
        "nonTrivPosDistSqThr": 100.0,
    }
    save_db_struct(raw / f"synthetic_{split}.mat", fields, PITTS_FIELDS, header=MAT_HEADER)
    table = pd.DataFrame([asdict(c) for c in db + qs])
    table = table.rename(columns={"x": "easting", "y": "northing"})
    table[["set", "image", "easting", "northing", "yaw", "condition"]].to_csv(
        raw / f"synthetic_{split}_images.csv", index=False, float_format="%.3f")
