"""Live progress of every long loop (training steps, describing images, rendering the city).

``WAKD_PROGRESS`` (set by ``wakd --progress``) chooses how:

* ``auto`` (default): a tqdm bar where stderr is a terminal; elsewhere (SLURM logs, Snakemake's ``log:``),
  where carriage returns would make the log unreadable, nothing for image loops and one INFO line every
  tenth of an epoch's training steps;
* ``lines``: one INFO line every tenth of every loop (image loops too), never a carriage return;
* ``bar``: tqdm bars even where stderr is a file;
* ``off``: nothing.

A training epoch's line or bar gives the running mean loss, the time spent and the epoch's ETA. Nothing of
this goes into ``history.csv`` / ``steps.csv``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm

log = logging.getLogger("wakd.stages.train")
MODES = ("auto", "lines", "bar", "off")


def progress_mode() -> str:
    """``bar``, ``lines`` or ``off``: what ``WAKD_PROGRESS`` asks, ``auto`` resolved by whether stderr is a terminal
    (``auto`` gives ``lines`` for training steps and ``off`` for image loops off a terminal: see :class:`Progress`)."""
    mode = os.environ.get("WAKD_PROGRESS", "auto")
    if mode not in MODES:
        mode = "auto"
    return ("bar" if sys.stderr.isatty() else "auto-file") if mode == "auto" else mode


class Progress:
    """Progress over ``total`` units (``update(n)``; with ``loss``, a running mean is shown).

    Args:
        total: units in all.
        desc: what is counted (``epoch 3/6 train``, ``mining: database``).
        unit: ``step`` or ``img``.
        enabled: False: nothing at all (ranks other than 0).
        quiet_off_terminal: under ``auto`` off a terminal, no lines either (image loops).
        logger: where the lines go.
    """

    def __init__(self, total: int, desc: str, unit: str = "step", enabled: bool = True,
                 quiet_off_terminal: bool = False, logger: logging.Logger | None = None) -> None:
        self.total, self.desc, self.unit, self.n, self.loss, self.steps = max(total, 1), desc, unit, 0, None, 0
        self.t0, self.log = time.perf_counter(), logger or log
        self.every, self.next = max(1, self.total // 10), max(1, self.total // 10)
        mode = progress_mode() if enabled else "off"
        if mode == "auto-file":
            mode = "off" if quiet_off_terminal else "lines"
        self.bar = tqdm(total=self.total, desc=desc, unit=unit, mininterval=1.0 if unit == "step" else 2.0,
                        leave=unit != "step") if mode == "bar" else None
        self.lines = mode == "lines"

    def update(self, n: int = 1, loss: float | None = None) -> None:
        self.n += n
        if loss is not None:
            self.steps += 1
            self.loss = loss if self.loss is None else self.loss + (loss - self.loss) / self.steps  # running mean
        if self.bar is not None:
            if self.loss is not None:
                self.bar.set_postfix(loss=f"{self.loss:.4f}", refresh=False)
            self.bar.update(n)
        elif self.lines and (self.n >= self.next or self.n >= self.total):
            self.next = (self.n // self.every + 1) * self.every
            spent = time.perf_counter() - self.t0
            loss = f", loss {self.loss:.4f}" if self.loss is not None else ""
            self.log.info("%s: %s %d/%d%s, %.0f s, ETA %.0f s", self.desc, self.unit, self.n, self.total, loss, spent,
                          spent / self.n * max(self.total - self.n, 0))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StepProgress(Progress):
    """Progress over an epoch's ``total`` training steps (``update(loss)`` once per step)."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        super().__init__(total, desc, "step", enabled)

    def update(self, loss: float) -> None:  # type: ignore[override]
        super().update(1, loss)
