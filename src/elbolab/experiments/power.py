"""The power of the design: for each verdict, the smallest effect it could detect, and for an inconclusive one
the number of seeds at which an effect of the size measured would be detected (`records.Power`)."""

from __future__ import annotations

import math
from dataclasses import replace

from elbolab.experiments.attribution import Attribution
from elbolab.experiments.verdicts import Z95
from elbolab.records import Contrast, Effect, Power

#: z of 80% power (one-sided): a true effect of (Z95 + Z80) standard errors is detected four times in five
Z80 = 0.8416212335729143
#: the most seeds a recommendation names; an effect that would need more is out of this design's reach
MAX_SEEDS = 64


def power_of(effect: Effect, seeds: int, verdict: str) -> Power | None:
    """`Power` of an effect measured over `seeds` seeds (None where its interval is not finite)."""
    if not (math.isfinite(effect.low) and math.isfinite(effect.high)):
        return None
    se = (effect.high - effect.low) / (2 * Z95)
    detectable = (Z95 + Z80) * se
    size = abs(effect.value - effect.null)
    if verdict != "inconclusive" or size == 0 or se == 0:
        return Power(seeds, detectable)
    needed = math.ceil(seeds * (detectable / size) ** 2)
    return Power(seeds, detectable, needed if needed <= MAX_SEEDS else None)


def table_power(table: Attribution, seeds: int) -> Attribution:
    """Every verdict cell of the attribution table with its power."""
    rows = tuple(
        replace(
            r,
            cells=tuple(
                replace(c, power=power_of(c.effect, seeds, c.verdict))
                if c.effect is not None and c.verdict is not None
                else c
                for c in r.cells
            ),
        )
        for r in table.rows
    )
    return Attribution(table.outcomes, rows)


def contrast_power(contrasts: tuple[Contrast, ...], seeds: int) -> tuple[Contrast, ...]:
    """Every contrast with the power of the effect its verdict rests on first."""
    return tuple(c if c.effect is None else replace(c, power=power_of(c.effect, seeds, c.verdict)) for c in contrasts)
