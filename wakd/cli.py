"""The ``wakd`` command: one entry point with argparse subcommands, called by every Snakemake rule.

Each subcommand turns its options into explicit, typed arguments of a library function; no
argparse namespace goes deeper than this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from wakd import __version__
from wakd.utils import WakdError, atomic_path, setup_logging

log = logging.getLogger("wakd")


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from wakd.data import load_dataset

    ds = load_dataset(args.dataset, args.split, args.root, check_images=not args.no_check_images)
    text = json.dumps(ds.summary(), indent=2) + "\n"
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from wakd.data import load_dataset
    from wakd.provenance import write_run_info
    from wakd.synth.baseline import baseline_table

    ds = load_dataset(args.dataset, args.split, args.root)
    table = baseline_table(ds, methods=tuple(args.methods), ns=tuple(args.recall_values))
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    write_run_info(f"{args.out}.info.json", {k: v for k, v in vars(args).items() if k != "func"}, None)
    print(table.to_string(index=False))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from wakd.synth.generate import generate, parse_size

    generate(args.out, preset=args.preset, seed=args.seed, size=parse_size(args.size) if args.size else None,
             workers=args.workers, overwrite=args.overwrite)
    return 0


def _cmd_synth_preview(args: argparse.Namespace) -> int:
    from wakd.synth.preview import write_preview

    write_preview(args.root, args.out, split=args.split, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from wakd.data import DEFAULT_DATA_ROOT, list_datasets
    from wakd.synth.presets import PRESETS

    parser = argparse.ArgumentParser(
        prog="wakd",
        description="Visual geo-localization: NetVLAD teacher, WAKD-distilled student, Recall@N.",
    )
    parser.add_argument("--version", action="version", version=f"wakd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-file", help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="dataset tools", description="Dataset tools.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    insp = data_sub.add_parser(
        "inspect", help="check a dataset split and print its counts as JSON",
        description="Load one split (checking the .mat fields and that every listed image exists) and print "
                    "one JSON object: counts, queries with positives, mean positives per query, thresholds.",
    )
    insp.add_argument("--dataset", required=True, choices=list_datasets())
    insp.add_argument("--split", default="test", help="train, val or test (default: test)")
    insp.add_argument("--root", default=DEFAULT_DATA_ROOT,
                      help="data root for pitts*/tokyo* (holding pitts/raw, tokyo/raw); the dataset folder "
                           f"for folder/synthetic (default: {DEFAULT_DATA_ROOT})")
    insp.add_argument("--no-check-images", action="store_true", help="skip the image existence check")
    insp.add_argument("--out", help="write the JSON to this file instead of stdout")
    insp.set_defaults(func=_cmd_data_inspect)

    base = sub.add_parser(
        "baseline", help="Recall@N of simple global descriptors (tiny image, colour histogram)",
        description="The floor that learned models must beat: Recall@N of a 12x16 grey thumbnail and a colour "
                    "histogram, exact nearest-neighbour search, 25 m rule (and the view-aware rule where image "
                    "yaws are known), overall and per query condition. Writes a tidy CSV.",
    )
    base.add_argument("--dataset", required=True, choices=list_datasets())
    base.add_argument("--split", default="test")
    base.add_argument("--root", default=DEFAULT_DATA_ROOT, help="as for 'wakd data inspect'")
    base.add_argument("--methods", nargs="+", default=["thumbnail", "histogram"],
                      choices=["thumbnail", "histogram"])
    base.add_argument("--recall-values", nargs="+", type=int, default=[1, 5, 10, 20])
    base.add_argument("--out", required=True, help="CSV to write")
    base.set_defaults(func=_cmd_baseline)

    synth = sub.add_parser(
        "synth", help="render the embedded synthetic city in the Pittsburgh format",
        description="Render a deterministic procedural city and write raw/synthetic_{train,val,test}.mat "
                    "(Pittsburgh dbStruct), the images, side tables of yaws and query conditions, "
                    "preview.png and synth_info.json under OUT.",
    )
    synth.add_argument("--out", required=True, help="output folder (created; must not hold another city)")
    synth.add_argument("--preset", default="demo", choices=list(PRESETS), help="size of the city (default: demo)")
    synth.add_argument("--seed", type=int, default=0, help="world and capture seed (default: 0)")
    synth.add_argument("--size", help="image size HxW, e.g. 120x160 (default: the preset's)")
    synth.add_argument("--workers", type=int, default=None, help="render processes (default: all CPU cores)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing city in OUT")
    synth.set_defaults(func=_cmd_synth)

    prev = sub.add_parser(
        "synth-preview", help="contact sheet of a synthetic city",
        description="One PNG: a database image, the nearest query under each condition, a far-away image.",
    )
    prev.add_argument("--root", required=True, help="the synthetic city folder (wakd synth --out)")
    prev.add_argument("--out", required=True, help="PNG file to write")
    prev.add_argument("--split", default="test")
    prev.add_argument("--seed", type=int, default=0, help="which places to show")
    prev.set_defaults(func=_cmd_synth_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_file)
    log.debug("wakd %s: %s", __version__, " ".join(sys.argv))
    try:
        return args.func(args)
    except WakdError as exc:
        print(f"wakd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
