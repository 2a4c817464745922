"""A contact sheet of a synthetic city: one place under every condition, and a far-away place."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wakd.data.base import CONDITIONS, yaw_difference  # noqa: E402
from wakd.data.images import load_image  # noqa: E402
from wakd.data.synthetic import load_synthetic  # noqa: E402
from wakd.utils import atomic_path  # noqa: E402


def write_preview(root: str | os.PathLike, out: str | os.PathLike, split: str = "test", seed: int = 0,
                  rows: int = 2) -> None:
    """Write a PNG: per row, a database image, the nearest query of each condition that looks the
    same way, and a database image more than 150 m away."""
    ds = load_synthetic(root, split)
    rng = np.random.default_rng(seed)
    conds = np.asarray(ds.q_conditions)
    fig, axes = plt.subplots(rows, 2 + len(CONDITIONS), figsize=(3.2 * (2 + len(CONDITIONS)), 2.7 * rows),
                             squeeze=False)
    for r in range(rows):
        qi = int(rng.choice(np.flatnonzero(conds == "night")))
        q_xy, q_yaw = ds.q_utm[qi], ds.q_yaw[qi]
        dist = np.linalg.norm(ds.db_utm - q_xy, axis=1)
        score = dist + 1000.0 * (yaw_difference(ds.db_yaw, q_yaw) > 45)
        di = int(score.argmin())
        panels = [(ds.db_paths[di], f"database (day)\n{dist[di]:.0f} m, yaw {ds.db_yaw[di]:.0f}")]
        for cond in CONDITIONS:
            cand = np.flatnonzero(conds == cond)
            d = np.linalg.norm(ds.q_utm[cand] - ds.db_utm[di], axis=1) + \
                1000.0 * (yaw_difference(ds.q_yaw[cand], ds.db_yaw[di]) > 45)
            j = int(cand[d.argmin()])
            panels.append((ds.q_paths[j], f"query {cond}\n{np.linalg.norm(ds.q_utm[j] - ds.db_utm[di]):.0f} m "
                                          f"from database image"))
        far = np.flatnonzero(dist > 150)
        fi = int(rng.choice(far)) if len(far) else int(dist.argmax())
        panels.append((ds.db_paths[fi], f"far away\n{dist[fi]:.0f} m"))
        for ax, (path, title) in zip(axes[r], panels):
            ax.imshow(np.asarray(load_image(path)))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"synthetic city, {split} split: {ds.num_db} database images, {ds.num_queries} queries")
    fig.tight_layout()
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
