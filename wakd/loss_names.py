"""The ranking losses' names, default margins and option checks, without torch (the options of
``wakd train`` / ``wakd distill`` are parsed at planning time; :mod:`wakd.losses` has the losses, and
a test checks that the names agree)."""

from __future__ import annotations

import math

from wakd.utils import WakdError

LOSS_NAMES = ("triplet", "triplet_sq", "sare_joint", "sare_ind")
DEFAULT_MARGINS = {"triplet": math.sqrt(0.1), "triplet_sq": 0.1}


def check_loss_options(name: str, margin: float | None, temperature: float | None) -> None:
    """Refuse option values a loss cannot use (named), before any work is done."""
    if name not in LOSS_NAMES:
        raise WakdError(f"Unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    if margin is not None and not (margin > 0 and math.isfinite(margin)):
        raise WakdError(f"--margin {margin}: expected a positive number")
    if margin is not None and not name.startswith("triplet"):
        raise WakdError(f"--margin {margin}: the {name} loss has no margin (triplet losses only)")
    if temperature is not None and not (temperature >= 0 and math.isfinite(temperature)):
        raise WakdError(f"--temperature {temperature}: expected a positive number (0: Euclidean SARE)")
