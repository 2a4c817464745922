"""The ``wakd`` command: one entry point with argparse subcommands, called by every Snakemake rule.

The subcommands are generated from :data:`wakd.stages.COMMANDS`: each one's options from its
stage's options dataclass (:mod:`wakd.options`), its help from the dataclass's docstring. A command
line becomes that dataclass (checked when built) and goes to the stage's ``run``; this module holds
no stage logic. Only the chosen command's module is imported, so ``wakd evaluate`` does not load
torch.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import logging
import os
import signal
import sys
import traceback

from wakd import __version__
from wakd.options import add_options, check_inputs_exist, from_args
from wakd.stages import COMMANDS, Command
from wakd.utils import WakdError, setup_logging

log = logging.getLogger("wakd")


class _Parser(argparse.ArgumentParser):
    """argparse with wakd's one-line error: ``wakd: error: <what>`` and where the help is."""

    def error(self, message: str):
        self.exit(2, f"wakd: error: {message} (see: {self.prog} --help)\n")


def _chosen(argv: list[str]) -> list[str]:
    """The command words of ``argv`` (options before them skipped): the commands to build in full."""
    words, skip = [], False
    for a in argv:
        if skip or a.startswith("-"):
            skip = a == "--log-file"  # the global option with a value
            continue
        words.append(a)
    return [c.name for c in COMMANDS if c.name.split() == words[:len(c.name.split())]]


def _add_command(sub: argparse._SubParsersAction, name: str, command: Command | None, groups: dict) -> None:
    """One subcommand parser; in full (options, help) for ``command``, a bare entry otherwise."""
    *parents, leaf = name.split()
    for parent in parents:  # "data inspect": the "data" group holds "inspect"
        if parent not in groups:
            group = sub.add_parser(parent, help=f"{parent} tools", description=f"{parent.capitalize()} tools.")
            groups[parent] = group.add_subparsers(dest=f"{parent}_command", required=True, metavar="ACTION")
        sub = groups[parent]
    if command is None:
        sub.add_parser(leaf)
        return
    cls, run = command.load()
    summary, _, description = (cls.__doc__ or "").strip().partition("\n")
    p = sub.add_parser(leaf, help=summary.strip(), description=" ".join(description.split()) or summary)
    add_options(p, cls)
    p.set_defaults(func=run, config=cls)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``wakd`` parser; with ``argv``, only the command it names is built in full."""
    parser = _Parser(
        prog="wakd",
        description="Visual geo-localization: NetVLAD teacher, WAKD-distilled student, Recall@N.",
    )
    parser.add_argument("--version", action="version", version=f"wakd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-file", help="also write the log to this file")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("--progress", choices=("auto", "lines", "bar", "off"), help="long loops: auto (default, or "
                        "$WAKD_PROGRESS): a bar on a terminal, else a line per tenth of an epoch's steps; lines: such "
                        "lines for every loop; bar: bars into a file too; off: none")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv) if argv is not None else None
    groups: dict = {}
    for command in COMMANDS:
        full = chosen is None or not chosen or command.name in chosen
        _add_command(sub, command.name, command if full else None, groups)
    return parser


def parse_options(command: str, argv: list[str]):
    """The options dataclass that ``wakd COMMAND ARGV...`` would run with (checked), without running it.

    Raises:
        WakdError: argparse's or the dataclass's message for a bad option.
    """
    words = command.split()
    parser = build_parser(words)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args([*words, *argv])
    except SystemExit:
        raise WakdError(err.getvalue().strip().splitlines()[-1]) from None
    return from_args(args.config, args)


# OS errors that are the input's or the machine's, not wakd's: reported in one line, exit status 2.
USER_OS_ERRORS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied", errno.EROFS: "read-only file system",
                  errno.ENOTDIR: "not a folder", errno.EISDIR: "a folder, not a file",
                  errno.EEXIST: "exists and is not a folder", errno.ENOENT: "no such file or folder",
                  errno.ENAMETOOLONG: "file name too long"}


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line; for an error raised in a data-loader worker, the
    worker's own message rather than the traceback torch quotes."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


_SIGNALLED: list[int] = []  # the termination signals this process received


def _terminate(signum: int, frame) -> None:
    _SIGNALLED.append(signum)
    raise SystemExit(128 + signum)  # unwinds: temporary files are removed on the way out


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status 0: done; 2: bad input, in one line ``wakd: error: ...``
    (``--debug`` adds the traceback); 1: an internal error, with its traceback; 128+N: signal N."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code
    _SIGNALLED.clear()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = _run(args, argv)
    except Exception:
        # SystemExit(128 + N) is raised wherever the signal lands; library clean-up it unwinds through
        # (a data loader, an HDF5 file) may raise again. The run was terminated all the same.
        if not _SIGNALLED:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"wakd: terminated by signal {_SIGNALLED[0]}; nothing was left half-written", file=sys.stderr)
        return 128 + _SIGNALLED[0]
    return 128 + _SIGNALLED[0] if _SIGNALLED and rc != 0 else rc  # (a WakdError raised while unwinding)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    """:func:`main` after parsing: run the command, turn user errors into exit status 2."""
    try:
        os.environ.update({"WAKD_PROGRESS": args.progress} if args.progress else {})  # wakd.progress, DDP ranks
        setup_logging(args.verbose, args.log_file)
        log.debug("wakd %s: %s", __version__, " ".join(argv))
        cfg = from_args(args.config, args)
        check_inputs_exist(cfg)
        args.func(cfg)
    except WakdError as exc:
        error, message = exc, _one_line(exc)
    except OSError as exc:
        if exc.errno not in USER_OS_ERRORS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        error, message = exc, f"{USER_OS_ERRORS[exc.errno]}{where}: {exc.strerror or exc}"
    except KeyboardInterrupt:
        print("wakd: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
    else:
        return 0
    if args.debug:
        traceback.print_exception(error)
    print(f"wakd: error: {message}", file=sys.stderr)
    return 2

