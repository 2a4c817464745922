"""Reading the MATLAB ``dbStruct`` files of Pittsburgh, Tokyo 24/7 and Tokyo Time Machine.

The files are MATLAB v5 ``.mat`` files holding one variable, ``dbStruct``, a 1x1 struct. Its
fields, in this order for Pittsburgh 30k/250k and Tokyo 24/7::

    whichSet             char        'train' / 'val' / 'test'
    dbImageFns           cell N x 1  database image paths, relative ('000/000000_pitch1_yaw1.jpg')
    utmDb                double 2xN  UTM easting; northing in metres
    qImageFns            cell Nq x 1 query image paths, relative
    utmQ                 double 2xNq
    numImages            double      N
    numQueries           double      Nq
    posDistThr           double      25 (metres; evaluation positives)
    posDistSqThr         double      625
    nonTrivPosDistSqThr  double      100 (10 m squared; training positives)

Tokyo Time Machine (``tokyoTM_{train,val}.mat``) adds ``dbTimeStamp`` after ``utmDb`` and
``qTimeStamp`` after ``utmQ`` (1xN doubles). Fields are read by name where present and by
position otherwise, since some redistributed copies renamed them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from wakd.data.base import DatasetError

PITTS_FIELDS = ("whichSet", "dbImageFns", "utmDb", "qImageFns", "utmQ", "numImages", "numQueries",
                "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr")
TOKYOTM_FIELDS = ("whichSet", "dbImageFns", "utmDb", "dbTimeStamp", "qImageFns", "utmQ", "qTimeStamp",
                  "numImages", "numQueries", "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr")
OPTIONAL_FIELDS = ("whichSet", "numImages", "numQueries", "posDistThr", "posDistSqThr",
                   "nonTrivPosDistSqThr")


def load_db_struct(path: str | os.PathLike, fields: tuple[str, ...] = PITTS_FIELDS) -> dict[str, Any]:
    """Read a ``dbStruct`` file into plain Python / NumPy values.

    Args:
        path: the ``.mat`` file.
        fields: the expected fields in file order (``PITTS_FIELDS`` or ``TOKYOTM_FIELDS``).

    Returns:
        A dict with keys from ``fields``: image lists as ``list[str]``, UTM as ``[N, 2]`` float64,
        time stamps as 1-D arrays, scalars as floats; optional scalar fields may be absent.

    Raises:
        DatasetError: the file is missing or unreadable, or a field is missing or malformed.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise DatasetError(f"{src}: file not found (expected a MATLAB dbStruct .mat file)")
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as exc:  # v7.3 files are HDF5
        raise DatasetError(f"{src}: MATLAB v7.3 (HDF5) .mat files are not supported; "
                           "re-save it with save(..., '-v7')") from exc
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError on corrupt files
        raise DatasetError(f"{src}: not a readable MATLAB .mat file ({exc})") from exc
    variables = [k for k in mat if not k.startswith("__")]
    if "dbStruct" in mat:
        struct = mat["dbStruct"]
    elif len(variables) == 1:
        struct = mat[variables[0]]
    else:
        raise DatasetError(f"{src}: no variable 'dbStruct' (found: {', '.join(variables) or 'none'})")
    if struct.dtype.names is None or struct.size != 1:
        raise DatasetError(f"{src}: 'dbStruct' is not a 1x1 MATLAB struct (got a {struct.dtype} "
                           f"array of shape {struct.shape})")
    record = struct.reshape(-1)[0]
    names = struct.dtype.names

    out: dict[str, Any] = {}
    for pos, name in enumerate(fields):
        if name in names:
            raw = record[name]
        elif len(names) == len(fields):
            raw = record[pos]  # same layout, renamed field: take it by its documented position
        elif name in OPTIONAL_FIELDS:
            continue
        else:
            raise DatasetError(f"{src}: dbStruct has no field '{name}' (fields: {', '.join(names)}; "
                               f"expected {', '.join(fields)})")
        out[name] = _convert(name, raw, src)

    _check_counts(out, src)
    return out


def _check_counts(out: dict[str, Any], src: str) -> None:
    """Positions, stated counts and time stamps must match the image lists."""
    for list_key, utm_key, num_key in (("dbImageFns", "utmDb", "numImages"),
                                       ("qImageFns", "utmQ", "numQueries")):
        n = len(out[list_key])
        if len(out[utm_key]) != n:
            raise DatasetError(f"{src}: field '{utm_key}' has {len(out[utm_key])} positions but "
                               f"'{list_key}' lists {n} images; expected equal counts")
        if num_key in out and int(out[num_key]) != n:
            raise DatasetError(f"{src}: field '{num_key}' says {int(out[num_key])} but "
                               f"'{list_key}' lists {n} images")
    for stamp_key, list_key in (("dbTimeStamp", "dbImageFns"), ("qTimeStamp", "qImageFns")):
        if stamp_key in out and len(out[stamp_key]) != len(out[list_key]):
            raise DatasetError(f"{src}: field '{stamp_key}' has {len(out[stamp_key])} entries for "
                               f"{len(out[list_key])} images in '{list_key}'")


def thresholds(db: dict[str, Any]) -> tuple[float, float]:
    """(evaluation positive radius, training positive radius) in metres, defaults 25 and 10."""
    pos = db.get("posDistThr")
    if pos is None and "posDistSqThr" in db:
        pos = math.sqrt(db["posDistSqThr"])
    train = math.sqrt(db["nonTrivPosDistSqThr"]) if "nonTrivPosDistSqThr" in db else 10.0
    return float(25.0 if pos is None else pos), float(train)


def _convert(name: str, raw: Any, src: str) -> Any:
    if name.endswith("ImageFns"):
        return _strings(raw, name, src)
    if name.startswith("utm"):
        arr = np.asarray(raw, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[0] == 2:
            return arr.T.copy()
        if arr.ndim == 2 and arr.shape[1] == 2:
            return arr
        if arr.size == 0:
            return np.zeros((0, 2))
        raise DatasetError(f"{src}: field '{name}' has shape {arr.shape}; expected 2 x N "
                           "(UTM easting; northing)")
    if name.endswith("TimeStamp"):
        return np.asarray(raw, dtype=np.float64).reshape(-1)
    if name == "whichSet":
        return "".join(_strings(raw, name, src))
    arr = np.asarray(raw)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        raise DatasetError(f"{src}: field '{name}' should be a number, got {arr.dtype} of shape {arr.shape}")
    value = float(arr.reshape(-1)[0])
    if name.startswith("num") and not (math.isfinite(value) and value >= 0 and value == int(value)):
        raise DatasetError(f"{src}: field '{name}' is {value:g}; expected a count (a whole number >= 0)")
    if name.endswith("Thr") and not (math.isfinite(value) and value > 0):
        raise DatasetError(f"{src}: field '{name}' is {value:g}; expected a positive distance (metres, or metres "
                           "squared for *Sq*)")
    return value


def _strings(raw: Any, name: str, src: str) -> list[str]:
    """A MATLAB cell array of strings (or a char matrix) as a list of Python strings."""
    arr = np.asarray(raw)
    if arr.dtype.kind == "U":  # a char matrix, read by scipy as one string per row
        return [str(s).rstrip() for s in arr.reshape(-1)]
    if arr.dtype != object:
        raise DatasetError(f"{src}: field '{name}' should be a cell array of strings, got {arr.dtype}")
    out = []
    for i, cell in enumerate(arr.reshape(-1)):
        cell = np.asarray(cell)
        if cell.dtype.kind != "U":
            raise DatasetError(f"{src}: field '{name}' entry {i} is not a string (got {cell.dtype})")
        out.append("".join(str(s) for s in cell.reshape(-1)))
    return out


def save_db_struct(path: str | os.PathLike, db: dict[str, Any], fields: tuple[str, ...] = PITTS_FIELDS,
                   header: str | None = None) -> None:
    """Write a ``dbStruct`` .mat file in the layout documented above (used by the synthetic city
    and the tests).

    Args:
        path: output file (written as given; callers wrap it in ``atomic_path``).
        db: values keyed by field name: image lists as sequences of str, UTM as ``[N, 2]``.
        fields: the field order to write.
        header: fixed text for the 116-byte MAT header. scipy writes the creation date there;
            a fixed header makes the file byte-for-byte reproducible.
    """
    dtype = [(f, object) for f in fields]
    struct = np.empty((1, 1), dtype=dtype)
    for f in fields:
        v = db[f]
        if f.endswith("ImageFns"):
            cell = np.empty((len(v), 1), dtype=object)
            for i, s in enumerate(v):
                cell[i, 0] = str(s)
            v = cell
        elif f.startswith("utm"):
            v = np.asarray(v, dtype=np.float64).reshape(-1, 2).T
        elif f.endswith("TimeStamp"):
            v = np.asarray(v, dtype=np.float64).reshape(1, -1)
        elif f != "whichSet":
            v = np.float64(v)
        struct[0, 0][f] = v
    with open(path, "wb") as fh:
        scipy.io.savemat(fh, {"dbStruct": struct}, format="5", do_compression=False, oned_as="column")
    if header is not None:
        text = header.encode("ascii")[:116].ljust(116, b" ")
        with open(path, "r+b") as fh:
            fh.write(text)
