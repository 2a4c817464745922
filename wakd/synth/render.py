"""A vectorised numpy ray caster for the synthetic city.

The camera is a pinhole at street level (2.5 m) looking horizontally; pitch is a vertical shift of
the principal point (a shift lens, so verticals stay vertical and every image column is one
horizontal ray direction). For each column the renderer intersects the ray with the nearby
vertical segments (facades, lamp poles, occluders) and keeps the nearest few hits; for each pixel
the first hit whose height range contains the ray's height is visible, rays that pass over every
hit see the sky, and rays that reach the ground first see the street (asphalt, sidewalks, lane
marks). Surfaces are textured procedurally from hashed lattice noise and lit by the capture
condition: ``day`` (sun from a random azimuth, clouds), ``sunset`` (walls at 40-60 % brightness,
orange light, some windows lit) or ``night`` (dark sky, lit windows, street-lamp pools, sensor noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wakd.synth.world import KIND_BUILDING, KIND_CAR, KIND_PERSON, KIND_POLE, LAMP_HEIGHT, City, Segments

CAMERA_HEIGHT = 2.5
MAX_HITS = 5
VIEW_RADIUS = 160.0
LAMP_REACH = 45.0  # metres beyond which a street lamp's light is ignored


@dataclass(frozen=True)
class Lighting:
    """Illumination of one capture, drawn by :func:`make_lighting`."""

    condition: str
    sun_azimuth: float
    sun: float  # directional light strength
    ambient: float
    tint: tuple[float, float, float]
    lit_fraction: float  # windows lit
    lamps: float  # street-lamp strength
    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    clouds: float
    fog_distance: float
    noise: float
    exposure: float
    time_seed: int


def make_lighting(condition: str, rng: np.random.Generator) -> Lighting:
    """Random illumination for a capture under ``condition`` (``day``, ``sunset`` or ``night``)."""
    az = float(rng.uniform(0, 2 * np.pi))
    seed = int(rng.integers(0, 2**31))
    exposure = float(rng.uniform(0.85, 1.15))
    if condition == "day":
        return Lighting("day", az, float(rng.uniform(0.25, 0.45)), float(rng.uniform(0.7, 0.85)),
                        tuple(np.clip(1 + rng.normal(0, 0.04, 3), 0.9, 1.1)), 0.0, 0.0,
                        (0.78, 0.86, 0.95), (0.33, 0.52, 0.85), float(rng.uniform(0.0, 0.6)),
                        float(rng.uniform(180, 320)), 0.01, exposure, seed)
    if condition == "sunset":
        level = float(rng.uniform(0.4, 0.6))
        return Lighting("sunset", az, 0.2 * level, level, (1.0, float(rng.uniform(0.7, 0.82)),
                        float(rng.uniform(0.5, 0.62))), float(rng.uniform(0.1, 0.25)), 0.25,
                        (1.0, 0.62, 0.38), (0.32, 0.28, 0.5), float(rng.uniform(0.2, 0.7)),
                        float(rng.uniform(140, 220)), 0.02, exposure, seed)
    if condition == "night":
        return Lighting("night", az, 0.0, float(rng.uniform(0.05, 0.09)), (0.75, 0.82, 1.0),
                        float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.8, 1.2)),
                        (0.06, 0.07, 0.12), (0.01, 0.012, 0.03), 0.0, float(rng.uniform(80, 130)),
                        float(rng.uniform(0.03, 0.05)), exposure, seed)
    raise ValueError(f"unknown condition {condition!r}; expected day, sunset or night")


def hash01(*keys: np.ndarray) -> np.ndarray:
    """A deterministic hash of integer arrays to floats in [0, 1) (uint32 mixing)."""
    with np.errstate(over="ignore"):
        return _hash01(keys)


def _hash01(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    h = np.full(np.broadcast(*keys).shape, 0x9E3779B9, dtype=np.uint32)
    for k, mult in zip(keys, (0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F, 0x165667B1, 0xD3A2646C)):
        h ^= (np.asarray(k).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32) * np.uint32(mult)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return h.astype(np.float64) / 4294967296.0


def value_noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Smooth lattice noise in [0, 1)."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    a, b = hash01(ix, iy, seed), hash01(ix + 1, iy, seed)
    c, d = hash01(ix, iy + 1, seed), hash01(ix + 1, iy + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def render(city: City, cam_xy: np.ndarray, yaw_deg: float, size: tuple[int, int], light: Lighting,
           fov: float = 90.0, pitch_deg: float = 8.0, extra: Segments | None = None,
           supersample: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
    """Render one image.

    Args:
        city: the world.
        cam_xy: camera position (metres).
        yaw_deg: heading, degrees counter-clockwise from +x (east).
        size: output (height, width).
        light: the capture's illumination.
        fov: horizontal field of view in degrees.
        pitch_deg: upward tilt (as a principal-point shift).
        extra: transient occluders for this image.
        supersample: render at this factor per axis, then average.
        rng: randomness for sensor noise (default: seeded from ``light.time_seed``).

    Returns:
        ``[H, W, 3]`` uint8 RGB image.
    """
    H, W = size[0] * supersample, size[1] * supersample
    cam = np.asarray(cam_xy, dtype=np.float64)
    yaw = np.deg2rad(yaw_deg)
    fwd = np.array([np.cos(yaw), np.sin(yaw)])
    right = np.array([np.sin(yaw), -np.cos(yaw)])
    f = (W / 2) / np.tan(np.deg2rad(fov) / 2)
    cy = H / 2 + f * np.tan(np.deg2rad(pitch_deg))
    a = (np.arange(W) + 0.5 - W / 2) / f  # column offsets
    b = (cy - (np.arange(H) + 0.5)) / f  # row slopes (height gained per unit of t)
    d = fwd[None] + a[:, None] * right[None]  # [W, 2] horizontal ray directions
    hlen = np.sqrt(1 + a * a)  # horizontal metres per unit of t

    segs = city.segments.take(city.segments_near(cam, VIEW_RADIUS))
    if extra is not None and len(extra):
        segs = Segments.concat([segs, extra])
    t_hit, s_hit, i_hit = _intersect(cam, d, segs)  # [K, W]

    img = np.zeros((H, W, 3))
    which = _visible(t_hit, i_hit, segs, b, H, W)

    rows, cols = np.nonzero(which >= 0)
    if len(rows):
        k = which[rows, cols]
        t = t_hit[k, cols]
        idx = i_hit[k, cols]
        img[rows, cols] = _shade_segments(city, segs, idx, s_hit[k, cols], CAMERA_HEIGHT + t * b[rows],
                                          cam + t[:, None] * d[cols], cam, light)
        img[rows, cols] = _fog(img[rows, cols], t * hlen[cols], light)
    rows, cols = np.nonzero(which == -2)
    if len(rows):
        tg = CAMERA_HEIGHT / -b[rows]
        p = cam + tg[:, None] * d[cols]
        img[rows, cols] = _fog(_shade_ground(city, p, light), tg * hlen[cols], light)
    rows, cols = np.nonzero(which == -1)
    if len(rows):
        img[rows, cols] = _shade_sky(np.arctan(b[rows] / hlen[cols]), yaw + np.arctan(-a[cols]), light)

    return _develop(img, size, supersample, light, rng)


def _develop(img: np.ndarray, size: tuple[int, int], supersample: int, light: Lighting,
             rng: np.random.Generator | None) -> np.ndarray:
    """Exposure, supersampling, sensor noise and gamma: the ``[H, W, 3]`` uint8 image."""
    img = img * light.exposure
    if supersample > 1:
        img = img.reshape(size[0], supersample, size[1], supersample, 3).mean((1, 3))
    if light.noise > 0:
        noise_rng = rng if rng is not None else np.random.default_rng(light.time_seed)
        img = img + noise_rng.normal(0, light.noise, img.shape)
    img = np.clip(img, 0, 1) ** (1 / 1.1)
    return (img * 255 + 0.5).astype(np.uint8)


def _visible(t_hit: np.ndarray, i_hit: np.ndarray, segs: Segments, b: np.ndarray, H: int, W: int) -> np.ndarray:
    """``[H, W]``: what each pixel sees: -1 sky, -2 ground, k >= 0 the k-th nearest facade hit of its column."""
    which = np.full((H, W), -1)
    z_all = CAMERA_HEIGHT + t_hit[:, None, :] * b[None, :, None]  # [K, H, W]
    h_all = np.where(np.isfinite(t_hit), segs.height[np.maximum(i_hit, 0)], -1.0)[:, None, :]
    undecided = np.ones((H, W), dtype=bool)
    for k in range(t_hit.shape[0]):
        z = z_all[k]
        ground = undecided & (z < 0)
        which[ground] = -2
        hit = undecided & (z >= 0) & (z <= h_all[k])
        which[hit] = k
        undecided &= ~(ground | hit)
    which[undecided & (b[:, None] < 0)] = -2
    return which


def _intersect(cam: np.ndarray, d: np.ndarray, segs: Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest ``MAX_HITS`` ray-segment hits per column: (t, s along segment, segment index), [K, W]."""
    W = len(d)
    if len(segs) == 0:
        inf = np.full((1, W), np.inf)
        return inf, np.zeros((1, W)), np.full((1, W), -1)
    e = segs.p1 - segs.p0
    w = segs.p0 - cam
    denom = d[:, 0:1] * e[None, :, 1] - d[:, 1:2] * e[None, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[None, :, 0] * e[None, :, 1] - w[None, :, 1] * e[None, :, 0]) / denom
        s = (w[None, :, 0] * d[:, 1:2] - w[None, :, 1] * d[:, 0:1]) / denom
    ok = (np.abs(denom) > 1e-12) & (t > 0.3) & (s >= 0) & (s <= 1)
    t = np.where(ok, t, np.inf)
    k = min(MAX_HITS, t.shape[1])
    part = np.argpartition(t, k - 1, axis=1)[:, :k] if k < t.shape[1] else np.tile(np.arange(k), (W, 1))
    tk = np.take_along_axis(t, part, 1)
    order = np.argsort(tk, axis=1)
    part = np.take_along_axis(part, order, 1)
    tk = np.take_along_axis(tk, order, 1)
    sk = np.take_along_axis(s, part, 1)
    return tk.T, np.nan_to_num(sk.T), np.where(np.isfinite(tk), part, -1).T


def _fog(rgb: np.ndarray, dist: np.ndarray, light: Lighting) -> np.ndarray:
    amount = (1 - np.exp(-dist / light.fog_distance))[:, None]
    return rgb * (1 - amount) + np.asarray(light.sky_horizon)[None] * amount


def _shade_sky(elev: np.ndarray, azimuth: np.ndarray, light: Lighting) -> np.ndarray:
    t = np.clip(elev / 0.8, 0, 1)[:, None]
    rgb = np.asarray(light.sky_horizon)[None] * (1 - t) + np.asarray(light.sky_zenith)[None] * t
    if light.clouds > 0:
        n = value_noise(azimuth * 6.0, elev * 14.0, light.time_seed) * 0.6 + \
            value_noise(azimuth * 17.0, elev * 40.0, light.time_seed + 1) * 0.4
        cover = np.clip((n - (1 - light.clouds)) * 3, 0, 1)[:, None]
        cloud = np.asarray(light.sky_horizon)[None] * 1.05
        rgb = rgb * (1 - cover) + np.clip(cloud, 0, 1) * cover
    return rgb


def _lamp_light(city: City, p: np.ndarray, z: np.ndarray | float, light: Lighting) -> np.ndarray:
    """Warm light from nearby street lamps at points ``p`` (plan) and heights ``z``."""
    if light.lamps <= 0 or len(p) == 0:
        return np.zeros((len(p), 3))
    lo, hi = p.min(0) - LAMP_REACH, p.max(0) + LAMP_REACH
    lamps = city.lamps[((city.lamps >= lo) & (city.lamps <= hi)).all(1)]
    if len(lamps) == 0:
        return np.zeros((len(p), 3))
    dz2 = (np.broadcast_to(np.asarray(z, dtype=np.float64), (len(p),)) - LAMP_HEIGHT) ** 2
    total = np.zeros(len(p))
    for chunk in np.array_split(lamps, max(1, len(lamps) // 16)):
        d2 = ((p[:, None, :] - chunk[None]) ** 2).sum(-1) + dz2[:, None]
        total += (1.0 / (1.0 + d2 / 10.0)).sum(1)
    return light.lamps * 0.6 * total[:, None] * np.array([[1.0, 0.8, 0.5]])


def _shade_ground(city: City, p: np.ndarray, light: Lighting) -> np.ndarray:
    dx = p[:, 0:1] - city.street_x[None]
    ix = np.abs(dx).argmin(1)
    dx = np.abs(dx[np.arange(len(p)), ix])
    dy = p[:, 1:2] - city.street_y[None]
    iy = np.abs(dy).argmin(1)
    dy = np.abs(dy[np.arange(len(p)), iy])
    wx, wy = city.street_w_x[ix] / 2, city.street_w_y[iy] / 2
    core_ns, core_ew = dx < wx - 2.5, dy < wy - 2.5
    road = core_ns | core_ew
    grain = value_noise(p[:, 0] * 3.0, p[:, 1] * 3.0, 7)[:, None]
    rgb = np.where(road[:, None], np.array([[0.30, 0.30, 0.32]]), np.array([[0.56, 0.54, 0.50]]))
    rgb = rgb * (0.85 + 0.3 * grain)
    tiles = ~road & ((np.abs(p[:, 0] % 1.5) < 0.06) | (np.abs(p[:, 1] % 1.5) < 0.06))
    rgb[tiles] *= 0.8
    dash_ns = core_ns & ~core_ew & (dx < 0.12) & ((p[:, 1] % 6.0) < 3.0)
    dash_ew = core_ew & ~core_ns & (dy < 0.12) & ((p[:, 0] % 6.0) < 3.0)
    rgb[dash_ns | dash_ew] = [0.85, 0.82, 0.6]
    lit = rgb * (light.ambient + light.sun * 0.8) * np.asarray(light.tint)[None]
    return lit + rgb * _lamp_light(city, p, 0.0, light)


def _shade_segments(city: City, segs: Segments, idx: np.ndarray, s: np.ndarray, z: np.ndarray, p: np.ndarray,
                    cam: np.ndarray, light: Lighting) -> np.ndarray:
    """Colour of surface points: segment ``idx`` at fraction ``s`` along it, height ``z``."""
    e = segs.p1[idx] - segs.p0[idx]
    length = np.linalg.norm(e, axis=1)
    u = s * length
    normal = np.stack([-e[:, 1], e[:, 0]], 1) / np.maximum(length, 1e-9)[:, None]
    facing = np.sign(((cam - p) * normal).sum(1))[:, None]
    sun_dir = np.array([np.cos(light.sun_azimuth), np.sin(light.sun_azimuth)])
    diffuse = np.clip((normal * facing * sun_dir).sum(1), 0, 1)[:, None]
    albedo = segs.colour[idx].copy()
    emissive = np.zeros_like(albedo)
    kind = segs.kind[idx]

    b = kind == KIND_BUILDING
    if b.any():
        albedo[b], emissive[b] = _facade(city.styles, segs, idx[b], u[b], z[b], length[b], light)
    car = kind == KIND_CAR
    if car.any():
        glass = (z[car] > 0.95) & (z[car] < segs.height[idx[car]] - 0.1)
        albedo[car] = np.where(glass[:, None], 0.12, albedo[car])
        albedo[car] = np.where((z[car] < 0.35)[:, None], 0.05, albedo[car])
    person = kind == KIND_PERSON
    if person.any():
        zp, hp = z[person], segs.height[idx[person]]
        legs = zp < 0.85
        albedo[person] = np.where(legs[:, None], segs.param[idx[person], 0:3], albedo[person])
        albedo[person] = np.where((zp > hp - 0.25)[:, None], np.array([[0.78, 0.6, 0.48]]), albedo[person])
    pole = kind == KIND_POLE
    if pole.any():
        head = z[pole] > LAMP_HEIGHT - 0.35
        emissive[pole] = np.where(head[:, None], np.array([[1.0, 0.9, 0.6]]) * light.lamps * 1.5, 0.0)

    lit = albedo * (light.ambient + light.sun * 2.0 * diffuse) * np.asarray(light.tint)[None]
    return lit + albedo * _lamp_light(city, p, z, light) + emissive




def _hue(h: np.ndarray) -> np.ndarray:
    """Saturated colours from hues in [0, 1)."""
    k = (h[:, None] * 6 + np.array([[5.0, 3.0, 1.0]])) % 6
    return 0.9 - 0.75 * np.clip(np.minimum(k, 4 - k), 0, 1)


def _facade(styles: np.ndarray, segs: Segments, idx: np.ndarray, u: np.ndarray, z: np.ndarray,
            length: np.ndarray, light: Lighting) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and emitted light of building facades at facade coordinates (u metres along, z up)."""
    sty = styles[segs.style[idx]]
    par = segs.param[idx]
    seed = segs.seed[idx]
    height = segs.height[idx]
    n = len(idx)
    # wall: per-building colour, fine material grain and large weathering blotches
    grain = value_noise(u * 4.0, z * 4.0, seed) - 0.5
    blotch = value_noise(u * 0.3, z * 0.3, seed + 1) - 0.5
    rgb = segs.colour[idx] * (1 + (2 * sty[:, 3] * grain + 0.25 * blotch))[:, None]
    emit = np.zeros((n, 3))
    fl, glass = _upper_windows(rgb, emit, sty, seed, u, z, height, length, light)
    _ground_floor(rgb, emit, sty, par, seed, u, z, length, fl, glass, grain, light)
    trim = (z > height - 0.45) | (u < 0.12) | (u > length - 0.12)
    rgb[trim] *= 0.6
    return np.clip(rgb, 0, 1), emit


def _upper_windows(rgb: np.ndarray, emit: np.ndarray, sty: np.ndarray, seed: np.ndarray, u: np.ndarray,
                   z: np.ndarray, height: np.ndarray, length: np.ndarray,
                   light: Lighting) -> tuple[np.ndarray, np.ndarray]:
    """Windows of the floors above the ground (6 shapes), some lit, painted into ``rgb`` / ``emit``;
    returns each point's floor index and the glass colour."""
    floor_h, bay = sty[:, 4], sty[:, 5]
    fl = np.floor(z / floor_h)
    fz = z / floor_h - fl
    bi = np.floor(u / bay)
    fu = u / bay - bi
    ww, wh, shape = sty[:, 6], sty[:, 7], sty[:, 8].astype(int)
    du, dz = np.abs(fu - 0.5), np.abs(fz - 0.55)
    win = (du < ww / 2) & (dz < wh / 2)
    win = np.where(shape == 1, (du < ww * 0.3) & (dz < wh * 0.68), win)
    win = np.where(shape == 2, (dz < wh * 0.35) & (np.abs(fu - 0.5) < 0.47), win)
    win = np.where(shape == 3, (np.abs((fu * 2) % 1 - 0.5) < ww / 2) & (dz < wh / 2), win)
    arch_top = (fz - 0.55 - wh / 4) / (ww * bay / floor_h / 2 + 1e-9)
    arched = (du < ww / 2) & (fz - 0.55 > -wh / 2) & ((fz - 0.55 < wh / 4) | (du ** 2 + arch_top ** 2 < 0.25))
    win = np.where(shape == 5, arched, win)
    frame = (shape == 4) & ~win & (du < ww / 2 + 0.06) & (dz < wh / 2 + 0.06)
    upper = (fl >= 1) & (z < height - 0.7) & (u > 0.5) & (u < length - 0.5)
    win &= upper
    frame &= upper
    rgb[frame] = sty[frame, 10:11] * np.array([[0.95, 0.93, 0.9]])
    glass = np.array([[0.16, 0.2, 0.26]]) + sty[:, 9:10] * np.array([[0.05, 0.08, 0.12]]) + \
        0.12 * (1 - fz)[:, None] * np.array([[0.6, 0.7, 0.9]])
    rgb[win] = glass[win]
    lit = win & (hash01(seed, fl, bi, light.time_seed) < light.lit_fraction)
    emit[lit] = np.array([1.0, 0.82, 0.5]) * (0.6 + 0.6 * hash01(seed, fl, bi)[lit, None])
    return fl, glass


def _ground_floor(rgb: np.ndarray, emit: np.ndarray, sty: np.ndarray, par: np.ndarray, seed: np.ndarray,
                  u: np.ndarray, z: np.ndarray, length: np.ndarray, fl: np.ndarray, glass: np.ndarray,
                  grain: np.ndarray, light: Lighting) -> None:
    """Shop fronts (lit panes, signs with glyphs), doors, low windows and posters of the ground floor."""
    floor_h, bay, ww = sty[:, 4], sty[:, 5], sty[:, 6]
    ground = fl < 1
    shop = ground & (par[:, 0] > 0.5)
    pane = shop & (z > 0.4) & (z < floor_h - 1.3) & (np.abs((u / 2.5) % 1 - 0.5) < 0.44) & \
        (u > 0.6) & (u < length - 0.6)
    rgb[pane] = np.array([0.12, 0.14, 0.16]) + 0.1 * hash01(seed[pane], np.floor(u[pane] / 2.5))[:, None]
    emit[pane] = np.array([0.9, 0.8, 0.6]) * light.lit_fraction * 0.8
    sign = shop & (z > floor_h - 1.15) & (z < floor_h - 0.25) & (u > par[:, 1]) & (u < par[:, 2])
    if sign.any():
        sc = _hue(par[sign, 4])
        cell = np.floor((u[sign] - par[sign, 1]) / 0.45)
        gu = np.floor(((u[sign] - par[sign, 1]) / 0.45 % 1) * 3)
        gz = np.floor(np.clip((z[sign] - (floor_h[sign] - 1.05)) / 0.7, 0, 0.999) * 3)
        glyph = hash01(seed[sign], cell, 11)
        bit = (np.floor(glyph * 512).astype(np.int64) >> (gu * 3 + gz).astype(np.int64)) & 1
        fg = np.where(par[sign, 4:5] > 0.5, 0.08, 0.95)
        inner = (z[sign] > floor_h[sign] - 1.05) & (z[sign] < floor_h[sign] - 0.35)
        rgb[sign] = np.where((bit.astype(bool) & inner)[:, None], fg, sc)
        emit[sign] = rgb[sign] * light.lamps * 0.35
    door = ground & ~shop & (np.abs(u - par[:, 3]) < 0.6) & (z < 2.3)
    rgb[door] = np.array([0.25, 0.16, 0.1]) * (1 + 0.2 * grain[door, None])
    low_win = ground & ~shop & ~door & (z > 0.9) & (z < 2.2) & (np.abs((u / bay) % 1 - 0.5) < ww / 2) & \
        (np.abs(u - par[:, 3]) > 1.2)
    rgb[low_win] = glass[low_win]
    poster = (par[:, 5] > 0.5) & (np.abs(u - par[:, 6]) < 0.55) & (z > 0.8) & (z < 2.2) & ~door & ~pane
    if poster.any():
        stripe = np.floor((z[poster] - 0.8) / 0.35)
        rgb[poster] = _hue((par[poster, 7] + 0.37 * hash01(seed[poster], stripe, 5)) % 1.0)
