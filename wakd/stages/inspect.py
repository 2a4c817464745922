"""``wakd data inspect``: load one dataset split, check it, and summarise it as JSON."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from wakd.options import DataOptions, option


@dataclass(kw_only=True)
class InspectConfig(DataOptions):
    """check a dataset split and print its counts as JSON

    Load one split (checking the .mat fields and that every listed image exists) and print one JSON object:
    counts, queries with positives, mean positives per query, thresholds.
    """

    no_check_images: bool = option(False, "skip the image existence check")
    out: str | None = option(None, "write the JSON (with its provenance) to this file instead of stdout", path="out")


def run(cfg: InspectConfig) -> dict:
    """The split's summary; written to ``cfg.out`` with a ``provenance`` entry, or printed."""
    from wakd.data import load_dataset
    from wakd.provenance import run_info
    from wakd.utils import atomic_path

    summary = load_dataset(cfg.dataset, cfg.split, cfg.root, check_images=not cfg.no_check_images).summary()
    if cfg.out:
        with atomic_path(cfg.out) as tmp:
            tmp.write_text(json.dumps({**summary, "provenance": run_info(cfg.record(), None)}, indent=2,
                                      default=str) + "\n")
    else:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return summary
