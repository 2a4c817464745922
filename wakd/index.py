"""A searchable index of anyone's photos (``wakd index`` / ``wakd query``).

Layout (HDF5, one file)::

    /descriptors  [N, D] float16, L2-normalised, rows in the order of /paths
    /paths        [N]    image paths relative to the index file's folder
    /coords       [N, 2] positions (NaN where unknown): UTM east, north (coords = "utm") or
                         latitude, longitude in degrees (coords = "latlon")
    /stamps       [N, 2] int64 file size and modification time (ns) when described: a rerun
                         describes again a file that changed
    attrs: coords, dim, size, precision, checkpoint, checkpoint_sha256, pca, pca_sha256, images (the
           folder, relative to the index), model (JSON), provenance (JSON)

Positions come from gmberton's file names (``@UTM_east@UTM_north@zone@...@.jpg``, as in the VPR
benchmark's datasets) or from a CSV ``image,east,north`` / ``image,lat,lon``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from pathlib import Path

import h5py
import numpy as np

from wakd.descriptors import STR, descriptor_chunks
from wakd.utils import WakdError, check_array, hdf5_file, read_csv_text, require_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EARTH_RADIUS_M = 6371008.8


def find_images(folder: str | os.PathLike) -> list[Path]:
    """JPEG and PNG files under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WakdError(f"--images {folder}: no such folder; expected a folder of JPEG/PNG photos")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise WakdError(f"--images {folder}: no .jpg/.jpeg/.png files found (searched recursively)")
    return found


def position_from_name(path: str | os.PathLike) -> tuple[float, float] | None:
    """UTM (east, north) from a gmberton-style name ``@east@north@...``, else None."""
    parts = Path(path).name.split("@")
    if len(parts) < 3:
        return None
    try:
        east, north = float(parts[1]), float(parts[2])
    except ValueError:
        return None
    return (east, north) if math.isfinite(east) and math.isfinite(north) else None


def read_positions(path: str | os.PathLike) -> tuple[str, dict[str, tuple[float, float]]]:
    """(``"utm"`` or ``"latlon"``, image -> position) from a CSV with columns image,east,north (or
    image,easting,northing) or image,lat,lon (``image``: a path relative to the images folder, or a
    file name)."""
    require_file(path, "a CSV of positions with columns image,east,north or image,lat,lon")
    with io.StringIO(read_csv_text(path, "--positions"), newline="") as f:  # UTF-8, each column once
        reader = csv.DictReader(f)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        if "image" in cols and {"east", "north"} <= set(cols):
            kind, keys = "utm", ("east", "north")
        elif "image" in cols and {"easting", "northing"} <= set(cols):  # the synthetic city's side tables
            kind, keys = "utm", ("easting", "northing")
        elif "image" in cols and {"lat", "lon"} <= set(cols):
            kind, keys = "latlon", ("lat", "lon")
        else:
            raise WakdError(f"--positions {path}: columns {', '.join(cols) or 'none'}; expected image,east,north "
                            "or image,lat,lon")
        out = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            try:
                a, b = float(row[keys[0]]), float(row[keys[1]])
            except ValueError:
                raise WakdError(f"--positions {path}: line {line}: {keys[0]}={row[keys[0]]!r}, "
                                f"{keys[1]}={row[keys[1]]!r}; expected numbers") from None
            on_earth = kind != "latlon" or (-90 <= a <= 90 and -180 <= b <= 180)
            if not (math.isfinite(a) and math.isfinite(b) and on_earth):
                want = "latitude in [-90, 90] and longitude in [-180, 180]" if kind == "latlon" else "UTM metres"
                raise WakdError(f"--positions {path}: line {line}: {keys[0]}={a}, {keys[1]}={b}; "
                                f"expected finite {want}")
            name = row["image"]
            if not name:
                raise WakdError(f"--positions {path}: line {line}: empty image; expected a path relative to the "
                                "images folder or a file name")
            if out.get(name, (a, b)) != (a, b):
                raise WakdError(f"--positions {path}: line {line}: {name} again, at {keys[0]}={a}, {keys[1]}={b} "
                                f"instead of {out[name][0]}, {out[name][1]}; expected one position per image")
            out[name] = (a, b)
    return kind, out


def positions_for(images: list[Path], folder: Path,
                  positions: str | os.PathLike | tuple | list | None) -> tuple[str, np.ndarray]:
    """(coordinate kind, ``[N, 2]`` positions, NaN where unknown) of ``images``, from one or more
    CSVs (all UTM or all lat/lon) or, without, from the file names."""
    coords = np.full((len(images), 2), np.nan)
    files = [positions] if isinstance(positions, str | os.PathLike) else list(positions or [])
    if files:
        kind, table = read_positions(files[0])
        for more in files[1:]:
            other, rows = read_positions(more)
            if other != kind:
                raise WakdError(f"--positions {more}: {other} positions, but {files[0]} has {kind}; expected one kind")
            clash = next((k for k, v in rows.items() if table.get(k, v) != v), None)
            if clash is not None:
                raise WakdError(f"--positions {more}: {clash} at {rows[clash]}, but {files[0]}'s other files give "
                                f"{table[clash]}; expected one position per image")
            table.update(rows)
        names: dict[str, list[Path]] = {}
        for p in images:
            names.setdefault(p.name, []).append(p)
        used = set()
        for i, p in enumerate(images):
            rel = p.relative_to(folder).as_posix()
            key = rel if rel in table else p.name if p.name in table else None
            if key is None:
                continue
            if key == p.name != rel and len(names[p.name]) > 1:
                same = ", ".join(q.relative_to(folder).as_posix() for q in names[p.name][:3])
                raise WakdError(f"--positions {' '.join(map(str, files))}: image {p.name} names "
                                f"{len(names[p.name])} files under {folder} ({same}); expected the path relative "
                                "to the folder")
            coords[i] = table[key]
            used.add(key)
        if images and table and not used:
            raise WakdError(f"--positions {' '.join(map(str, files))}: none of its {len(table)} images is in {folder} "
                            f"(e.g. {next(iter(table))}); expected paths relative to the folder or file names")
        if len(used) < len(table):
            log.warning("--positions: %d of %d rows name no image under %s (e.g. %s)", len(table) - len(used),
                        len(table), folder, next(k for k in table if k not in used))
        return kind, coords
    for i, p in enumerate(images):
        pos = position_from_name(p)
        if pos is not None:
            coords[i] = pos
    return ("utm" if np.isfinite(coords).any() else ""), coords


def distance_m(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """Metres between positions ``a`` and ``b`` (``[..., 2]``): Euclidean for UTM, haversine for lat/lon."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if kind == "latlon":
        la, lb = np.radians(a[..., 0]), np.radians(b[..., 0])
        dlat, dlon = lb - la, np.radians(b[..., 1] - a[..., 1])
        h = np.sin(dlat / 2) ** 2 + np.cos(la) * np.cos(lb) * np.sin(dlon / 2) ** 2
        return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
    return np.linalg.norm(a - b, axis=-1)


class Index:
    """An index file read into memory: descriptors (float32), absolute paths, positions, attributes."""

    def __init__(self, path: str | os.PathLike) -> None:
        require_file(path, "an index file (wakd index)")
        self.path = Path(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise WakdError(f"{path}: not a readable index HDF5 file ({exc})") from None
        with f:
            for key in ("descriptors", "paths", "coords"):
                if key not in f:
                    raise WakdError(f"{path}: missing dataset /{key} (expected a file written by 'wakd index')")
            self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            self.descriptors = check_array(f["descriptors"][:].astype(np.float32), f"{path}: /descriptors",
                                           (None, None))
            rel = [p.decode() if isinstance(p, bytes) else str(p) for p in f["paths"][:]]
            self.coords = check_array(f["coords"][:], f"{path}: /coords", (len(rel), 2), finite=False)
            self.stamps = f["stamps"][:] if "stamps" in f else np.full((len(rel), 2), -1, dtype=np.int64)
        if len(self.descriptors) != len(rel):
            raise WakdError(f"{path}: {len(self.descriptors)} descriptors for {len(rel)} paths; expected one each")
        self.relative = rel
        self.paths = [os.path.normpath(self.path.parent / p) for p in rel]
        self.kind = str(self.attrs.get("coords", ""))


def file_stamp(path: str | os.PathLike) -> tuple[int, int]:
    """(size, modification time in ns) of a file: what tells a changed photo from the described one."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def write_index(out: Path, descriptors: np.ndarray, rel_paths: list[str], coords: np.ndarray, stamps: np.ndarray,
                attrs: dict) -> None:
    """Write an index file at ``out`` (a temporary path the caller renames)."""
    with hdf5_file(out) as f:
        f.create_dataset("descriptors", data=descriptors.astype(np.float16),
                         chunks=descriptor_chunks(*descriptors.shape))
        f.create_dataset("paths", data=np.asarray(rel_paths, dtype=object), dtype=STR)
        f.create_dataset("coords", data=coords)
        f.create_dataset("stamps", data=np.asarray(stamps, dtype=np.int64).reshape(-1, 2))
        f.attrs.update(attrs)
