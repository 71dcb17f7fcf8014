"""Effects along the budget (a verdict stable only if it holds at every budget point) and the design's power
(the smallest detectable effect, the seeds an inconclusive verdict would need)."""

from __future__ import annotations

import math

import pytest

from elbolab.experiments.attribution import OUTCOMES, Attribution, Cell, Row, fold_tables, with_budget_points
from elbolab.experiments.design import Pairing
from elbolab.experiments.power import MAX_SEEDS, Z80, power_of
from elbolab.experiments.verdicts import Z95
from elbolab.records import Effect


def _effect(value: float, half: float, direction: int = -1) -> Effect:
    return Effect("bits/dim b − a", value, value - half, value + half, "paired t", direction=direction)


def _table(*cells: Cell) -> Attribution:
    pairing = Pairing("steps", "steps", "steps", ("a", "b"), ("1", "∞"))
    return Attribution(OUTCOMES, (Row(pairing, cells),))


def _cell(value: float, half: float) -> Cell:
    effect = _effect(value, half)
    return Cell("bound", effect, "more steps tighten the bound", effect.verdict())


def test_a_verdict_that_holds_at_every_budget_point_is_stable():
    final = _table(_cell(-0.2, 0.05))
    points = {0.25: _table(_cell(-0.1, 0.05)), 0.5: _table(_cell(-0.15, 0.05))}
    cell = with_budget_points(final, points).rows[0].cells[0]
    assert cell.verdict == "supported" and cell.stability == "stable"
    assert [(b.fraction, b.verdict) for b in cell.along] == [(0.25, "supported"), (0.5, "supported")]
    assert cell.along[0].effect == points[0.25].rows[0].cells[0].effect


def test_a_verdict_that_is_inconclusive_or_reversed_at_a_point_changes_with_budget():
    final = _table(_cell(-0.2, 0.05))
    for early in (_cell(0.0, 0.05), _cell(0.2, 0.05)):  # inconclusive at ¼; not supported at ¼
        cell = with_budget_points(final, {0.25: _table(early), 0.5: _table(_cell(-0.2, 0.05))}).rows[0].cells[0]
        assert cell.stability == "changes with budget"


def test_a_point_without_a_snapshot_leaves_the_verdict_not_tracked():
    final = _table(_cell(-0.2, 0.05))
    unjudged = Attribution(OUTCOMES, (Row(final.rows[0].pairing),))  # a side had no snapshot at ¼
    cell = with_budget_points(final, {0.25: unjudged, 0.5: _table(_cell(-0.2, 0.05))}).rows[0].cells[0]
    assert cell.stability == "not tracked" and cell.along[0].effect is None and cell.along[0].why_not


def test_seeds_fold_the_budget_points_too():
    one = with_budget_points(_table(_cell(-0.2, 0.05)), {0.5: _table(_cell(-0.01, 0.05))})
    two = with_budget_points(_table(_cell(-0.2, 0.05)), {0.5: _table(_cell(-0.2, 0.05))})
    folded = fold_tables([one, two]).rows[0].cells[0]
    assert folded.along[0].effect is not None
    assert math.isclose(folded.along[0].effect.value, (-0.01 - 0.2) / 2)
    assert folded.stability in ("stable", "changes with budget")
    assert folded.stability == ("stable" if folded.along[0].verdict == folded.verdict else "changes with budget")


def test_the_smallest_detectable_effect_is_z_095_plus_z_08_standard_errors():
    effect = _effect(-0.3, 0.1)  # supported: no seeds to recommend
    power = power_of(effect, 1, "supported")
    assert power is not None and power.seeds_needed is None
    assert math.isclose(power.detectable, (Z95 + Z80) * 0.1 / Z95)


@pytest.mark.parametrize("seeds", [1, 3])
def test_an_inconclusive_verdict_names_the_seeds_its_effect_would_need(seeds):
    effect = _effect(-0.05, 0.1)  # the interval holds 0
    power = power_of(effect, seeds, "inconclusive")
    se = 0.1 / Z95
    expected = math.ceil(seeds * ((Z95 + Z80) * se / 0.05) ** 2)
    assert power is not None and power.seeds_needed == expected
    # at that many seeds the standard error has shrunk as 1/√N: the effect is then ≥ (Z95 + Z80) of them
    assert 0.05 >= (Z95 + Z80) * se * math.sqrt(seeds / expected) - 1e-12
    assert 0.05 < (Z95 + Z80) * se * math.sqrt(seeds / (expected - 1))


def test_an_effect_out_of_reach_names_no_seed_count():
    power = power_of(_effect(-0.001, 0.1), 1, "inconclusive")
    assert power is not None and power.seeds_needed is None and MAX_SEEDS < (Z95 + Z80) ** 2 * (0.1 / Z95 / 0.001) ** 2
