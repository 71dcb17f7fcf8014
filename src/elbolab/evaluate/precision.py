"""Bounds on an adaptive Monte-Carlo estimate: a cap on its draws, and a word when the precision asked for was not
reached within it.

The draws K for a standard error se of the test-set mean are K = Var_1/(n·se²) (`evaluate.run.draws_for_precision`);
an untrained model or a loaded machine's noisy probe can ask for thousands, each a network pass per image. K is held
to `MAX_PRECISION_DRAWS`; memory stays bounded whatever K is, since the chains evaluate (image, draw) pairs in chunks
of `max_batch` per network call.
"""

from __future__ import annotations

import math
import warnings

from elbolab.bounds import Bound, nats_to_bpd

#: the most Monte-Carlo draws per image an adaptive estimate may choose (each is one network pass per image)
MAX_PRECISION_DRAWS = 256


class PrecisionWarning(UserWarning):
    """An adaptive estimate stopped at its cap on draws before reaching the standard error asked for."""


def capped_draws(draws: int, floor: int) -> int:
    """The draws an adaptive estimate uses: what the precision asks for, at least `floor`, at most the cap."""
    return int(min(max(draws, floor), MAX_PRECISION_DRAWS))


def mean_stderr_bpd(bound: Bound) -> float | None:
    """Monte-Carlo standard error of the test-set mean in bits/dim, √(Σ se_i²)/n, from the per-image standard
    errors a Monte-Carlo bound reports (None for a bound without them)."""
    if "stderr" not in bound.extras:
        return None
    se = nats_to_bpd(bound.extras["stderr"].double(), bound.dims)
    return math.sqrt(float(se.pow(2).sum())) / se.numel()


def warn_if_imprecise(bound: Bound, requested: float, draws: int | None) -> float | None:
    """The standard error reached; a `PrecisionWarning` (one line) where it is above the `requested` one."""
    reached = mean_stderr_bpd(bound)
    if reached is not None and reached > requested:
        warnings.warn(
            f"the bound's standard error is {reached:.4f} bits/dim, above the {requested:g} asked for: the estimate "
            f"stopped at its cap of {draws or MAX_PRECISION_DRAWS} draws per image (MAX_PRECISION_DRAWS)",
            PrecisionWarning,
            stacklevel=2,
        )
    return reached
