"""``wakd baseline``: the Recall@N floor of simple global descriptors (:mod:`wakd.synth.baseline`)."""

from __future__ import annotations

from dataclasses import dataclass

from wakd.options import DataOptions, option
from wakd.recall import RECALL_VALUES

METHODS = ("thumbnail", "histogram")


@dataclass(kw_only=True)
class BaselineConfig(DataOptions):
    """Recall@N of simple global descriptors (tiny image, colour histogram)

    The floor that learned models must beat: Recall@N of a 12x16 grey thumbnail and a colour histogram,
    exact nearest-neighbour search, 25 m rule (and the view-aware rule where image yaws are known), overall
    and per query condition. Writes a tidy CSV.
    """

    out: str = option(help="CSV to write (and OUT.info.json, its provenance)", path="out")
    methods: tuple[str, ...] = option(METHODS, "descriptors compared", choices=METHODS)
    recall_values: tuple[int, ...] = option(RECALL_VALUES, "the N of Recall@N", low=1)


def run(cfg: BaselineConfig):
    """Write and print the baseline table."""
    from wakd.data import load_dataset
    from wakd.provenance import beside, write_record
    from wakd.recall import check_recall_values
    from wakd.synth.baseline import baseline_table
    from wakd.utils import atomic_outputs

    ds = load_dataset(cfg.dataset, cfg.split, cfg.root)
    check_recall_values(cfg.recall_values, ds.num_db, ds.source or f"{cfg.dataset} {cfg.split}")
    table = baseline_table(ds, methods=cfg.methods, ns=cfg.recall_values)
    with atomic_outputs(cfg.out, beside(cfg.out)) as (csv, info):
        write_record(cfg, info)
        table.to_csv(csv, index=False, float_format="%.4f")
    print(table.to_string(index=False))
    return table
