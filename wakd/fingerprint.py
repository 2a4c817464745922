"""Code fingerprints of pipeline stages, so that Snakemake reruns a stage when *its* code changes.

Snakemake reruns a rule when its parameters, inputs or shell command change, but it cannot see
edits inside the installed ``wakd`` library. Each rule therefore passes ``fingerprint(stage)`` as a
parameter: a hash of the source of the stage's entry module and of every ``wakd`` module it
imports, transitively (found statically with :mod:`ast`, lazy imports inside functions included,
plus the ``__init__.py`` of every package on the way). Editing ``wakd/distill.py`` changes the
``distill`` fingerprint only; editing ``wakd/evaluate.py`` changes ``evaluate`` only; editing a
module everything uses (``wakd/utils.py``) changes them all. ``wakd/cli.py`` is deliberately not
followed: it imports every stage lazily, and argument parsing changes reach the rules through their
shell commands anyway.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from wakd.utils import WakdError

PACKAGE_DIR = Path(__file__).resolve().parent

#: stage name -> the modules implementing it (what the stage's ``wakd`` subcommand calls).
STAGES: dict[str, tuple[str, ...]] = {
    "synth": ("wakd.synth.generate", "wakd.synth.preview"),
    "inspect": ("wakd.data",),
    "baseline": ("wakd.synth.baseline",),
    "cluster": ("wakd.cluster",),
    "train": ("wakd.train",),
    "distill": ("wakd.distill",),
    "pca": ("wakd.pca",),
    "extract": ("wakd.extract", "wakd.models.build"),
    "evaluate": ("wakd.evaluate", "wakd.report"),
    "summarize": ("wakd.report",),
}


def _module_file(name: str, package_dir: Path) -> Path | None:
    parts = name.split(".")
    if parts[0] != "wakd":
        return None
    base = package_dir.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path, package_dir: Path) -> set[str]:
    """Names of the ``wakd`` modules (and packages) that ``path`` imports anywhere in its body."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # "from wakd.models import attention" imports a submodule
            names.update(f"{node.module}.{a.name}" for a in node.names
                         if _module_file(f"{node.module}.{a.name}", package_dir))
    closure = set()
    for name in names:
        parts = name.split(".")
        closure.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # parent packages run too
    return {n for n in closure if n.startswith("wakd") and n != "wakd.cli" and _module_file(n, package_dir)}


def stage_modules(stage: str, package_dir: str | Path = PACKAGE_DIR) -> list[Path]:
    """Source files a stage depends on, sorted."""
    if stage not in STAGES:
        raise WakdError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    package_dir = Path(package_dir)
    todo, seen = list(STAGES[stage]), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name, package_dir)
        if path is None:
            raise WakdError(f"stage {stage!r}: module {name} not found under {package_dir}")
        todo.extend(_imported(path, package_dir) - seen)
    return sorted({_module_file(n, package_dir) for n in seen})


def fingerprint(stage: str, package_dir: str | Path = PACKAGE_DIR) -> str:
    """16 hex digits of SHA-256 over the relative paths and bytes of the stage's source files."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for path in stage_modules(stage, package_dir):
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
