"""Live progress of training steps: a tqdm bar on a terminal, a few log lines elsewhere.

On a terminal (stderr is a TTY) each epoch's training steps show as a bar with the running mean
loss and tqdm's ETA. Where stderr is a file (SLURM logs, Snakemake's ``log:``), carriage returns
would make the log unreadable, so instead one INFO line is logged every tenth of the epoch's steps
(and at its end), with the running loss, the elapsed time and the epoch's ETA. Nothing of this goes
into ``history.csv`` / ``steps.csv``.
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("wakd.stages.train")


class StepProgress:
    """Progress over ``total`` training steps (``update`` once per step with its loss)."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.n, self.loss = max(total, 1), desc, 0, 0.0
        self.t0 = time.perf_counter()
        self.every = max(1, self.total // 10)
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=self.total, desc=desc, unit="step", mininterval=1.0, leave=False) \
            if enabled and tty else None
        self.lines = enabled and not tty

    def update(self, loss: float) -> None:
        self.n += 1
        self.loss += (loss - self.loss) / self.n  # running mean
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{self.loss:.4f}", refresh=False)
            self.bar.update(1)
        elif self.lines and (self.n % self.every == 0 or self.n == self.total):
            spent = time.perf_counter() - self.t0
            log.info("%s: step %d/%d, loss %.4f, %.0f s, ETA %.0f s", self.desc, self.n, self.total, self.loss,
                     spent, spent / self.n * (self.total - self.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
