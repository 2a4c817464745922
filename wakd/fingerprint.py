"""Code fingerprints of pipeline stages, so that Snakemake reruns a stage when *its* code changes.

Snakemake reruns a rule when its parameters, inputs or shell command change, but it cannot see
edits inside the installed ``wakd`` library. Each rule therefore passes ``fingerprint(stage,
datasets)`` as a parameter: a hash of the stage's module (:data:`wakd.stages.STAGES`), of every
``wakd`` module it imports, transitively (found statically with :mod:`ast`, lazy imports inside
functions included, plus the ``__init__.py`` of every package on the way), and of the loaders of
the datasets the job reads (:data:`wakd.data.LOADERS`; they are imported by name at run time).

So editing ``wakd/stages/distill.py`` changes the ``distill`` fingerprint only, editing a module
everything uses (``wakd/utils.py``) changes them all, and editing a loader the job does not read
(``wakd/data/tokyo.py`` for the synthetic city) changes nothing. What is hashed is the module's
syntax tree without docstrings, so comments and docstrings do not rerun anything (the tree's
printed form can change between Python versions: a new Python reruns everything once).
``wakd/cli.py`` is not followed: it only parses options, and option changes reach the rules
through their shell commands.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from wakd.data import LOADERS
from wakd.options import DATASETS, Options, option
from wakd.stages import STAGES
from wakd.utils import WakdError

PACKAGE_DIR = Path(__file__).resolve().parent


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
    for module, members in _imports(str(path), path.read_text()):
        names.add(module)
        # "from wakd.models import attention" imports a submodule
        names.update(f"{module}.{m}" for m in members if _module_file(f"{module}.{m}", package_dir))
    closure = set()
    for name in names:
        parts = name.split(".")
        closure.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # parent packages run too
    return {n for n in closure if n.startswith("wakd") and n != "wakd.cli" and _module_file(n, package_dir)}


@cache
def _imports(filename: str, source: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(module, names)`` of every absolute import in the source: ``names`` empty for ``import module``.
    Cached on the text (a Snakefile asks for ~30 fingerprints that share most modules)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found.extend((a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise WakdError(f"{filename}: relative import at line {node.lineno}; wakd modules import absolutely, so "
                            "that code fingerprints can follow them")
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, tuple(a.name for a in node.names)))
    return tuple(found)


def stage_modules(stage: str, package_dir: str | Path = PACKAGE_DIR, datasets: tuple[str, ...] = ()) -> list[Path]:
    """Source files a stage depends on when it reads ``datasets``, sorted."""
    if stage not in STAGES:
        raise WakdError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    unknown = [d for d in datasets if d not in LOADERS]
    if unknown:
        raise WakdError(f"unknown dataset {unknown[0]!r}; expected one of {', '.join(LOADERS)}")
    package_dir = Path(package_dir)
    todo, seen = [*STAGES[stage], *(LOADERS[d][0] for d in datasets)], set()
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


def _code(path: Path) -> bytes:
    """The module's syntax tree without docstrings (comments are not in the tree)."""
    return _code_of(str(path), path.read_text())


@cache
def _code_of(filename: str, source: str) -> bytes:
    # cached on the text, as _imports is
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def fingerprint(stage: str, package_dir: str | Path = PACKAGE_DIR, datasets: tuple[str, ...] = ()) -> str:
    """16 hex digits of SHA-256 over the relative paths and code of the stage's source files."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for path in stage_modules(stage, package_dir, datasets):
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(_code(path) + b"\0")
    return h.hexdigest()[:16]


@dataclass(kw_only=True)
class FingerprintConfig(Options):
    """hash of the library code a pipeline stage depends on

    Print, per stage, 16 hex digits of SHA-256 over the code (without docstrings) of the stage's module,
    every wakd module it imports (transitively) and the loaders of --dataset. The Snakemake rules pass it
    as a parameter, so editing a stage's code reruns that stage and what follows, and nothing else.
    """

    stages: tuple[str, ...] = option(help="pipeline stages", choices=tuple(STAGES), positional=True,
                                     metavar="STAGE")
    dataset: tuple[str, ...] = option((), "datasets the stage reads (their loaders are hashed too)",
                                      choices=DATASETS)
    files: bool = option(False, "also list the source files hashed")
    package_dir: str | None = option(None, "the wakd package folder to hash (default: the installed one)")


def run(cfg: FingerprintConfig) -> None:
    package_dir = cfg.package_dir or PACKAGE_DIR
    for stage in cfg.stages:
        print(f"{stage}\t{fingerprint(stage, package_dir, cfg.dataset)}")
        if cfg.files:
            for path in stage_modules(stage, package_dir, cfg.dataset):
                print(f"  {path}")
