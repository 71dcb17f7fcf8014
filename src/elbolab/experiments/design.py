"""The design of `compare` as data: the models it trains (design points), the essay's design choices as factors
of their declared levels, and the contrasts it wants, each a pair of points that differ in one factor alone.

Points are chosen by the levels their models declare (`Capabilities.design`, a `DesignLevels`), never by
their kind: every registered kind joins the design at its default configuration, the points between the
paradigms add config changes (DESIGN.md, "The design space between them"), and a wanted contrast takes every
pair whose levels satisfy it. Where none does, the contrast is reported not judged, saying which pair is
missing. Two points pair only at the same training budget: the budget is held, not a factor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elbolab.config import require, with_overrides
from elbolab.errors import ConfigError
from elbolab.model import DesignLevels, GenerativeModel
from elbolab.records import Record
from elbolab.registry import MODEL_KINDS, model_classes

#: the designs `compare --design` offers: `full` adds to `core`
DESIGNS = ("core", "full")

#: each factor and the `DesignLevels` fields it is; the steps of an encoder and of its decoder move together
FACTORS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder",),
    "latent": ("latent",),
    "steps": ("encoder_steps", "decoder_steps"),
    "objective": ("objective",),
}
#: contrasts across several factors at once: a merged model against one end, and the two ends themselves
COMPOSITES = ("merged", "ends")
#: the role of a β-sweep point: a VAE placed on the rate–distortion axes, judged by the tug-of-war contrasts
SWEEP = "β-sweep"
#: a condition on the steps factor that any number of steps but one satisfies
MANY = "many"
#: how ∞ steps (a continuous-time chain) reads
INFINITE = "∞"


def level(levels: DesignLevels, factor: str) -> str:
    """A model's level of one factor as a label: the field's value, steps as a count ("1", "1000", "∞"), or
    "E/D" where the encoder's and the decoder's steps differ."""
    values = [getattr(levels, name) for name in FACTORS[factor]]
    labels = [INFINITE if v is None else str(v) for v in values]
    return labels[0] if len(set(labels)) == 1 else "/".join(labels)


def profile(levels: DesignLevels) -> dict[str, str]:
    """Every factor's level of a model."""
    return {factor: level(levels, factor) for factor in FACTORS}


def satisfies(levels: DesignLevels, conditions: Mapping[str, str]) -> bool:
    """Whether a model's levels meet `conditions` (factor → label; `MANY` for steps: anything but one)."""
    found = profile(levels)
    return all(found[f] != "1" if want == MANY else found[f] == want for f, want in conditions.items())


def differing(a: DesignLevels, b: DesignLevels) -> tuple[str, ...]:
    """The factors in which two models' levels differ, in `FACTORS` order."""
    pa, pb = profile(a), profile(b)
    return tuple(f for f in FACTORS if pa[f] != pb[f])


def conditions_text(conditions: Mapping[str, str]) -> str:
    """'encoder learned, steps 1' of a set of conditions."""
    return ", ".join(f"{f} {'more than 1' if v == MANY else v}" for f, v in conditions.items())


# ---------------------------------------------------------------- the points


@dataclass(frozen=True)
class DesignPoint(Record):
    """One model of the design: a registered kind, the config changes that place it (`{"latent": "full"}`,
    `{"T": 1}`), its training budget as a fraction of `compare`'s per-model budget, the smallest design
    (`DESIGNS`) that trains it, and its role beyond the pairs ("" or `SWEEP`)."""

    name: str
    kind: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    budget: float = 1.0
    design: str = "core"
    role: str = ""

    def __post_init__(self) -> None:
        require("DesignPoint.budget", self.budget, self.budget > 0, "a fraction > 0 of the per-model budget")
        require("DesignPoint.design", self.design, self.design in DESIGNS, f"one of {', '.join(DESIGNS)}")
        require("DesignPoint.role", self.role, self.role in ("", SWEEP), f"empty or {SWEEP!r}")


#: the points between the paradigms (DESIGN.md's table), beyond each registered kind at its defaults: the VAE with
#: a latent of x's size, diffusion in one discrete step (`DiffusionConfig.one_step`'s recipe: its noise level
#: learned from γ_1 = 0), the learned-encoder chain (DiffEnc) and more T values;
#: every discrete chain trained on its bound (cosine schedule, which every T takes), so that its steps set it
#: apart from the continuous chain
BRIDGES = (
    DesignPoint("vae-full", "vae", {"latent": "full"}),
    DesignPoint(
        "diffusion-T1",
        "diffusion",
        {"time": "discrete", "T": 1, "schedule": "cosine", "gamma_max": 0.0, "loss": "vlb", "sampler": "ancestral"},
    ),
    DesignPoint("diffenc", "diffusion", {"encoder": "learned"}, design="full"),
    DesignPoint(
        "diffusion-T10", "diffusion", {"time": "discrete", "T": 10, "loss": "vlb", "schedule": "cosine"}, design="full"
    ),
    DesignPoint(
        "diffusion-T100",
        "diffusion",
        {"time": "discrete", "T": 100, "loss": "vlb", "schedule": "cosine"},
        design="full",
    ),
)


def design_points(
    design: str = "core",
    beta_sweep: tuple[float, ...] = (0.25, 4.0),
    sweep_fraction: float = 0.15,
    objective_fraction: float = 0.15,
) -> tuple[DesignPoint, ...]:
    """Every point of `design`: each registered kind at its defaults (named by its kind), the bridges, the β-sweep
    VAEs and the objective pair (diffusion trained on its ELBO and on L_simple under a shorter budget; none for
    `objective_fraction` 0)."""
    require("--design", design, design in DESIGNS, f"one of {', '.join(DESIGNS)}")
    sweep = tuple(DesignPoint(f"vae-beta{b:g}", "vae", {"beta": b}, sweep_fraction, role=SWEEP) for b in beta_sweep)
    objective = (
        (
            DesignPoint("diffusion-elbo", "diffusion", {"loss": "vlb"}, objective_fraction),
            DesignPoint("diffusion-simple", "diffusion", {"loss": "simple"}, objective_fraction),
        )
        if objective_fraction > 0
        else ()
    )
    wanted = (*BRIDGES, *sweep, *objective)
    chosen = tuple(p for p in wanted if DESIGNS.index(p.design) <= DESIGNS.index(design))
    return (*(DesignPoint(kind, kind) for kind in MODEL_KINDS), *chosen)


def point_config(point: DesignPoint, side: int, device: str = "cpu") -> Any:
    """The point's model config: its kind's `sized_for` these images on this device, with the point's changes
    (an unknown key or a bad value is a ConfigError naming it)."""
    cfg_cls: Any = model_classes(point.kind)[0]
    return with_overrides(cfg_cls.sized_for(side, device), point.changes, "model.")


def declared(model: GenerativeModel) -> DesignLevels:
    """The levels a model declares (`Capabilities.design`); a ConfigError for one that declares none."""
    design = model.capabilities.design
    if design is None:
        raise ConfigError(f"the {model.kind} model declares no design levels (Capabilities.design)")
    return design


def declared_levels(point: DesignPoint, shape: tuple[int, int, int], levels: int, device: str = "cpu") -> DesignLevels:
    """The levels the point's model declares, read from an untrained model built on the CPU."""
    _, model_cls = model_classes(point.kind)
    return declared(model_cls(point_config(point, shape[-1], device), shape, levels))


# ---------------------------------------------------------------- the contrasts


@dataclass(frozen=True)
class Wanted:
    """A contrast the design asks for: switching `factor` from side `a`'s level to side `b`'s while the
    `held` levels stay; a factor of `COMPOSITES` asks for one pair differing in several factors (a merged model
    against one end, the two ends). Conditions map a factor to a level label (`level`), or `MANY` for steps."""

    name: str
    title: str
    factor: str
    a: Mapping[str, str]
    b: Mapping[str, str]
    held: Mapping[str, str] = field(default_factory=dict)
    design: str = "core"

    def __post_init__(self) -> None:
        unknown = sorted((set(self.a) | set(self.b) | set(self.held)) - set(FACTORS))
        if unknown or self.factor not in (*FACTORS, *COMPOSITES):
            raise ConfigError(f"contrast {self.name!r} names unknown factors {unknown or [self.factor]}")

    @property
    def one_factor(self) -> bool:
        """Whether the contrast switches one factor alone."""
        return self.factor in FACTORS


#: the contrasts of the essay's four choices (issue: `compare` as a controlled experiment)
WANTED = (
    Wanted(
        "latent",
        "Latent size: a bottleneck vs. a latent the size of x (learned one-step encoder)",
        "latent",
        {"latent": "bottleneck"},
        {"latent": "full"},
        {"encoder": "learned", "steps": "1"},
    ),
    Wanted(
        "encoder",
        "Encoder at one step: learned vs. fixed (latent the size of x)",
        "encoder",
        {"encoder": "learned"},
        {"encoder": "fixed"},
        {"steps": "1", "latent": "full"},
    ),
    Wanted(
        "steps",
        "Steps of a fixed encoder and its decoder: one vs. many",
        "steps",
        {"steps": "1"},
        {"steps": MANY},
        {"encoder": "fixed"},
    ),
    Wanted(
        "depth",
        "Depth of a learned encoder and decoder: one level vs. several",
        "steps",
        {"steps": "1"},
        {"steps": MANY},
        {"encoder": "learned"},
    ),
    Wanted(
        "encoder-many",
        "Encoder at many steps: learned vs. fixed (continuous time)",
        "encoder",
        {"encoder": "learned"},
        {"encoder": "fixed"},
        {"steps": INFINITE},
        "full",
    ),
    Wanted(
        "objective",
        "Objective: the ELBO's weighting vs. L_simple (fixed encoder)",
        "objective",
        {"objective": "ELBO"},
        {"objective": "weighted"},
        {"encoder": "fixed"},
    ),
    Wanted(
        "ends",
        "The two ends: a learned one-step bottleneck vs. a fixed many-step chain the size of x",
        "ends",
        {"encoder": "learned", "steps": "1", "latent": "bottleneck"},
        {"encoder": "fixed", "steps": MANY, "latent": "full"},
    ),
    Wanted(
        "merged-learned",
        "Merged: the learned one-step end vs. latent diffusion",
        "merged",
        {"encoder": "learned", "steps": "1", "latent": "bottleneck"},
        {"encoder": "learned, then fixed"},
    ),
    Wanted(
        "merged-fixed",
        "Merged: the fixed many-step end vs. latent diffusion",
        "merged",
        {"encoder": "fixed", "steps": MANY, "latent": "full"},
        {"encoder": "learned, then fixed"},
    ),
)


@dataclass(frozen=True)
class Placed(Record):
    """A design point built, with the levels its model declares."""

    point: DesignPoint
    levels: DesignLevels


@dataclass(frozen=True)
class Pairing(Record):
    """A wanted contrast resolved: the pair (a, b) of point names it switches between, the factor's level on
    each side, the factors they differ in; or, where no pair exists, why it is not judged."""

    contrast: str
    title: str
    factor: str  # the factor, or one of `COMPOSITES` for a contrast across several
    pair: tuple[str, str] | None
    switch: tuple[str, str] = ("", "")
    differs: tuple[str, ...] = ()
    why_not: str = ""

    @property
    def judged(self) -> bool:
        """Whether a pair was found for the contrast."""
        return self.pair is not None


def one_factor_pairs(placed: tuple[Placed, ...]) -> dict[str, tuple[tuple[str, str], ...]]:
    """For each factor, every pair of points (in design order) at the same budget whose levels differ in that
    factor alone."""
    found: dict[str, list[tuple[str, str]]] = {f: [] for f in FACTORS}
    for i, p in enumerate(placed):
        for q in placed[i + 1 :]:
            apart = differing(p.levels, q.levels)
            if len(apart) == 1 and p.point.budget == q.point.budget:
                found[apart[0]].append((p.point.name, q.point.name))
    return {f: tuple(pairs) for f, pairs in found.items()}


def resolve(wanted: Wanted, placed: tuple[Placed, ...]) -> tuple[Pairing, ...]:
    """The pairings of one wanted contrast: every one-factor pair that meets its conditions (oriented a → b);
    for a composite the first b in design order with the first a at its budget; a not-judged pairing where
    there is none."""
    by_name = {p.point.name: p for p in placed}
    side_a, side_b = {**wanted.held, **wanted.a}, {**wanted.held, **wanted.b}
    if wanted.one_factor:
        candidates = [
            (a, b)
            for pair in one_factor_pairs(placed)[wanted.factor]
            for a, b in (pair, pair[::-1])
            if satisfies(by_name[a].levels, side_a) and satisfies(by_name[b].levels, side_b)
        ]
        held = f" ({conditions_text(wanted.held)})" if wanted.held else ""
        why = f"not judged: no registered pair differs in {wanted.factor} alone{held}"
    else:
        candidates = [
            (a.point.name, b.point.name)
            for b in placed
            if satisfies(b.levels, side_b)
            for a in placed
            if a.point.budget == b.point.budget and satisfies(a.levels, side_a)
        ][:1]
        why = (
            f"not judged: no registered pair has {conditions_text(side_a)} on one side and "
            f"{conditions_text(side_b)} on the other, at one budget"
        )
    if not candidates:
        return (Pairing(wanted.name, wanted.title, wanted.factor, None, why_not=why),)
    return tuple(pairing(wanted, by_name[a], by_name[b]) for a, b in candidates)


def pairing(wanted: Wanted, a: Placed, b: Placed) -> Pairing:
    """The pairing of `wanted` between points a and b."""
    switch = (level(a.levels, wanted.factor), level(b.levels, wanted.factor)) if wanted.one_factor else ("", "")
    pair = (a.point.name, b.point.name)
    return Pairing(wanted.name, wanted.title, wanted.factor, pair, switch, differing(a.levels, b.levels))


@dataclass(frozen=True)
class Design(Record):
    """A design placed: its points with their declared levels, the points that could not be built (and why),
    and every wanted contrast resolved into pairings."""

    name: str
    placed: tuple[Placed, ...]
    absent: tuple[tuple[str, str], ...]
    pairings: tuple[Pairing, ...]

    def pair(self, contrast: str) -> tuple[str, str] | None:
        """The first pair of a wanted contrast (None: not judged)."""
        return next((p.pair for p in self.pairings if p.contrast == contrast and p.pair), None)

    def point(self, name: str) -> Placed:
        """The placed point of that name."""
        found = [p for p in self.placed if p.point.name == name]
        if not found:
            raise KeyError(f"no design point {name!r} was placed")
        return found[0]


LevelsOf = Callable[[DesignPoint], DesignLevels]


def place(
    name: str, points: tuple[DesignPoint, ...], levels_of: LevelsOf, wanted: tuple[Wanted, ...] = WANTED
) -> Design:
    """Build the design: each point's declared levels (`levels_of`; a point whose kind is not registered or whose
    changes its config refuses is absent, with the error), then every wanted contrast of the design resolved."""
    placed, absent = [], []
    for point in points:
        if point.kind not in MODEL_KINDS:
            absent.append((point.name, f"no model kind {point.kind!r} is registered"))
            continue
        try:
            placed.append(Placed(point, levels_of(point)))
        except ConfigError as exc:
            absent.append((point.name, str(exc)))
    chosen = tuple(w for w in wanted if DESIGNS.index(w.design) <= DESIGNS.index(name))
    found = tuple(placed)
    return Design(name, found, tuple(absent), tuple(p for w in chosen for p in resolve(w, found)))


def placed_for(name: str, shape: tuple[int, int, int], levels: int, device: str = "cpu", **sweep: Any) -> Design:
    """`place` the design `name` for images of `shape` with `levels` levels, each point's levels read from its
    untrained model (`declared_levels`); `sweep`: `design_points`' β-sweep and budget fractions."""
    points = design_points(name, **sweep)
    return place(name, points, lambda p: declared_levels(p, shape, levels, device))
