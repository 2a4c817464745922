"""Small shared helpers: atomic file output, seeding and logging set-up.

Only entry points (``wakd.cli``) configure logging handlers; library modules use
``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


class WakdError(Exception):
    """An error caused by bad input (file, field, option); the CLI prints it and exits non-zero."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_name(path: str | os.PathLike) -> str:
    """The prefix of this process's temporary names for ``path``: ``.NAME.PID.``"""
    return f".{Path(path).name}.{os.getpid()}."


def clean_stale_temporaries(path: str | os.PathLike) -> int:
    """Remove temporaries of ``path`` left by wakd processes that no longer run (killed by SIGKILL,
    a power cut); returns how many. Temporaries of running processes are left alone."""
    path = Path(path)
    removed = 0
    if not path.parent.is_dir():
        return 0
    for entry in path.parent.glob(f".{glob_escape(path.name)}.*"):
        pid = entry.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed += 1
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Nothing is half-written: on an exception (SIGTERM and SIGINT included, see :mod:`wakd.cli`)
    the temporary file (or folder) is removed and ``path`` is left as it was; temporaries that a
    killed process left behind are removed by the next write of ``path``.

    Args:
        path: the final file or folder.
        suffix: suffix of the temporary name (default: that of ``path``, so writers that pick the
            format from the extension still work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=temporary_name(path), suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise RuntimeError(f"atomic_path: nothing was written to the temporary file for {path}")
        if tmp_path.is_dir() and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()
        if _disk_full(exc):  # the user's file, not our temporary (h5py names the temporary)
            raise disk_full(path) from None
        raise


def _disk_full(exc: BaseException | None) -> bool:
    """An OSError of a full disk or quota, or h5py's RuntimeError quoting one (``errno = 28``)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, OSError | RuntimeError) and any(
        t in str(exc) for t in ("No space left on device", "Disk quota exceeded", "errno = 28"))


def write_via_memory(path: str | os.PathLike, write: Callable[[io.BytesIO], object]) -> None:
    """``write(buffer)`` into memory, then the bytes to ``path`` with plain file I/O: torch's own writers
    (``torch.save``, ``torch.jit.save``, the ONNX exporter) abort the process (SIGABRT, a C++ exception) when the
    disk fills; a Python write raises ``OSError(ENOSPC)``, which :func:`atomic_path` turns into one line."""
    buffer = io.BytesIO()
    write(buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def disk_full(path: str | os.PathLike) -> WakdError:
    """The one-line error of an output that did not fit on its file system."""
    path = Path(path)
    return WakdError(f"{path}: disk full while writing it (no space left in {path.parent}); nothing was written")


#: an HDF5 file whose writes failed (a full disk) is open: HDF5 crashes (SIGSEGV) when it is closed or freed,
#: so the program ends with os._exit after its message (:func:`wakd.__main__.entry`)
UNCLOSABLE_HDF5: list[str] = []


@contextlib.contextmanager
def hdf5_file(path: str | os.PathLike) -> Iterator:
    """An HDF5 file open for writing at ``path`` (a temporary of :func:`atomic_path`), flushed and closed when
    the block ends.

    A full disk: HDF5's write errors surface late (when a dataset is freed: "Exception ignored" tracebacks) and
    closing such a file crashes the process (exit 139, in this block or at interpreter exit). So while the block
    runs, h5py's complaints about freed objects are caught and remembered; on a write error the file is left
    open (and the temporary removed by :func:`atomic_path`), the error becomes one ``OSError(ENOSPC)`` naming the
    temporary, and the file is recorded in :data:`UNCLOSABLE_HDF5` so that the command exits at once after its
    one-line message."""
    import h5py

    failed: list[str] = []
    hook, excepthook = sys.unraisablehook, sys.excepthook

    def quiet(unraisable) -> None:  # h5py's dealloc complaints on a full disk (Cython reports them twice:
        if _disk_full(unraisable.exc_value):  # through sys.excepthook, then sys.unraisablehook)
            failed.append(str(unraisable.exc_value))
        else:
            hook(unraisable)

    def quiet_print(kind, value, tb) -> None:
        if _disk_full(value):
            failed.append(str(value))
        else:
            excepthook(kind, value, tb)

    f = h5py.File(path, "w")
    sys.unraisablehook, sys.excepthook = quiet, quiet_print
    try:
        try:
            yield f
            if failed:
                raise OSError(errno.ENOSPC, f"No space left on device ({path})")
            f.flush()
            f.close()
        except BaseException as exc:
            if not (_disk_full(exc) or failed):
                with contextlib.suppress(Exception):
                    f.close()
                raise
            UNCLOSABLE_HDF5.append(str(path))
            raise OSError(errno.ENOSPC, f"No space left on device ({path})") from None
    finally:
        sys.unraisablehook, sys.excepthook = hook, excepthook


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike | None) -> Iterator[list[Path | None]]:
    """Temporary paths for all the outputs of a command (``None`` passes through), renamed onto
    their final names together when the block succeeds; on any error none of them appears.

    SIGTERM and SIGINT are held back while the temporaries are renamed (a few system calls), so a
    signal cannot leave some outputs renamed and others not; it takes effect right after."""
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(p)) if p else None for p in paths]
        try:
            yield tmps
        except OSError as exc:  # name the output whose temporary the error names, else the first
            if not _disk_full(exc):
                raise
            named = [p for p, t in zip(paths, tmps) if t is not None and t.name in str(exc)]
            raise disk_full(named[0] if named else next(p for p in paths if p)) from None
        with signals_held():
            stack.close()  # every atomic_path's rename


@contextlib.contextmanager
def signals_held(held: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Run the block with the Python handlers of ``held`` replaced by a recorder; afterwards restore
    them and raise the first signal that arrived, so its handler runs then. (Masking the signal in
    this thread would not do: the kernel hands it to any thread of the process that does not mask it
    — torch's and faiss's threads — and Python runs the handler in the main thread all the same.)
    Outside the main thread, where handlers cannot be set, the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, or a WakdError saying that ``what`` was expected there."""
    if not os.path.isfile(path):
        raise WakdError(f"{path}: no such file; expected {what}")
    return Path(path)


def read_csv_text(path: str | os.PathLike, where: str = "") -> str:
    """The text of a CSV file, checked where it is read: UTF-8 (a byte-order mark is dropped) and a header
    that names each column once (``where``: the option that named the file, for the message).

    Raises:
        WakdError: undecodable bytes (their offset named) or a column named twice.
    """
    import csv
    import io

    label = f"{where} {path}" if where else str(path)
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WakdError(f"{label}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 4]!r}); "
                        "save the table as UTF-8 CSV") from None
    header = next(csv.reader(io.StringIO(text)), [])
    names = [h.strip().lower() for h in header]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        raise WakdError(f"{label}: column {twice[0]!r} appears {names.count(twice[0])} times in the header; "
                        "expected each column once")
    return text


def check_array(a: np.ndarray, where: str, shape: tuple | None = None, finite: bool = True) -> np.ndarray:
    """Refuse an array read from a file unless it has ``shape`` (``None`` entries: any size) and, with
    ``finite``, only finite values; ``where`` names it (``FILE: /dataset``). The one place these checks
    live, so every reader says the same thing."""
    a = np.asarray(a)
    if shape is not None and (a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape))):
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise WakdError(f"{where}: shape {'x'.join(map(str, a.shape)) or 'scalar'}, expected {want}")
    if finite and a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise WakdError(f"{where}: non-finite value (NaN/Inf) at index {tuple(int(i) for i in bad)}; expected "
                        "finite numbers")
    return a


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if imported) PyTorch random number generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def setup_logging(verbose: bool = False, log_file: str | os.PathLike | None = None) -> None:
    """Configure the root logger for a command-line run (stderr, optionally a file too)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for noisy in ("faiss.loader", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
