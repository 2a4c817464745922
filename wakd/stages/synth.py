"""``wakd synth`` and ``wakd synth-preview``: render the embedded synthetic city (:mod:`wakd.synth`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from wakd.options import Options, option, parse_size
from wakd.synth.presets import PRESETS

RENDER_SIZE_LIMIT = 960  # pixels per side the renderer is made for


@dataclass(kw_only=True)
class SynthConfig(Options):
    """render the embedded synthetic city in the Pittsburgh format

    Render a deterministic procedural city and write raw/synthetic_{train,val,test}.mat (Pittsburgh
    dbStruct), the images, side tables of yaws and query conditions, preview.png and synth_info.json under
    OUT.
    """

    out: str = option(help="output folder (created; must be empty or hold a city written by wakd synth)")
    preset: str = option("demo", "size of the city", choices=tuple(PRESETS))
    seed: int = option(0, "world and capture seed", low=0)
    size: tuple[int, int] | None = option(None, "image size HxW, multiples of 8 up to 960 (default: the preset's)",
                                          parse=functools.partial(parse_size, largest=RENDER_SIZE_LIMIT),
                                          metavar="HxW")
    workers: int | None = option(None, "render processes (default: all CPU cores)", low=1)
    overwrite: bool = option(False, "replace a city previously written by wakd synth in OUT")


def run(cfg: SynthConfig) -> dict:
    from wakd.synth.generate import generate

    return generate(cfg.out, preset=cfg.preset, seed=cfg.seed, size=cfg.size, workers=cfg.workers,
                    overwrite=cfg.overwrite)


@dataclass(kw_only=True)
class PreviewConfig(Options):
    """contact sheet of a synthetic city

    One PNG: a database image, the nearest query under each condition, a far-away image.
    """

    root: str = option(help="the synthetic city folder (wakd synth --out)")
    out: str = option(help="PNG file to write")
    split: str = option("test", "split shown", choices=("train", "val", "test"))
    seed: int = option(0, "which places to show", low=0)


def run_preview(cfg: PreviewConfig) -> None:
    from wakd.synth.preview import write_preview

    write_preview(cfg.root, cfg.out, split=cfg.split, seed=cfg.seed)
