"""The attribution table: for each factor's pair (`design.Pairing`), the effect on every outcome of switching that
factor, with its 95% interval, and a verdict in the cells where the essay makes a claim.

Each effect is side b's figure against side a's, measured as the contrasts measure (`verdicts`): paired over
the same test images for the bound, the bootstrap over samples with shared resampling indices for the sample
figures, alternating timings for speed, paired over the same image pairs for interpolation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from elbolab.evaluate.run import Measurement
from elbolab.evaluate.speed import PairedTiming
from elbolab.experiments.design import Design, Pairing
from elbolab.experiments.verdicts import (
    bootstrap_effect,
    decide,
    difference,
    distance_from_one,
    fold_effect,
    paired_effect,
    ratio_effect,
)
from elbolab.records import Effect, Power, Record


@dataclass(frozen=True)
class Outcome(Record):
    """A column of the table: what is measured on both sides and how their effect is formed."""

    name: str
    title: str
    effect: str


OUTCOMES = (
    Outcome("bound", "−ELBO bits/dim", "b − a, paired over the same test images"),
    Outcome("fd", "Fréchet distance", "b − a, bootstrap over samples"),
    Outcome("precision", "precision", "b − a, bootstrap over samples"),
    Outcome("recall", "recall", "b − a, bootstrap over samples"),
    Outcome("sharpness", "|log sharpness × test set|", "b − a, bootstrap over samples (below 0: b nearer the data's)"),
    Outcome("time", "sampling time per image", "b / a, alternating timings at each side's quality NFE"),
    Outcome("interpolation", "largest / mean step of a path", "b − a, paired over the same image pairs"),
)


@dataclass(frozen=True)
class Claim:
    """What the essay claims about one cell: the side of no effect it predicts (+1 above, −1 below) and why."""

    direction: int
    text: str


#: the cells the essay makes a claim about: (contrast, outcome) → its claim
CLAIMS: dict[tuple[str, str], Claim] = {
    ("latent", "sharpness"): Claim(-1, "a latent the size of x leaves the decoder less to average over: sharper"),
    ("encoder", "interpolation"): Claim(1, "a learned encoder's latent interpolates evenly; a fixed one's does not"),
    ("steps", "sharpness"): Claim(-1, "many small Gaussian steps commit to detail: sharper than one pass"),
    ("steps", "time"): Claim(1, "one network pass per step: many steps sample slower"),
    ("steps", "bound"): Claim(-1, "more steps of a fixed chain tighten the bound (VDM)"),
    ("depth", "bound"): Claim(-1, "a hierarchy of latents tightens the VAE's bound (NVAE, VDVAE)"),
    ("encoder-many", "bound"): Claim(1, "a learned encoder's bound is at or below the fixed chain's (DiffEnc)"),
    ("objective", "bound"): Claim(1, "dropping the ELBO's weights (L_simple) costs likelihood"),
    ("objective", "fd"): Claim(-1, "dropping the ELBO's weights (L_simple) buys sample quality"),
    ("ends", "sharpness"): Claim(-1, "the VAE's samples are blurry, diffusion's as sharp as real images"),
    ("ends", "time"): Claim(1, "one decoder pass against one network pass per step: diffusion samples slower"),
    ("ends", "bound"): Claim(-1, "with enough steps diffusion's bound is the tighter (VDM, iDDPM)"),
    ("ends", "interpolation"): Claim(1, "a VAE's latent interpolates evenly; diffusion's inverted noise does not"),
    ("merged-learned", "bound"): Claim(-1, "a diffusion prior over the VAE's latent tightens its bound"),
    ("merged-fixed", "time"): Claim(-1, "diffusion over a small latent samples faster than in pixel space"),
}


@dataclass(frozen=True)
class BudgetEffect(Record):
    """A cell's effect at a fraction of the training budget (from the runs' snapshots) and its verdict there;
    None where it was not measured at that point, and why."""

    fraction: float
    effect: Effect | None
    verdict: str | None = None
    why_not: str = ""


#: a verdict's stability along the budget: the same verdict at every budget point, or not; or not every point
#: was measured
STABILITY = ("stable", "changes with budget", "not tracked")


@dataclass(frozen=True)
class Cell(Record):
    """One outcome of one pair: the effect of the switch with its interval (None: not measured, and why), the
    essay's claim and its verdict where it makes one; its effects at fractions of the budget (`along`) and,
    for a verdict, whether it holds at every one of them (`stability`, one of STABILITY)."""

    outcome: str
    effect: Effect | None
    claim: str | None = None
    verdict: str | None = None
    why_not: str = ""
    along: tuple[BudgetEffect, ...] = ()
    stability: str | None = None
    power: Power | None = None  # for a verdict: what the design could detect, the seeds it would need


@dataclass(frozen=True)
class Row(Record):
    """The switch of one pairing, across every outcome (no cells where it is not judged)."""

    pairing: Pairing
    cells: tuple[Cell, ...] = ()


@dataclass(frozen=True)
class Attribution(Record):
    """The factor × outcome table: one row per pairing of the design, one cell per outcome."""

    outcomes: tuple[Outcome, ...]
    rows: tuple[Row, ...]

    def cell(self, contrast: str, outcome: str, index: int = 0) -> Cell | None:
        """The cell of a contrast's `index`-th judged pairing for an outcome (None: no such pairing)."""
        rows = [r for r in self.rows if r.pairing.contrast == contrast and r.pairing.judged]
        if index >= len(rows):
            return None
        return next(c for c in rows[index].cells if c.outcome == outcome)


# ---------------------------------------------------------------- the effects, measured


@dataclass(frozen=True)
class PairEvidence:
    """What a pair's switch is read from: both sides' measurements (their interpolation paths among them, where a
    side encodes) and the alternating sampling timing of a against b."""

    a: Measurement
    b: Measurement
    timing: PairedTiming | None = None


def bound_effect(ev: PairEvidence) -> Effect | None:
    """b − a in bits/dim, paired over the test images both bounds were measured on."""
    if ev.a.bound is None or ev.b.bound is None:
        return None
    n = min(len(ev.a.bound.per_example_bpd), len(ev.b.bound.per_example_bpd))
    if n < 2:
        return None
    a, b = ev.a.bound.per_example_bpd[:n], ev.b.bound.per_example_bpd[:n]
    return paired_effect("−ELBO bits/dim b − a", b, a, "test images")


def figure_effect(
    key: str, transform: Callable[[float], float] | None = None
) -> Callable[[PairEvidence], Effect | None]:
    """b − a of a bootstrapped figure of the quality samples (`SampleFigures.key`; `transform` applied to each
    side first)."""

    def effect(ev: PairEvidence) -> Effect | None:
        a, b = (None if m.samples is None else getattr(m.samples, key) for m in (ev.a, ev.b))
        if a is None or b is None:
            return None
        args = () if transform is None else (transform,)
        return bootstrap_effect(f"{key} b − a", *difference(b, a, *args), "samples")

    return effect


def time_effect(ev: PairEvidence) -> Effect | None:
    """b's sampling time over a's, from alternating timings."""
    return None if ev.timing is None else ratio_effect("sampling time b / a", ev.timing)


def path_effect(ev: PairEvidence) -> Effect | None:
    """b − a of a path's largest step over its mean step, paired over the same image pairs."""
    a, b = ev.a.interpolation, ev.b.interpolation
    if a is None or b is None:
        return None
    return paired_effect("largest / mean step b − a", b.max_step_ratio, a.max_step_ratio, "image pairs")


EFFECTS = {
    "bound": bound_effect,
    "fd": figure_effect("fd"),
    "precision": figure_effect("precision"),
    "recall": figure_effect("recall"),
    "sharpness": figure_effect("laplacian_ratio", distance_from_one),
    "time": time_effect,
    "interpolation": path_effect,
}


def cell(contrast: str, outcome: str, effect: Effect | None) -> Cell:
    """A cell: the effect oriented as the essay's claim predicts, where it makes one, and its verdict (`decide`)."""
    claim = CLAIMS.get((contrast, outcome))
    if effect is None:
        return Cell(outcome, None, claim.text if claim else None, why_not="not measured on both sides")
    if claim is None:
        return Cell(outcome, effect)
    claimed = replace(effect, direction=claim.direction)
    return Cell(outcome, claimed, claim.text, decide(claimed))


def row(pairing: Pairing, evidence: PairEvidence | None) -> Row:
    """A pairing's row: every outcome's cell from its evidence (no cells where the pairing is not judged)."""
    if not pairing.judged or evidence is None:
        return Row(pairing)
    return Row(pairing, tuple(cell(pairing.contrast, o.name, EFFECTS[o.name](evidence)) for o in OUTCOMES))


def attribution(design: Design, evidence: Mapping[tuple[str, str], PairEvidence]) -> Attribution:
    """The table of a design: a row per pairing, its cells from the evidence of its pair (a, b)."""
    return Attribution(OUTCOMES, tuple(row(p, evidence.get(p.pair) if p.pair else None) for p in design.pairings))


def fold_point(same: Sequence[BudgetEffect], claim: str | None) -> BudgetEffect:
    """One budget point's effect over the seeds (`fold_effect`), its verdict decided again; where a seed lacks
    it, the first seed's as it is."""
    effects = [b.effect for b in same]
    if any(e is None for e in effects):
        return same[0]
    folded = fold_effect([e for e in effects if e is not None])
    return replace(same[0], effect=folded, verdict=None if claim is None else decide(folded))


def stability(verdict: str | None, along: Sequence[BudgetEffect]) -> str | None:
    """ "stable" when the verdict is the same at every budget point, "changes with budget" when it is not, "not
    tracked" when a point was not measured; None for a cell without a verdict or a run without budget points."""
    if verdict is None or not along:
        return None
    if any(b.verdict is None for b in along):
        return "not tracked"
    return "stable" if all(b.verdict == verdict for b in along) else "changes with budget"


#: the outcomes measured again at the budget points (`experiments.along`): sampling time is the network's, not its
#: training's, and the paths' inversions cost more than the rest; those are judged at the whole budget only
ALONG_OUTCOMES = ("bound", "fd", "precision", "recall", "sharpness")


def with_budget_points(final: Attribution, points: Mapping[float, Attribution]) -> Attribution:
    """`final` (the whole budget) with each judged cell's effect at every budget point, read from the table of
    that point (the same design, so the same rows in the same order), and each verdict's stability; a verdict on
    an outcome not measured along the budget is "not tracked"."""
    rows = []
    for index, r in enumerate(final.rows):
        cells = []
        for c in r.cells:
            if c.outcome not in ALONG_OUTCOMES or not points:
                cells.append(replace(c, stability="not tracked" if c.verdict and points else None))
                continue
            along = tuple(point_effect(points[f].rows[index], c.outcome, f) for f in sorted(points))
            cells.append(replace(c, along=along, stability=stability(c.verdict, along)))
        rows.append(replace(r, cells=tuple(cells)))
    return Attribution(final.outcomes, tuple(rows))


def point_effect(r: Row, outcome: str, fraction: float) -> BudgetEffect:
    """One outcome's effect in a budget point's row (none where the row was not judged there)."""
    found = next((c for c in r.cells if c.outcome == outcome), None)
    if found is None:
        return BudgetEffect(fraction, None, why_not="a side has no snapshot at this point")
    return BudgetEffect(fraction, found.effect, found.verdict, found.why_not)


def fold_tables(tables: Sequence[Attribution]) -> Attribution:
    """Several seeds' tables as one: each cell's effect folded over the seeds (`fold_effect`), its verdict decided
    again; a cell missing in any seed is kept as the first seed's."""
    if len(tables) == 1:
        return tables[0]
    rows = []
    for group in zip(*(t.rows for t in tables)):
        cells = []
        for same in zip(*(r.cells for r in group)):
            first = same[0]
            if any(c.effect is None for c in same):
                cells.append(first)
                continue
            folded = fold_effect([c.effect for c in same if c.effect is not None])
            verdict = None if first.claim is None else decide(folded)
            along = tuple(fold_point([c.along[i] for c in same], first.claim) for i in range(len(first.along)))
            cells.append(
                replace(first, effect=folded, verdict=verdict, along=along, stability=stability(verdict, along))
            )
        rows.append(replace(group[0], cells=tuple(cells)))
    return Attribution(tables[0].outcomes, tuple(rows))
