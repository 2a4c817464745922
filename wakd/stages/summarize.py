"""``wakd summarize``: one table and one Recall@N figure from the recall CSVs of a dataset."""

from __future__ import annotations

from dataclasses import dataclass

from wakd.options import Options, option


@dataclass(kw_only=True)
class SummarizeConfig(Options):
    """combine recall CSVs into one table and a Recall@N figure

    Concatenate recall CSVs (from 'wakd evaluate' / 'wakd baseline') into one table, and plot Recall@N
    against N, one panel per dataset and query condition, one line per model.
    """

    csv: tuple[str, ...] = option(help="recall CSVs", path="in")
    out: str = option(help="combined CSV to write (and OUT.info.json, its provenance)", path="out")
    figure: str | None = option(None, "PNG of the Recall@N curves", path="out")
    rule: str = option("25m", "rule plotted")
    condition: str = option("each", "condition plotted: each (one panel per condition), all, day, sunset, night",
                            choices=("each", "all", "day", "sunset", "night"))
    markdown: bool = option(False, "print the table as Markdown: one row per model, R@1/5/10 (%) per condition "
                                   "of --rule")


def run(cfg: SummarizeConfig):
    """Write the combined table (and figure), print the table."""
    from wakd.provenance import beside, write_record
    from wakd.report import markdown_recalls, read_tables, recall_curves
    from wakd.utils import atomic_outputs

    table = read_tables(cfg.csv)
    text = markdown_recalls(table, cfg.rule) if cfg.markdown else table.to_string(index=False)  # checks --rule
    with atomic_outputs(cfg.out, beside(cfg.out), cfg.figure) as (csv, info, figure):
        if figure:
            recall_curves(table, figure, rule=cfg.rule, condition=cfg.condition)
        write_record(cfg, info)
        table.to_csv(csv, index=False, float_format="%.4f")
    print(text)
    return table
