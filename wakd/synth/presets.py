"""Sizes of the synthetic city.

``tiny`` is for unit tests (a few hundred images, seconds), ``demo`` is the pipeline's default
(thousands of images and enough training queries that each epoch sees fresh ones, about a minute
on 2 cores), ``large`` is a scale test near Pittsburgh 250k (about 84k database images and 8k
queries at a small resolution).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Preset:
    """Parameters of one city and its captures.

    Attributes:
        blocks: city blocks along x and y.
        db_spacing: metres between database panoramas along a street.
        yaws: database images per panorama (evenly spaced headings, like Pittsburgh's 12 yaws).
        queries: number of queries per split (train, val, test).
        size: image height, width in pixels.
        fov: horizontal field of view in degrees.
        supersample: rendering supersampling factor per axis (anti-aliasing).
    """

    blocks: tuple[int, int]
    db_spacing: float
    yaws: int
    queries: tuple[int, int, int]
    size: tuple[int, int] = (120, 160)
    fov: float = 90.0
    supersample: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    def with_size(self, size: tuple[int, int] | None) -> Preset:
        return self if size is None else replace(self, size=tuple(size))


PRESETS: dict[str, Preset] = {
    "tiny": Preset(blocks=(3, 3), db_spacing=15.0, yaws=4, queries=(120, 45, 150), size=(96, 128)),
    "demo": Preset(blocks=(7, 7), db_spacing=10.0, yaws=4, queries=(2000, 300, 450), size=(120, 160)),
    "large": Preset(blocks=(30, 30), db_spacing=6.5, yaws=4, queries=(2000, 2000, 8000), size=(60, 80)),
}
