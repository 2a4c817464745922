"""Figures: Recall@N curves comparing models, and qualitative grids of queries with predictions."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from wakd.data.base import PlaceDataset
from wakd.data.images import load_image
from wakd.recall import top1_correct
from wakd.utils import WakdError, atomic_path, read_csv_text, require_file


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported when a plot is drawn (not for image grids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

TABLE_COLUMNS = ("model", "dataset", "split", "rule", "condition", "queries")


def read_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate recall CSVs, checking their columns."""
    frames = []
    for p in paths:
        require_file(p, "a recall CSV (wakd evaluate)")
        try:
            df = pd.read_csv(io.StringIO(read_csv_text(p)))
        except (OSError, ValueError) as exc:
            raise WakdError(f"{p}: not a readable CSV table ({str(exc).splitlines()[0]})") from None
        if df.empty:
            raise WakdError(f"{p}: the table has no rows; expected the recall rows of wakd evaluate")
        missing = [c for c in TABLE_COLUMNS if c not in df.columns]
        if missing or not any(c.startswith("R@") for c in df.columns):
            raise WakdError(f"{p}: not a recall table (missing columns {', '.join(missing) or 'R@N'})")
        for c in [c for c in df.columns if c.startswith("R@")]:
            values = pd.to_numeric(df[c], errors="coerce")
            if values.isna().any() or not values.between(0, 1).all():
                raise WakdError(f"{p}: column {c} holds {df[c][values.isna() | ~values.between(0, 1)].iloc[0]!r}; "
                                "expected recalls as fractions in [0, 1]")
        frames.append(df.assign(_file=str(p)))
    table = pd.concat(frames, ignore_index=True)
    _check_repeated_keys(table)
    return table.drop(columns="_file")


def _check_repeated_keys(table: pd.DataFrame) -> None:
    """Refuse two rows of one (model, dataset, split, rule, condition) with different recalls: the
    tables contradict each other (identical repeats are the same result given twice, and kept)."""
    keys = [c for c in TABLE_COLUMNS if c in table.columns and c not in ("queries",)]
    recalls = [c for c in table.columns if c.startswith("R@")]
    for key, part in table.groupby(keys, sort=False):
        if len(part) > 1 and (part[recalls].nunique() > 1).any():
            files = " and ".join(dict.fromkeys(part["_file"]))
            raise WakdError(f"{files}: {', '.join(map(str, key))} appears twice with different recalls; expected "
                            "one result per model, dataset, split, rule and condition")


def _save(fig, out: str | os.PathLike) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


CONDITION_ORDER = ("all", "day", "sunset", "night")


def recall_curves(table: pd.DataFrame, out: str | os.PathLike, rule: str = "25m",
                  condition: str = "each") -> list[str]:
    """Recall@N against N, one line per model: one row of panels per dataset and, with
    ``condition="each"`` (default), one panel per query condition (all, day, sunset, night where
    known), so a difference hidden in ``all`` shows; a condition name plots only that one.

    Returns:
        The panels' titles, row by row.
    """
    sel = table[table["rule"] == rule]
    if condition != "each":
        sel = sel[sel["condition"] == condition]
    if sel.empty:
        raise WakdError(f"no rows with rule={rule!r} and condition={condition!r} to plot")
    ncols = sorted((c for c in sel.columns if c.startswith("R@")), key=lambda c: int(c[2:]))
    ns = [int(c[2:]) for c in ncols]
    datasets = sorted(sel["dataset"].unique())
    present = set(sel["condition"])
    conditions = [c for c in CONDITION_ORDER if c in present] + sorted(present - set(CONDITION_ORDER))
    # one colour per model in every panel (a model missing from a panel must not shift the others')
    colours = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(sel["model"]))}
    fig, axes = _pyplot().subplots(len(datasets), len(conditions), figsize=(4.2 * len(conditions), 3.6 * len(datasets)),
                             squeeze=False)
    for row_axes, dsname in zip(axes, datasets):
        for ax, cond in zip(row_axes, conditions):
            part = sel[(sel["dataset"] == dsname) & (sel["condition"] == cond)]
            for _, row in part.iterrows():
                ax.plot(ns, [100 * row[c] for c in ncols], marker="o", label=row["model"], color=colours[row["model"]])
            queries = int(part["queries"].iloc[0]) if len(part) and "queries" in part else 0
            ax.set_xscale("log")
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.set_xlabel("N (number of top database candidates)")
            ax.set_ylabel("Recall@N (%)")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.set_title(f"{dsname}: {cond} ({queries} queries, {rule})", fontsize=10)
            if len(part):
                ax.legend(fontsize=7)
    fig.tight_layout()
    titles = [ax.get_title() for ax in axes.flat]
    _save(fig, out)
    return titles


GREEN, RED = "#1a9850", "#d73027"


def _thumbnail(path: str | os.PathLike, height: int) -> Image.Image:
    img = load_image(path)
    return img.resize((max(1, round(img.width * height / img.height)), height), Image.BILINEAR)


def image_grid(rows: Sequence[Sequence[tuple[str | os.PathLike, str, str | None] | None]], out: str | os.PathLike,
               title: str = "", height: int = 120) -> None:
    """A PNG of image rows: each cell ``(image file, caption, frame colour or None)`` or None (empty),
    scaled to ``height`` pixels, its caption above it. Drawn with PIL (a grid of 50 images in a few
    tens of milliseconds, where matplotlib axes take seconds)."""
    if not any(c for row in rows for c in row):
        raise WakdError(f"{out}: no image to draw")
    font = ImageFont.load_default()
    pad, line = 6, 14
    cells = [[None if c is None else (_thumbnail(c[0], height), c[1], c[2]) for c in row] for row in rows]
    width = max((round(c[0].width * height / c[0].height) for row in cells for c in row if c), default=height)
    ncols = max(len(row) for row in cells)
    top = line + pad if title else 0
    canvas = Image.new("RGB", (pad + ncols * (width + pad), top + pad + len(cells) * (height + line + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad // 2), title, fill="black", font=font)
    for r, row in enumerate(cells):
        y = top + pad + r * (height + line + pad)
        for c, cell in enumerate(row):
            if cell is None:
                continue
            img, caption, frame = cell
            x = pad + c * (width + pad)
            canvas.paste(img, (x, y + line))
            if frame:
                draw.rectangle([x, y + line, x + img.width - 1, y + line + height - 1], outline=frame, width=4)
            while caption and draw.textlength(caption, font=font) > width:  # within its cell
                caption = caption[:-1]
            draw.text((x, y), caption, fill="black", font=font)
    with atomic_path(out) as tmp:  # 256 colours: a third of the bytes, no visible change (the report stays small)
        canvas.quantize(256, method=Image.Quantize.FASTOCTREE).save(tmp, format="PNG", optimize=True)


def prediction_grid(ds: PlaceDataset, pred: np.ndarray, out: str | os.PathLike, num_queries: int = 8,
                    num_preds: int = 5, only_wrong: bool = False, seed: int = 0, title: str = "") -> int:
    """Rows of (query, top predictions) of the split ``ds`` (:func:`prediction_rows`) drawn as a PNG.

    Returns:
        The number of query rows drawn.

    Raises:
        WakdError: no query to show (e.g. ``only_wrong`` and every query is right at R@1).
    """
    grid = prediction_rows(ds, pred, num_queries, num_preds, only_wrong, seed)
    image_grid(grid, out, title)
    return len(grid)


def prediction_rows(ds: PlaceDataset, pred: np.ndarray, num_queries: int = 8, num_preds: int = 5,
                    only_wrong: bool = False, seed: int = 0) -> list[list[tuple[str, str, str | None] | None]]:
    """The cells of :func:`prediction_grid`: per drawn query (chosen with ``seed``), the query captioned with its
    condition (where recorded) and its top-1's distance, then each prediction captioned with its distance to
    the query in metres and framed green (a positive) or red."""
    positives = ds.positives()
    wrong = ~top1_correct(pred, positives)
    cand = np.flatnonzero(wrong) if only_wrong else np.arange(len(pred))
    if not len(cand):
        raise WakdError("no query to show" + (" (every query is correct at R@1)" if only_wrong else ""))
    grid = []
    for qi in np.sort(np.random.default_rng(seed).choice(cand, min(num_queries, len(cand)), replace=False)):
        dist = np.linalg.norm(ds.db_utm[np.maximum(pred[qi], 0)] - ds.q_utm[qi], axis=1)
        cond = f" {ds.q_conditions[qi]}" if ds.q_conditions is not None else ""
        cells = [(ds.q_paths[qi], f"q{qi}{cond}: top-1 {dist[0]:.0f} m", None)]
        for c in range(num_preds):
            j = pred[qi, c] if c < pred.shape[1] else -1
            cells.append(None if j < 0 else (ds.db_paths[j], f"#{c + 1} db {j}, {dist[c]:.0f} m",
                                              GREEN if j in positives[qi] else RED))
        grid.append(cells)
    return grid


def markdown_recalls(table: pd.DataFrame, rule: str = "25m", ns: Sequence[int] = (1, 5, 10)) -> str:
    """The recall table as Markdown: one row per (dataset, model), for each query condition its
    R@1 / R@5 / R@10 in % (the form pasted into papers and issues); ``rule`` picks the positives rule."""
    part = table[table["rule"] == rule]
    if part.empty:
        raise WakdError(f"--rule {rule}: no rows with this rule (found: {', '.join(map(str, table['rule'].unique()))})")
    conditions = list(dict.fromkeys(part["condition"]))
    head = ["dataset", "model", *(f"{c} R@{'/'.join(map(str, ns))}" for c in conditions)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dataset, model), rows in part.groupby(["dataset", "model"], sort=False):
        by = rows.set_index("condition")
        cells = [" / ".join(f"{100 * by.loc[c, f'R@{n}']:.1f}" if c in by.index and f"R@{n}" in by.columns
                            else "–" for n in ns) for c in conditions]
        lines.append("| " + " | ".join([str(dataset), f"`{model}`", *cells]) + " |")
    return "\n".join(lines)
