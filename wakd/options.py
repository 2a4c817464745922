"""Options of the ``wakd`` commands, each declared once.

A stage declares its options as a keyword-only dataclass: one field per option, whose metadata
(:func:`option`) holds the help text, the choices, a parser and a lower bound. From that one
declaration come

* the command line: :func:`add_options` adds ``--field-name`` for each field (required when the
  field has no default, ``nargs="+"`` for tuples, a flag for booleans), and :func:`from_args`
  builds the dataclass back from the parsed arguments;
* the checks: every :class:`Options` checks its fields' bounds and choices when it is created,
  so a bad value is refused before any work, with the option's name in the message;
* the pipeline: ``workflow/rules/common.smk`` turns a config block into ``--field-name value``
  arguments and parses every block with the command's own parser before any job runs, so a bad
  key or value is refused naming the block; the config schema declares no option's type or bound
  (one declaration: these fields).

The option groups shared by several stages (data, network, run) are here; each stage module
subclasses them with its own fields (:mod:`wakd.stages`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from wakd.data import DEFAULT_DATA_ROOT, LOADERS
from wakd.models import BACKBONE_NAMES as BACKBONES
from wakd.utils import WakdError

DATASETS = tuple(LOADERS)
PRECISIONS = ("auto", "bf16", "fp32")


def parse_size(text: str, largest: int = 4096) -> tuple[int, int]:
    """``"120x160"`` -> ``(120, 160)`` (height, width): multiples of 8 (the backbones' strides)
    between 32 and ``largest``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise WakdError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. 120x160") from None
    if not (32 <= h <= largest and 32 <= w <= largest) or h % 8 or w % 8:
        raise WakdError(f"--size {text!r}: height and width must be multiples of 8 between 32 and {largest}")
    return h, w


def parse_device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked when the command line is read (whether a GPU is there
    is checked where the device is used)."""
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise WakdError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")


def option(default: Any = MISSING, help: str = "", *, choices: tuple | None = None,
           parse: Callable[[str], Any] | None = None, low: float | None = None, metavar: str | None = None,
           cli: bool = True, record: bool = True, positional: bool = False, path: str | None = None) -> Any:
    """A dataclass field declaring one command-line option.

    Args:
        default: the default; none: a required option.
        help: the ``--help`` text (the default is appended when it is not already named).
        choices: the values accepted.
        parse: turns the command-line text into the value (default: the field's type).
        low: the smallest value accepted (numbers; each element of a tuple).
        metavar: the placeholder shown in ``--help``.
        cli: False for fields set by the library, not on the command line.
        record: False for fields left out of a run's recorded configuration (e.g. ``--resume``).
        positional: a positional argument instead of ``--name``.
        path: ``in`` (a file the command reads), ``out`` (a file it writes) or ``dir`` (a folder it
            writes into): :func:`check_paths` refuses an output that is an input or another output.
    """
    meta = {"help": help, "choices": choices, "parse": parse, "low": low, "metavar": metavar, "cli": cli,
            "record": record, "positional": positional, "path": path}
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether it is a tuple/list of them)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return typing.get_args(hint)[0], True
    return hint, False


def _choices(meta: dict) -> tuple | None:
    return tuple(meta["choices"]) if meta["choices"] is not None else None


@dataclass(kw_only=True)
class Options:
    """Base of every stage's options: checks bounds and choices when created."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or not meta:
                continue
            values = value if isinstance(value, tuple | list) else (value,)
            choices = _choices(meta)
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise WakdError(f"{_flag(f.name)} {v}: expected a finite number")
                if choices is not None and v not in choices:
                    raise WakdError(f"{_flag(f.name)} {v!r}: expected one of {', '.join(map(str, choices))}")
                if meta["low"] is not None and not isinstance(v, bool) and v < meta["low"]:
                    raise WakdError(f"{_flag(f.name)} {v}: expected a value >= {meta['low']:g}")

        check_paths(self)

    def record(self) -> dict:
        """The options as plain values, for provenance records and checkpoints."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self) if f.metadata.get("record", True)}


# what a folder output (``path="dir"``) holds that wakd writes: an input there would be overwritten
DIR_OUTPUTS = ("checkpoint.pth.tar", "model_best.pth.tar", "history.csv", "steps.csv")


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (resolved: symlinks; for existing files also hard links)."""
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    except OSError:
        return False


def check_paths(opts: Options) -> None:
    """Refuse, before any work, an output file that is one of the inputs, another output, or a folder,
    and an input inside a folder output where wakd writes that very file (e.g. ``--init`` in
    ``--out-dir``).

    Raises:
        WakdError: naming both options and the path.
    """
    named = {"in": [], "out": [], "dir": []}
    for f in fields(opts):
        kind, value = f.metadata.get("path") if f.metadata else None, getattr(opts, f.name)
        if kind is None or value is None or value == "":
            continue
        for v in value if isinstance(value, tuple | list) else (value,):
            if v not in (None, ""):
                named[kind].append((_flag(f.name), str(v)))
    for i, (flag, out) in enumerate(named["out"]):
        if Path(out).is_dir():
            raise WakdError(f"{flag} {out}: is a folder; expected the path of a file to write")
        for other, src in named["in"]:
            if same_file(out, src):
                raise WakdError(f"{flag} {out}: is also the input {other}; writing it would destroy that input "
                                "(write elsewhere)")
        for other, out2 in named["out"][i + 1:]:
            if same_file(out, out2):
                raise WakdError(f"{other} {out2}: is also {flag}; each output needs its own path")
    for flag, folder in named["dir"]:
        for other, src in named["in"]:
            if any(same_file(str(Path(folder) / name), src) for name in DIR_OUTPUTS):
                raise WakdError(f"{other} {src}: lies in {flag} {folder}, where this run writes "
                                f"{Path(src).name}; copy it elsewhere or choose another {flag}")


def check_inputs_exist(opts: Options) -> None:
    """Refuse, before any work, an input file (``path="in"``) that does not exist (the command line; the
    pipeline's planning parse does not call it, since its inputs are made by earlier jobs)."""
    for f in fields(opts):
        value = getattr(opts, f.name)
        if not f.metadata or f.metadata.get("path") != "in" or value in (None, ""):
            continue
        for v in value if isinstance(value, tuple | list) else (value,):
            if not Path(v).exists():
                raise WakdError(f"{_flag(f.name)} {v}: no such file")


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per command-line field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        meta = f.metadata
        if not meta or not meta["cli"]:
            continue
        base, many = _base_type(hints[f.name])
        many = many and meta["parse"] is None
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        required = default is MISSING
        text = meta["help"]
        if not required and default not in (None, False, "", ()) and "default" not in text:
            shown = " ".join(map(str, default)) if isinstance(default, tuple | list) else default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        kw: dict[str, Any] = {"help": text} if meta["positional"] else {"help": text, "dest": f.name}
        if base is bool:
            kw["action"] = "store_true"
        else:
            kw["type"] = _argparse_type(meta["parse"]) if meta["parse"] else base
            if many:
                kw["nargs"] = "+"
            if meta["choices"] is not None:
                kw["choices"] = _choices(meta)
            if meta["metavar"]:
                kw["metavar"] = meta["metavar"]
        if meta["positional"]:
            parser.add_argument(f.name, **kw)
            continue
        if required:
            kw["required"] = True
        else:
            kw["default"] = default
        parser.add_argument(_flag(f.name), **kw)


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` with its WakdError turned into argparse's usage error."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except WakdError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass ``cls`` from parsed arguments (tuple fields from lists)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if not f.metadata or not f.metadata["cli"]:
            continue
        v = getattr(args, f.name)
        if isinstance(v, list) and _base_type(hints[f.name])[1]:
            v = tuple(v)
        values[f.name] = v
    return cls(**values)


def option_fields(cls: type) -> dict[str, dataclasses.Field]:
    """Command-line fields of ``cls`` by name."""
    return {f.name: f for f in fields(cls) if f.metadata and f.metadata["cli"]}


# ---- option groups shared by the stages -------------------------------------------------------------


@dataclass(kw_only=True)
class DataOptions(Options):
    """Which dataset split a stage reads."""

    dataset: str = option(help="dataset", choices=DATASETS)
    split: str = option("test", "train, val or test (a folder dataset: any images/<split>/ folder)")
    root: str = option(DEFAULT_DATA_ROOT, "data root for pitts*/tokyo* (holding pitts/raw, tokyo/raw); the "
                                          f"dataset folder for folder/synthetic (default: {DEFAULT_DATA_ROOT})")


@dataclass(kw_only=True)
class TrainSplit(DataOptions):
    split: str = option("train", "train, val or test (a folder dataset: any images/<split>/ folder)")


INPUT_NORMS = ("none", "instance")


@dataclass(kw_only=True)
class BackboneOptions(Options):
    """Which backbone, with which options and initial weights."""

    arch: str = option(help="backbone", choices=BACKBONES)
    last_layer: int = option(3, "resnet*: cut after layer3 or layer4", choices=(3, 4))
    width: float = option(1.0, "resnet18: scale every layer's channels (0.375: the demo student, 6x fewer FLOPs; "
                               "default 1)", low=0.01)
    output_stride: int = option(32, "mobilenetv3_*: 16 drops the last stage (a 6x8 map at 96x128; default 32)",
                                choices=(16, 32))
    weights: str | None = option(None, "local pretrained backbone weights (torchvision .pth or OpenIBL .pth.tar); "
                                       "without it the backbone starts from random initialisation", path="in")
    input_norm: str = option("none", "instance: standardise each image's channels (zero mean, unit variance) before "
                                     "the backbone, so a global change of exposure or colour cast does not reach it "
                                     "(ours; part of the network: clustering, training and extraction alike)",
                             choices=INPUT_NORMS)

    @property
    def arch_kwargs(self) -> dict:
        """The backbone factory's options (resnet*: last layer and width; mobilenet*: stride; input norm)."""
        return arch_kwargs(self.arch, self.last_layer, self.output_stride, self.width, self.input_norm)


def arch_kwargs(arch: str, last_layer: int = 3, output_stride: int = 32, width: float = 1.0,
                input_norm: str = "none") -> dict:
    """Options of :func:`wakd.models.backbones.create_model` from the command-line fields."""
    norm = {"input_norm": input_norm} if input_norm != "none" else {}
    if arch.startswith("resnet"):
        return {"last_layer": last_layer, **({"width": width} if width != 1.0 else {}), **norm}
    if arch.startswith("mobilenet") and output_stride != 32:
        return {"output_stride": output_stride, **norm}
    return norm


@dataclass(kw_only=True)
class NetOptions(BackboneOptions):
    """Backbone + NetVLAD."""

    num_clusters: int = option(64, "NetVLAD K", low=1)
    clusters: str | None = option(None, "*_desc_cen.hdf5 from 'wakd cluster' to initialise NetVLAD", path="in")


@dataclass(kw_only=True)
class RunOptions(Options):
    """Where and how images go through a network."""

    device: str = option("auto", "auto, cpu, cuda or cuda:N", parse=parse_device, metavar="DEVICE")
    precision: str = option("auto", "bf16 autocast or fp32 (always channels_last); auto (default): timed on this "
                                    "machine for the network and --size (bf16 if >= 10%% faster; cached in "
                                    "$WAKD_CACHE/precision.json), else by the device's bf16 support",
                            choices=PRECISIONS)
    batch_size: int = option(16, "images per batch", low=1)
    workers: int = option(2, "data-loader worker processes", low=0)
    size: tuple[int, int] | None = option(None, "resize images to HxW, multiples of 8 (default: keep)",
                                          parse=parse_size, metavar="HxW")
    seed: int = option(0, "random seed", low=0)
