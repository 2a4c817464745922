"""The synthetic city: an irregular street grid lined with textured buildings.

Everything is vertical segments in a local metric (UTM-like) frame: building facades along the
block edges, street-lamp poles, and per-image transient occluders (vehicles, people). Facade
appearance comes from one of ``NUM_STYLES`` recurring styles (wall colour and material, window
grid, window shape) plus per-building seeded details (colour jitter, door, shop sign with glyphs,
posters). Styles recur across the city, so texture alone is ambiguous (perceptual aliasing); the
arrangement of buildings along a street is what identifies a place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_STYLES = 10
KIND_BUILDING, KIND_POLE, KIND_CAR, KIND_PERSON = 0, 1, 2, 3
LAMP_SPACING = 30.0
LAMP_HEIGHT = 5.0
OUTER_RING = 25.0  # depth of the blocks beyond the border streets, so no street looks out of town


@dataclass
class Segments:
    """Vertical rectangles standing on the ground: ``p0 -> p1`` in plan, ``0 <= z <= height``.

    Per-segment arrays of equal length; ``colour`` is an ``[n, 3]`` base colour, ``param`` an
    ``[n, 8]`` float table whose meaning depends on ``kind`` (see :mod:`wakd.synth.render`).
    """

    p0: np.ndarray
    p1: np.ndarray
    height: np.ndarray
    kind: np.ndarray
    style: np.ndarray
    seed: np.ndarray
    colour: np.ndarray
    param: np.ndarray

    def __len__(self) -> int:
        return len(self.height)

    def take(self, idx: np.ndarray) -> Segments:
        return Segments(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[Segments]) -> Segments:
        return Segments(*(np.concatenate([getattr(p, f) for p in parts]) for f in Segments.__dataclass_fields__))


@dataclass
class City:
    """A generated city.

    Attributes:
        seed: the world seed.
        street_x, street_y: centre lines of the north-south (constant x) and east-west streets.
        street_w_x, street_w_y: their widths in metres.
        extent: (xmax, ymax); the city spans [0, xmax] x [0, ymax].
        segments: facades and lamp poles.
        lamps: ``[L, 2]`` plan positions of the street lamps.
        styles: ``[NUM_STYLES, 12]`` style table (see ``_make_styles``).
    """

    seed: int
    street_x: np.ndarray
    street_y: np.ndarray
    street_w_x: np.ndarray
    street_w_y: np.ndarray
    extent: tuple[float, float]
    segments: Segments
    lamps: np.ndarray
    styles: np.ndarray
    _grid: dict | None = None
    _cell: float = 40.0

    def segments_near(self, xy: np.ndarray, radius: float) -> np.ndarray:
        """Indices of segments with a point within ``radius`` of ``xy`` (spatial hash look-up)."""
        if self._grid is None:
            self._build_grid()
        c = self._cell
        r = int(np.ceil(radius / c))
        cx, cy = int(np.floor(xy[0] / c)), int(np.floor(xy[1] / c))
        found = [self._grid.get((i, j)) for i in range(cx - r, cx + r + 1) for j in range(cy - r, cy + r + 1)]
        found = [f for f in found if f is not None]
        if not found:
            return np.zeros(0, dtype=np.int64)
        idx = np.unique(np.concatenate(found))
        seg = self.segments
        d = _point_segment_distance(xy, seg.p0[idx], seg.p1[idx])
        return idx[d <= radius]

    def _build_grid(self) -> None:
        seg, c = self.segments, self._cell
        grid: dict[tuple[int, int], list[int]] = {}
        for i in range(len(seg)):
            lo = np.floor(np.minimum(seg.p0[i], seg.p1[i]) / c).astype(int)
            hi = np.floor(np.maximum(seg.p0[i], seg.p1[i]) / c).astype(int)
            for gx in range(lo[0], hi[0] + 1):
                for gy in range(lo[1], hi[1] + 1):
                    grid.setdefault((gx, gy), []).append(i)
        self._grid = {k: np.asarray(v, dtype=np.int64) for k, v in grid.items()}

    def street_samples(self, spacing: float, rng: np.random.Generator | None = None,
                       offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Points every ``spacing`` metres along every street centre line.

        Returns:
            (``[n, 2]`` positions, ``[n]`` street direction in degrees: 90 for north-south
            streets, 0 for east-west ones).
        """
        xmax, ymax = self.extent
        pts, dirs = [], []
        for x in self.street_x:
            ys = np.arange(offset, ymax, spacing)
            pts.append(np.stack([np.full_like(ys, x), ys], 1))
            dirs.append(np.full(len(ys), 90.0))
        for y in self.street_y:
            xs = np.arange(offset, xmax, spacing)
            pts.append(np.stack([xs, np.full_like(xs, y)], 1))
            dirs.append(np.zeros(len(xs)))
        return np.concatenate(pts), np.concatenate(dirs)

    def street_width_at(self, xy: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Width of the street each point lies on (given the street's direction)."""
        on_ns = direction == 90.0
        ix = np.abs(xy[:, 0:1] - self.street_x[None]).argmin(1)
        iy = np.abs(xy[:, 1:2] - self.street_y[None]).argmin(1)
        return np.where(on_ns, self.street_w_x[ix], self.street_w_y[iy])


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-9), 0.0, 1.0)
    closest = a + t[:, None] * ab
    return np.linalg.norm(closest - p, axis=1)


def _make_styles(rng: np.random.Generator) -> np.ndarray:
    """Facade styles: wall rgb(3), material noise, floor height, bay width, window w/h ratio,
    window shape (0 plain, 1 tall, 2 ribbon, 3 paired, 4 framed, 5 arched), glass tint, frame lightness."""
    styles = np.zeros((NUM_STYLES, 12))
    palette = np.array([[0.72, 0.38, 0.30], [0.82, 0.76, 0.62], [0.55, 0.55, 0.58], [0.85, 0.85, 0.82],
                        [0.45, 0.30, 0.22], [0.70, 0.62, 0.45], [0.40, 0.45, 0.52], [0.78, 0.55, 0.40],
                        [0.60, 0.68, 0.60], [0.88, 0.70, 0.62]])
    for s in range(NUM_STYLES):
        styles[s, 0:3] = np.clip(palette[s] * rng.uniform(0.9, 1.1, 3), 0, 1)
        styles[s, 3] = rng.uniform(0.04, 0.14)  # material noise amplitude
        styles[s, 4] = rng.uniform(3.0, 4.2)  # floor height
        styles[s, 5] = rng.uniform(2.2, 4.5)  # bay width
        styles[s, 6] = rng.uniform(0.35, 0.7)  # window width ratio
        styles[s, 7] = rng.uniform(0.4, 0.65)  # window height ratio
        styles[s, 8] = s % 6  # window shape
        styles[s, 9] = rng.uniform(0.0, 1.0)  # glass tint
        styles[s, 10] = rng.uniform(0.2, 1.0)  # frame lightness
        styles[s, 11] = rng.uniform(0.5, 1.0)  # ground-floor shop probability
    return styles


def _streets(rng: np.random.Generator, n_blocks: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Street centre lines and widths along one axis: widths 12-18 m, blocks 45-75 m long."""
    widths = rng.uniform(12.0, 18.0, n_blocks + 1)
    blocks = rng.uniform(45.0, 75.0, n_blocks)
    centres = np.zeros(n_blocks + 1)
    pos = widths[0] / 2 + OUTER_RING
    for i in range(n_blocks + 1):
        centres[i] = pos
        if i < n_blocks:
            pos += widths[i] / 2 + blocks[i] + widths[i + 1] / 2
    return centres, widths, float(pos + widths[-1] / 2 + OUTER_RING)


def make_city(seed: int, blocks: tuple[int, int]) -> City:
    """Generate a deterministic city of ``blocks[0] x blocks[1]`` blocks from ``seed``."""
    rng = np.random.default_rng([seed, 1])
    styles = _make_styles(np.random.default_rng([seed, 2]))
    sx, wx, xmax = _streets(rng, blocks[0])
    sy, wy, ymax = _streets(rng, blocks[1])
    # block edges along each axis, including the outer ring of blocks beyond the border streets
    bx = [(0.0, sx[0] - wx[0] / 2)] + [(sx[i] + wx[i] / 2, sx[i + 1] - wx[i + 1] / 2) for i in range(blocks[0])] \
        + [(sx[-1] + wx[-1] / 2, xmax)]
    by = [(0.0, sy[0] - wy[0] / 2)] + [(sy[j] + wy[j] / 2, sy[j + 1] - wy[j + 1] / 2) for j in range(blocks[1])] \
        + [(sy[-1] + wy[-1] / 2, ymax)]
    facades = []
    for x0, x1 in bx:
        for y0, y1 in by:
            # the four sides of the block, each walked counter-clockwise
            corners = [((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))]
            for a, b in corners:
                facades.append(_side_buildings(rng, np.array(a), np.array(b), styles))
    # the town's boundary, closing the ends of the streets
    edge = [((0.0, 0.0), (xmax, 0.0)), ((xmax, 0.0), (xmax, ymax)),
            ((xmax, ymax), (0.0, ymax)), ((0.0, ymax), (0.0, 0.0))]
    for a, b in edge:
        facades.append(_side_buildings(rng, np.array(a), np.array(b), styles))
    lamp_xy = _lamps(sx, wx, sy, wy, xmax, ymax)
    segs = Segments.concat(facades + [_poles(lamp_xy)])
    return City(seed, sx, sy, wx, wy, (xmax, ymax), segs, lamp_xy, styles)


def _side_buildings(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, styles: np.ndarray) -> Segments:
    length = float(np.linalg.norm(b - a))
    direction = (b - a) / length
    cuts = [0.0]
    while length - cuts[-1] > 26.0:
        cuts.append(cuts[-1] + rng.uniform(8.0, 22.0))
    cuts.append(length)
    n = len(cuts) - 1
    style = rng.choice(NUM_STYLES, n)
    floors = rng.integers(2, 9, n)
    height = floors * styles[style, 4] + rng.uniform(0.3, 1.5, n)
    colour = np.clip(styles[style, 0:3] * rng.uniform(0.85, 1.15, (n, 1)) * rng.uniform(0.95, 1.05, (n, 3)), 0, 1)
    param = np.zeros((n, 8))
    widths = np.diff(cuts)
    param[:, 0] = rng.random(n) < styles[style, 11]  # has shop front
    param[:, 1] = rng.uniform(0.1, 0.4, n) * widths  # sign start (m)
    param[:, 2] = param[:, 1] + rng.uniform(0.4, 0.85, n) * widths * 0.7  # sign end
    param[:, 3] = rng.uniform(0.15, 0.85, n) * widths  # door position
    param[:, 4] = rng.random(n)  # sign hue
    param[:, 5] = rng.random(n) < 0.35  # poster on the wall
    param[:, 6] = rng.uniform(0.1, 0.9, n) * widths  # poster position
    param[:, 7] = rng.random(n)  # poster hue
    p0 = a[None] + np.asarray(cuts[:-1])[:, None] * direction[None]
    p1 = a[None] + np.asarray(cuts[1:])[:, None] * direction[None]
    return Segments(p0, p1, height, np.full(n, KIND_BUILDING), style, rng.integers(0, 2**31, n), colour, param)


def _lamps(sx, wx, sy, wy, xmax, ymax) -> np.ndarray:
    """Street lamps every ``LAMP_SPACING`` m on alternating sidewalks of every street."""
    pts = []
    for x, w in zip(sx, wx):
        ys = np.arange(LAMP_SPACING / 2, ymax, LAMP_SPACING)
        side = np.where(np.arange(len(ys)) % 2 == 0, 1.0, -1.0)
        pts.append(np.stack([x + side * (w / 2 - 1.0), ys], 1))
    for y, w in zip(sy, wy):
        xs = np.arange(LAMP_SPACING / 2, xmax, LAMP_SPACING)
        side = np.where(np.arange(len(xs)) % 2 == 0, 1.0, -1.0)
        pts.append(np.stack([xs, y + side * (w / 2 - 1.0)], 1))
    return np.concatenate(pts)


def _poles(xy: np.ndarray, half: float = 0.12) -> Segments:
    """Each lamp pole as two crossing thin segments, so it shows from every side."""
    n = len(xy)
    offs = np.array([[half, 0.0], [0.0, half]])
    p0 = np.concatenate([xy - offs[0], xy - offs[1]])
    p1 = np.concatenate([xy + offs[0], xy + offs[1]])
    m = 2 * n
    return Segments(p0, p1, np.full(m, LAMP_HEIGHT), np.full(m, KIND_POLE), np.zeros(m, dtype=np.int64),
                    np.zeros(m, dtype=np.int64), np.tile([[0.25, 0.26, 0.28]], (m, 1)), np.zeros((m, 8)))


def transient_occluders(rng: np.random.Generator, city: City, cam: np.ndarray, yaw_deg: float,
                        n_cars: int, n_people: int) -> Segments:
    """Vehicles (boxes, 4 segments) and people (2 crossing segments) placed in front of the camera."""
    parts = []
    yaw = np.deg2rad(yaw_deg)
    fwd = np.array([np.cos(yaw), np.sin(yaw)])
    for _ in range(n_cars):
        centre = cam + fwd * rng.uniform(6, 35) + rng.normal(0, 3.0, 2)
        ang = np.deg2rad(round(yaw_deg / 90.0) * 90.0 + rng.normal(0, 3))
        along, across = np.array([np.cos(ang), np.sin(ang)]) * 2.2, np.array([-np.sin(ang), np.cos(ang)]) * 0.9
        c = [centre - along - across, centre + along - across, centre + along + across, centre - along + across]
        col = rng.choice([[0.7, 0.1, 0.1], [0.1, 0.2, 0.6], [0.9, 0.9, 0.9], [0.1, 0.1, 0.1],
                          [0.6, 0.6, 0.65], [0.8, 0.7, 0.1]]) * rng.uniform(0.8, 1.1)
        parts.append(Segments(np.array(c), np.array(c[1:] + c[:1]), np.full(4, rng.uniform(1.35, 1.7)),
                              np.full(4, KIND_CAR), np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64),
                              np.tile(col, (4, 1)), np.zeros((4, 8))))
    for _ in range(n_people):
        pos = cam + fwd * rng.uniform(4, 25) + np.array([-fwd[1], fwd[0]]) * rng.uniform(-6, 6)
        half = 0.25
        shirt, trousers = rng.random(3), rng.random(3) * 0.4
        par = np.zeros((2, 8))
        par[:, 0:3] = trousers
        parts.append(Segments(np.stack([pos - [half, 0], pos - [0, half]]),
                              np.stack([pos + [half, 0], pos + [0, half]]),
                              np.full(2, rng.uniform(1.55, 1.9)), np.full(2, KIND_PERSON),
                              np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64), np.tile(shirt, (2, 1)), par))
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        return Segments(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), none, none, none,
                        np.zeros((0, 3)), np.zeros((0, 8)))
    return Segments.concat(parts)
