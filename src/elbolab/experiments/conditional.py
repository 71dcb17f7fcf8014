"""Conditional models in the comparison: the guidance sweep, and the two contrasts of `compare --conditional`.

"Conditioning is worth at most log K nats": E[−log p(x | y)] = H(X | Y) = H(X) − I(X; Y) and I(X; Y) ≤ H(Y) ≤
log K, so the conditional bound can beat the unconditional one by at most log₂ K / D bits/dim where both are tight
(0.052 on digits). The judged pair differs in conditioning alone: each end's conditional twin against the end
itself, trained alike (the same kind, changes, budget and seed), paired over the same test images. A twin with a
null class also bounds −log p(x) with its own weights; that gain is reported beside the judged one, as a measure
of how loose the null class is (it is trained on the dropped labels only), not judged.

"Guidance trades recall for precision": classifier-free guidance w > 1 sharpens the class-conditional samples
(Ho & Salimans 2022) by leaving the model its bound is of (w = 1); precision rises and recall falls.

Every model is read through its capabilities (`classes`, `null_class`, `sample_options`), never its kind. Each
seed of `compare --seeds N` trains and judges its own twins; the contrasts fold over the seeds as the others do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from elbolab.data.base import ImageData
from elbolab.errors import ConfigError
from elbolab.evaluate.features import ClassifierFeatures, FeatureExtractor
from elbolab.evaluate.resample import bootstrap_indices, sample_figures
from elbolab.evaluate.run import Log, quality_reference, quality_sampling
from elbolab.experiments.design import Design, DesignPoint, placed_for, point_config
from elbolab.experiments.results import RunResult, SeedResult
from elbolab.experiments.verdicts import bootstrap_effect, difference, judged, no_evidence, paired_effect, show
from elbolab.model import GenerativeModel
from elbolab.records import BoundSummary, Contrast, Effect, Record, Resampled, SampleFigures

if TYPE_CHECKING:  # compare calls this module
    from elbolab.experiments.compare import CompareConfig, Watch

#: the guidance scales of the sweep (w = 1: the conditional model; 0: the unconditional one)
SWEEP_W = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
#: the larger scale `compare --conditional` sets against w = 1
STRONG_W = 3.0
#: the factor the conditional contrasts name
CONDITIONING = "conditioning"


@dataclass(frozen=True)
class GuidancePoint(Record):
    """Samples of every class at guidance scale `w` (`n_per_class` each, at a fixed sampler and NFE): their figures
    against the test images and the built-in feature net's accuracy on them, both bootstrapped over the samples
    (with the same resampling indices, so that the replicates of two points pair up)."""

    w: float
    sampler: str
    steps: int
    n_per_class: int
    figures: SampleFigures
    accuracy: Resampled | None = None  # None: the feature net is no classifier


def guides(model: GenerativeModel) -> bool:
    """Whether the model samples with classifier-free guidance (a conditional model with the `guidance` option)."""
    caps = model.capabilities
    return caps.classes is not None and "guidance" in caps.sample_options


def class_labels(classes: int, per_class: int) -> Tensor:
    """0, …, 0, 1, …, K − 1: `per_class` labels of each of the K classes."""
    return torch.arange(classes).repeat_interleave(per_class)


def guided_samples(model: GenerativeModel, y: Tensor, w: float, sampler: str, steps: int, seed: int) -> Tensor:
    """Samples given labels y at guidance w (Ho & Salimans 2022, eq. 6), from the same noise for every w."""
    generator = torch.Generator(model.device).manual_seed(seed)
    with torch.no_grad():
        return model.sample(len(y), generator, sampler=sampler, steps=steps, y=y.to(model.device), guidance=w).cpu()


def resampled_accuracy(hits: Tensor, replicates: int, seed: int) -> Resampled:
    """The share of hits and its bootstrap replicates, drawn as `sample_figures` draws the samples (seed + 1)."""
    h = hits.double().numpy()
    idx = bootstrap_indices(len(h), replicates, seed + 1)
    return Resampled(float(h.mean()), tuple(h[idx].mean(1).tolist()))


def guidance_point(
    model: GenerativeModel,
    w: float,
    reference: Tensor,
    levels: int,
    features: FeatureExtractor,
    per_class: int,
    sampler: str,
    steps: int,
    replicates: int = 200,
    seed: int = 0,
) -> GuidancePoint:
    """One point of the sweep: `per_class` samples of each class at guidance w, measured against `reference`."""
    classes = int(model.capabilities.classes or 0)
    y = class_labels(classes, per_class)
    samples = guided_samples(model, y, w, sampler, steps, seed)
    figures = sample_figures(samples, reference, levels, features, replicates, seed)
    accuracy = None
    if isinstance(features, ClassifierFeatures):
        hits = features.class_probabilities(samples, levels).argmax(1) == y
        accuracy = resampled_accuracy(hits, replicates, seed)
    return GuidancePoint(w, sampler, steps, per_class, figures, accuracy)


def guidance_sweep(
    model: GenerativeModel,
    test: ImageData,
    features: FeatureExtractor,
    ws: Sequence[float] = SWEEP_W,
    per_class: int = 40,
    sampler: str = "ddim",
    steps: int = 50,
    replicates: int = 200,
    seed: int = 0,
    log: Log = lambda _: None,
) -> tuple[GuidancePoint, ...]:
    """`guidance_point` at every w, all against the same test images with the same seed (paired replicates)."""
    if not guides(model):
        raise ValueError(
            f"the {model.kind} model does not sample with guidance (a conditional model with a null class)"
        )
    reference = quality_reference(test, per_class * int(model.capabilities.classes or 0))
    found = []
    for w in ws:
        log(f"guidance w = {w:g}: {per_class} samples of each class, {sampler} {steps}")
        found.append(
            guidance_point(model, w, reference, test.levels, features, per_class, sampler, steps, replicates, seed)
        )
    return tuple(found)


# ---------------------------------------------------------------- the contrasts

WORTH = "Conditioning is worth at most log K nats"


def ceiling_bpd(classes: int, dims: int) -> float:
    """log₂ K / D: the most a label of K classes can lower −log p(x) per dimension (I(X; Y) ≤ H(Y) ≤ log K)."""
    return math.log2(classes) / dims


def bound_gain(unconditional: BoundSummary, conditional: BoundSummary, items: str) -> Effect:
    """E[−log p(x)] − E[−log p(x | y)] in bits/dim, paired over the test images both bounds were measured on."""
    n = min(len(conditional.per_example_bpd), len(unconditional.per_example_bpd))
    return paired_effect(
        "bits/dim gain of conditioning (unconditional − conditional)",
        unconditional.per_example_bpd[:n],
        conditional.per_example_bpd[:n],
        items,
    )


def contrast_worth(
    conditional: BoundSummary,
    unconditional: BoundSummary,
    classes: int,
    dims: int,
    pair: tuple[str, str],
    null: BoundSummary | None = None,
) -> Contrast:
    """The conditional twin's gain over the unconditional model trained alike (`pair`: that model, then the twin),
    paired over the same test images, against the ceiling log₂ K / D bits/dim (E[−log p(x|y)] = H(X) − I(X; Y),
    I(X; Y) ≤ log K); the twin's own null-class bound `null`, where it has one, reported beside it."""
    base, twin = pair
    ceiling = ceiling_bpd(classes, dims)
    gain = bound_gain(unconditional, conditional, f"test images, {base} against {twin}")
    over = replace(
        gain,
        name=f"gain of {twin} over {base} − ceiling log₂ {classes} / {dims} = {ceiling:.4f} bits/dim",
        value=gain.value - ceiling,
        low=gain.low - ceiling,
        high=gain.high - ceiling,
        test=f"{gain.test} (trained alike: they differ in conditioning alone)",
        direction=-1,
    )
    beside = ""
    if null is not None:
        loose = bound_gain(null, conditional, "test images")
        beside = (
            f" Beside it, not judged: {twin}'s own weights through the null class bound −log p(x) by "
            f"{null.bpd.total:.4f} ± {null.bpd.ci95:.4f} bits/dim, a gain of {show(loose)} over its conditional "
            f"bound; its bound minus {base}'s {loose.value - gain.value:+.3g} bits/dim: how loose the null class is "
            "(it is trained on the dropped labels only)."
        )
    return judged(
        WORTH,
        "E[−log p(x|y)] = H(X) − I(X; Y) and I(X; Y) ≤ H(Y) ≤ log K: a label of K classes can lower the bound by at "
        f"most log₂ K / D bits/dim ({ceiling:.4f} here). Supported: the gain of the conditional twin over the "
        "model trained alike without labels lies below the ceiling; not supported: above it, which says that the "
        "unconditional bound is looser than the conditional one by more than a label can explain.",
        f"Conditional bound ({twin}) {conditional.bpd.total:.4f} ± {conditional.bpd.ci95:.4f} bits/dim, "
        f"unconditional ({base}, trained alike) {unconditional.bpd.total:.4f} ± {unconditional.bpd.ci95:.4f}; the "
        f"gain paired over the same test images {show(gain)} against the ceiling {ceiling:.4f}; gain − ceiling "
        f"{show(over)}.{beside}",
        [over],
    )


TRADE = "Guidance trades recall for precision"


def contrast_trade(plain: GuidancePoint, strong: GuidancePoint) -> Contrast:
    """Precision and recall of samples at guidance w = 1 against a larger w, bootstrapped over the samples."""
    claim = (
        f"Classifier-free guidance w > 1 leaves the model the bound is of (w = 1) to sharpen each class: its samples "
        f"at w = {strong.w:g} lie more on the data (precision up) and cover less of it (recall down)."
    )
    a, b = plain.figures, strong.figures
    if a.precision is None or b.precision is None or a.recall is None or b.recall is None:
        return no_evidence(
            TRADE, claim, "no feature network measured precision and recall", "precision and recall differences"
        )
    precision = bootstrap_effect(
        f"precision at w = {strong.w:g} − at w = 1", *difference(b.precision, a.precision), "samples"
    )
    recall = bootstrap_effect(
        f"recall at w = {strong.w:g} − at w = 1", *difference(b.recall, a.recall), "samples", direction=-1
    )
    accuracy = (
        f" Class accuracy of the built-in feature net on the samples: w = 1 {a_acc.value:.3f}, w = {strong.w:g} "
        f"{b_acc.value:.3f}."
        if (a_acc := plain.accuracy) is not None and (b_acc := strong.accuracy) is not None
        else ""
    )
    return judged(
        TRADE,
        claim,
        f"{plain.n_per_class} samples of each class, {plain.sampler} {plain.steps} steps, the same noise: precision "
        f"{a.precision.value:.3f} → {b.precision.value:.3f} (difference {show(precision)}), recall "
        f"{a.recall.value:.3f} → {b.recall.value:.3f} (difference {show(recall)}).{accuracy}",
        [precision, recall],
    )


# ---------------------------------------------------------------- in compare


def conditional_points(
    design: Design, side: int, log: Log = lambda _: None
) -> tuple[tuple[DesignPoint, DesignPoint], ...]:
    """(unconditional point, its conditional twin) for each end of the design whose config takes `conditional`:
    the same kind, changes and budget with `conditional` set (an end whose config refuses it is left out, said)."""
    pairs = []
    for name in design.pair("ends") or ():
        point = design.point(name).point
        twin = replace(point, name=f"{point.name}-conditional", changes={**point.changes, "conditional": True})
        try:
            point_config(twin, side)
        except ConfigError as why:
            log(f"{point.name}: no conditional twin ({why})")
            continue
        pairs.append((point, twin))
    return tuple(pairs)


def planned_twins(cfg: CompareConfig, side: int) -> tuple[DesignPoint, ...]:
    """The conditional twins `compare --conditional` trains for images of `side` px, from the design placed on
    untrained models (`placed_for`: each point's levels as declared), for the plan and the time estimate."""
    design = placed_for(
        cfg.design,
        (1, side, side),
        256,
        beta_sweep=cfg.beta_sweep,
        sweep_fraction=cfg.sweep_budget_fraction,
        objective_fraction=cfg.objective_budget_fraction,
    )
    return tuple(twin for _, twin in conditional_points(design, side))


def conditional_contrasts(
    cfg: CompareConfig,
    out: Path,
    train: ImageData,
    test: ImageData,
    features: FeatureExtractor,
    models: dict[str, RunResult],
    design: Design,
    log: Log,
    watch: Watch | None = None,
) -> tuple[tuple[Contrast, ...], dict[str, RunResult]]:
    """`compare --conditional` for one seed (`cfg.seed`): each end trained conditionally too
    (`out/runs/NAME-conditional`, the same budget and seed), measured, and judged: conditioning's gain over the
    end itself against log K for each, guidance's trade for those that guide. Returns the contrasts and the
    conditional runs' results."""
    from elbolab.experiments.compare import JobEvent, point_run, train_or_reuse, watched_log
    from elbolab.experiments.runs import measure_run

    contrasts: list[Contrast] = []
    found: dict[str, RunResult] = {}
    ev = replace(cfg.evaluation, parts=("likelihood", "quality", "sharpness"))
    for point, twin in conditional_points(design, test.shape[-1], log):
        run_dir = out / "runs" / twin.name
        if watch:
            watch(JobEvent("train", twin.name))
        train_or_reuse(point_run(twin, cfg, test), run_dir, train, test, log, False, watch, twin.name)
        named = watched_log(log, watch, twin.name)
        result, _, model = measure_run(run_dir, ev, test, features, named, cfg.device)
        found[twin.name] = result
        m, base = result.measurement, models[point.name].measurement
        if m.bound is not None and base.bound is not None:
            pair = (point.name, twin.name)
            c = contrast_worth(m.bound, base.bound, int(m.classes or 0), test.dims, pair, m.unconditional)
            contrasts.append(replace(c, factor=CONDITIONING, pair=pair))
        if guides(model):
            classes = int(m.classes or 0)
            n = max(1, cfg.evaluation.n_samples // classes)
            sampler, steps = quality_sampling(model, cfg.evaluation)
            plain, strong = guidance_sweep(
                model, test, features, (1.0, STRONG_W), n, sampler, steps, cfg.evaluation.replicates, cfg.seed, named
            )
            contrasts.append(replace(contrast_trade(plain, strong), factor=CONDITIONING, pair=(twin.name,)))
    return tuple(contrasts), found


def with_twins(
    cfg: CompareConfig,
    out: Path,
    train: ImageData,
    test: ImageData,
    features: FeatureExtractor,
    seed: SeedResult,
    log: Log,
    watch: Watch | None = None,
) -> tuple[SeedResult, dict[str, RunResult]]:
    """One seed's comparison with its conditional contrasts (`conditional_contrasts` on its own models, in its
    own folder `out`) after its others, so that they fold over the seeds as those do; and its twins' results."""
    if seed.design is None:
        return seed, {}
    found, runs = conditional_contrasts(cfg, out, train, test, features, seed.models, seed.design, log, watch)
    return replace(seed, contrasts=(*seed.contrasts, *found)), runs


def figure_interval(r: Resampled | None) -> tuple[float, float, float]:
    """(value, low, high) of a bootstrapped figure, its percentile interval widened to hold the value as
    `bootstrap_effect` widens it (NaN where not measured)."""
    if r is None:
        return math.nan, math.nan, math.nan
    low, high = r.interval()
    return r.value, min(low, r.value), max(high, r.value)


def sweep_rows(points: Sequence[GuidancePoint]) -> list[dict[str, float]]:
    """One flat row per point of the sweep: FD, precision, recall and class accuracy, each with its interval."""
    rows = []
    for p in points:
        row: dict[str, float] = {"w": p.w}
        for name, r in (
            ("fd", p.figures.fd),
            ("precision", p.figures.precision),
            ("recall", p.figures.recall),
            ("accuracy", p.accuracy),
        ):
            row[name], row[f"{name}_low"], row[f"{name}_high"] = figure_interval(r)
        rows.append(row)
    return rows
