"""The verdicts: one function per contrast, each an effect with its 95% interval and the test behind it.

Every contrast states an effect (a difference or a ratio) whose sign the claim predicts, measures it
with an interval (paired differences over the same test images for bounds; the bootstrap over samples
for Fréchet distance, KID and sharpness; alternating repeated timings for speed; the Monte-Carlo
error for information) and decides by `decide`: supported when the interval excludes "no effect" on
the claimed side, not supported when it excludes it on the other, inconclusive otherwise, and
inconclusive too when the smallest effect the test could detect exceeds the effect measured. A
contrast resting on two effects combines their verdicts by a stated rule (`COMBINE`). Several seeds
fold into one interval per effect (`fold_seeds`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from elbolab.bounds import plus_minus
from elbolab.evaluate.floors import Floors
from elbolab.evaluate.information import InformationCurve
from elbolab.evaluate.interpolation import PathStats
from elbolab.evaluate.run import Measurement
from elbolab.evaluate.speed import PairedTiming
from elbolab.evaluate.steps import StepsPoint
from elbolab.records import (
    COMBINE,
    BoundSummary,
    Contrast,
    Effect,
    Resampled,
    SampleFigures,
    SweepPoint,
    percentile_interval,
)

if TYPE_CHECKING:  # results holds the attribution table, which builds its effects here
    from elbolab.experiments.results import RunResult

Z95 = 1.959963984540054

# ---------------------------------------------------------------- effects and their verdicts


def t_quantile(n: int) -> float:
    """The 97.5% quantile of Student's t with n − 1 degrees of freedom (NaN for n < 2)."""
    return float(stats.t.ppf(0.975, n - 1)) if n >= 2 else math.nan


def paired_effect(name: str, a: Sequence[float], b: Sequence[float], items: str, direction: int = 1) -> Effect:
    """mean(a − b) over paired items with its t-interval; min_detectable = the interval's half-width."""
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"a paired difference needs two equal, non-empty lists, got {len(a)} and {len(b)}")
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    half = t_quantile(len(d)) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    mean = float(d.mean())
    return Effect(
        name, mean, mean - half, mean + half, f"paired t-interval over {len(d)} {items}", 0.0, direction, half
    )


def bootstrap_effect(
    name: str, value: float, replicates: Sequence[float], what: str, direction: int = 1, null: float = 0.0
) -> Effect:
    """A figure's bootstrap percentile interval; min_detectable = 1.96 × the replicates' standard deviation."""
    low, high = percentile_interval(replicates)
    finite = [r for r in replicates if math.isfinite(r)]
    spread = Z95 * float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    return Effect(
        name,
        value,
        min(low, value) if math.isfinite(low) else low,
        max(high, value) if math.isfinite(high) else high,
        f"percentile bootstrap over {what} ({len(replicates)} resamples)",
        null,
        direction,
        spread,
    )


def difference(
    a: Resampled, b: Resampled, transform: Callable[[float], float] = lambda v: v
) -> tuple[float, tuple[float, ...]]:
    """transform(a) − transform(b) and its replicates (a and b measured with shared resampling indices)."""
    return (
        transform(a.value) - transform(b.value),
        tuple(transform(x) - transform(y) for x, y in zip(a.replicates, b.replicates)),
    )


def log_ratio(r: float) -> float:
    """log r (NaN for r ≤ 0, which a resample of a noisy figure can reach)."""
    return math.log(r) if r > 0 else math.nan


def distance_from_one(r: float) -> float:
    """|log r|: how far a ratio to the data's own figure is from 1, either way (NaN for r ≤ 0)."""
    return abs(log_ratio(r))


def ratio_effect(name: str, timing: PairedTiming, direction: int = 1) -> Effect:
    """The geometric mean of b/a over alternating repeats, with the t-interval of the mean log ratio."""
    logs = np.log(np.asarray(timing.ratios(), np.float64))
    mean = float(logs.mean())
    half = t_quantile(len(logs)) * logs.std(ddof=1) / math.sqrt(len(logs)) if len(logs) > 1 else math.nan
    return Effect(
        name,
        math.exp(mean),
        math.exp(mean - half),
        math.exp(mean + half),
        f"t-interval of the mean log ratio over {len(logs)} alternating timings",
        1.0,
        direction,
        math.expm1(half) if math.isfinite(half) else half,
    )


def decide(effect: Effect) -> str:
    """`Effect.verdict`, made inconclusive when the smallest detectable effect exceeds the effect measured."""
    verdict = effect.verdict()
    if effect.min_detectable is not None and not effect.min_detectable <= abs(effect.value - effect.null):
        return "inconclusive"
    return verdict


def combine(effects: Sequence[Effect], how: str) -> str:
    """One verdict from the effects of a contrast, by the rule `how` (see COMBINE)."""
    if how not in COMBINE:
        raise ValueError(f"effects combine by one of {', '.join(COMBINE)}, got {how!r}")
    verdicts = [decide(e) for e in effects]
    if how == "guarded":
        return "inconclusive" if verdicts[0] == "supported" and "not supported" in verdicts[1:] else verdicts[0]
    if all(v == "supported" for v in verdicts):
        return "supported"
    return "not supported" if "not supported" in verdicts else "inconclusive"


COMBINE_TEXT = {
    "all": "every effect above must be supported (any not supported: not supported)",
    "guarded": "the first effect decides, unless the second (a guard) is not supported, which makes it inconclusive",
}
RULE_TAIL = (
    "supported when the 95% interval excludes no effect on the claimed side, not supported when it "
    "excludes it on the other, inconclusive otherwise or when the smallest detectable effect exceeds "
    "the effect measured"
)


def rule_text(effects: Sequence[Effect], how: str) -> str:
    """The rule a contrast applied: each effect's test, claimed side and smallest detectable effect; `RULE_TAIL`;
    how the effects combine."""

    def smallest(e: Effect) -> str:
        known = e.min_detectable is not None and math.isfinite(e.min_detectable)
        return f"{e.min_detectable:.3g}" if known else "unknown (so inconclusive)"

    tests = "; ".join(
        f"{e.name}: {e.test}, claimed {'>' if e.direction > 0 else '<'} {e.null:g}, smallest "
        f"detectable effect {smallest(e)}"
        for e in effects
    )
    return f"{tests}. Each {RULE_TAIL}." + (f" Combined: {COMBINE_TEXT[how]}." if len(effects) > 1 else "")


def judged(
    title: str,
    claim: str,
    measured: str,
    effects: Sequence[Effect],
    how: str = "all",
    figure: str | None = None,
) -> Contrast:
    """A contrast whose verdict `combine`s its effects; the rule names each effect's test and its smallest
    detectable effect."""
    return Contrast(title, claim, measured, rule_text(effects, how), combine(effects, how), tuple(effects), how, figure)


def show(e: Effect, digits: int = 3) -> str:
    """'value [low, high]' of an effect."""
    return f"{e.value:.{digits}g} [{e.low:.{digits}g}, {e.high:.{digits}g}]"


def show_figure(r: Resampled, digits: int = 3) -> str:
    """'value [low, high]' of a bootstrapped figure (its 95% percentile interval)."""
    low, high = r.interval()
    return f"{r.value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def no_evidence(title: str, claim: str, why: str, test: str) -> Contrast:
    """A contrast that could not be measured: inconclusive, naming the test that would have decided it and why
    it did not run."""
    return Contrast(
        title, claim, why, f"{test}; not run ({why}), so no smallest detectable effect: inconclusive.", "inconclusive"
    )


# ---------------------------------------------------------------- the contrasts

ENCODER = "Forward process: learned one-step encoder vs. fixed multi-step noising"


def contrast_encoder(timing: PairedTiming, vae_parameters: int, diffusion_passes: int) -> Contrast:
    """Encoding an image: one learned pass against many passes of DDIM inversion."""
    e = ratio_effect("diffusion / VAE encoding time", timing)
    return judged(
        ENCODER,
        "The VAE encodes with one pass of a learned network; diffusion's forward process has no parameters, "
        "and mapping an image to its latent x_T deterministically (DDIM inversion) takes many network passes.",
        f"VAE encoder: {vae_parameters:,} learned parameters, 1 pass; diffusion: 0 parameters, DDIM inversion with "
        f"{diffusion_passes} network passes. Time ratio (diffusion / VAE, alternating repeats): {show(e)}.",
        [e],
        figure="reconstructions",
    )


BOTTLENECK = "Latent: a bottleneck vs. same-size latents with information destroyed gradually"


def crossing(steps: Sequence[int], values: Sequence[float], level: float) -> float:
    """The first step (linearly interpolated) at which a falling curve goes below `level`; the last step if never."""
    for (s0, v0), (s1, v1) in zip(zip(steps, values), zip(steps[1:], values[1:])):
        if v1 < level <= v0:
            return s0 + (v0 - level) / (v0 - v1) * (s1 - s0)
    return float(steps[0]) if len(values) and values[0] < level else float(steps[-1])


def information_span(curve: InformationCurve, values: Sequence[float] | None = None) -> float:
    """Steps over which I(x_0; x_t) falls from 90% to 10% of log N."""
    values = curve.nats if values is None else values
    return crossing(curve.steps, values, 0.1 * curve.max_nats) - crossing(curve.steps, values, 0.9 * curve.max_nats)


def span_effect(curve: InformationCurve, replicates: int = 200, seed: int = 0) -> Effect:
    """The 90%→10% span in steps, with a parametric bootstrap over each point's Monte-Carlo error; null 1 step."""
    rng = np.random.default_rng(seed)
    nats, se = np.asarray(curve.nats), np.nan_to_num(np.asarray(curve.stderr_nats))
    reps = [information_span(curve, nats + se * rng.standard_normal(len(nats))) for _ in range(replicates)]
    return bootstrap_effect(
        "steps over which I(x_0; x_t) falls from 90% to 10%",
        information_span(curve),
        reps,
        "each point's Monte-Carlo error (parametric)",
        1,
        null=1.0,
    )


def contrast_bottleneck(
    forward: InformationCurve, code: InformationCurve | None, latent_dims: int, dims: int
) -> Contrast:
    """I(x_0; x_t) of the forward process along t against the VAE's one-step code I(x; z)."""
    e = span_effect(forward)
    code_txt = (
        f"VAE: {latent_dims} latent dimensions for D = {dims}, I(x; z) = {code.nats[0]:.2f} ± "
        f"{Z95 * code.stderr_nats[0]:.2f} nats of log N = {code.max_nats:.2f}, reached in one encoder pass"
        if code
        else f"VAE: {latent_dims} latent dimensions for D = {dims}"
    )
    half = next((s for s, v in zip(forward.steps, forward.nats) if v < 0.5 * forward.max_nats), forward.steps[-1])
    return judged(
        BOTTLENECK,
        "The VAE squeezes x through a low-dimensional z in one step; diffusion's latents x_t have x's size and "
        "lose their information about x_0 a little at every step.",
        f"{code_txt}. Forward process on {forward.n_images} training images (empirical distribution, "
        f"{forward.draws} Monte-Carlo draws per point, no model): I(x_0; x_t) falls from {forward.nats[0]:.2f} "
        f"nats at step {forward.steps[0]} to half of log N by step {half} and to {forward.nats[-1]:.2f} at step "
        f"{forward.steps[-1]}; the fall from 90% to 10% spans {show(e)} steps.",
        [e],
        figure="information_curves",
    )


SPEED = "Decoder speed: one pass vs. a chain of small steps"


def contrast_speed(timing: PairedTiming, nfe: int) -> Contrast:
    """One decoder pass against NFE network passes, timed alternately."""
    e = ratio_effect(f"diffusion (NFE {nfe}) / VAE sampling time", timing)
    return judged(
        SPEED,
        "The VAE samples with one decoder pass; diffusion needs one network pass per step.",
        f"Sampling time ratio, diffusion at NFE {nfe} over the VAE's one pass, same batch, alternating "
        f"repeats (load average {timing.load_average}): {show(e)}×.",
        [e],
        figure="frontier",
    )


SHARPNESS = "Samples: blurry vs. sharp"


Pick = Callable[[SampleFigures], Resampled | None]


def floor_text(floors: Floors | None, pick: Pick, digits: int = 2) -> str:
    """'real held-out X, blurred (σ) Y' for the figure `pick` reads."""
    real, blurred = (None, None) if floors is None else (pick(floors.real), pick(floors.blurred))
    if floors is None or real is None or blurred is None:
        return ""
    return (
        f" Floors: real held-out {floors.real_source} {real.value:.{digits}f}, test images "
        f"blurred by σ = {floors.blur_sigma:g} px {blurred.value:.{digits}f}."
    )


def contrast_sharpness(vae: SampleFigures, diffusion: SampleFigures, floors: Floors | None = None) -> Contrast:
    """Sharpness judged as closeness to the data's own (a ratio near 1), guarded by sample quality."""
    value, reps = difference(vae.laplacian_ratio, diffusion.laplacian_ratio, distance_from_one)
    e = bootstrap_effect("|log ratio| VAE − diffusion (Laplacian variance × test set)", value, reps, "samples")
    effects = [e]
    if vae.fd is not None and diffusion.fd is not None:
        effects.append(
            bootstrap_effect("Fréchet distance VAE − diffusion (guard)", *difference(vae.fd, diffusion.fd), "samples")
        )
    return judged(
        SHARPNESS,
        "The VAE's decoder mean averages over everything z leaves open, so its samples are blurry; diffusion's "
        "chain of small Gaussian steps commits to detail, so its samples are as sharp as real images.",
        f"Laplacian variance × test set: VAE {vae.laplacian_ratio.value:.2f}, diffusion "
        f"{diffusion.laplacian_ratio.value:.2f}; high-frequency share × test set: VAE "
        f"{vae.high_frequency_ratio.value:.2f}, diffusion {diffusion.high_frequency_ratio.value:.2f}."
        f"{floor_text(floors, lambda f: f.laplacian_ratio)} Closer to 1 is closer to the data's own sharpness (more is "
        f"noise, not detail); the effect is how much closer diffusion is: {show(e)}.",
        effects,
        "guarded",
        figure="steps_sharpness",
    )


QUALITY = "Sample quality"


def contrast_quality(vae: SampleFigures, diffusion: SampleFigures, floors: Floors | None = None) -> Contrast:
    """Fréchet distance of samples to the test set, bootstrapped."""
    if vae.fd is None or diffusion.fd is None:
        raise ValueError("the quality contrast needs the Fréchet distance of both models' samples")
    e = bootstrap_effect("Fréchet distance VAE − diffusion", *difference(vae.fd, diffusion.fd), "samples")
    kid = (
        f" KID: VAE {vae.kid.value:.4f}, diffusion {diffusion.kid.value:.4f}."
        if vae.kid is not None and diffusion.kid is not None
        else ""
    )
    pr = "".join(
        f" {name} (bootstrap 95%, not part of the rule): VAE {show_figure(a)}, diffusion {show_figure(b)}."
        for name, a, b in (
            ("Precision", vae.precision, diffusion.precision),
            ("Recall", vae.recall, diffusion.recall),
        )
        if a is not None and b is not None
    )
    return judged(
        QUALITY,
        "Diffusion's samples are closer to the data than the VAE's.",
        f"Fréchet distance: VAE {vae.fd.value:.2f}, diffusion {diffusion.fd.value:.2f}; difference "
        f"{show(e)}.{kid}{pr}{floor_text(floors, lambda f: f.fd)}",
        [e],
        figure="steps_fd",
    )


STEPS = "Why diffusion is sharp: one leap to a posterior mean vs. many small Gaussian steps"


def contrast_steps(points: Sequence[StepsPoint], sampler: str = "ancestral") -> Contrast:
    """Sharpness (closeness to the data's) of diffusion's samples at 1 step against the most steps swept."""
    claim = (
        "With one step a sampler returns x̂_0 = E[x_0 | x_T], a single leap to a posterior mean like the "
        "VAE's decoder, and is blurry; many small Gaussian steps are what make diffusion's samples sharp."
    )
    chain = sorted((p for p in points if p.sampler == sampler), key=lambda p: p.steps)
    if len(chain) < 2 or chain[0].steps != 1:
        return no_evidence(
            STEPS,
            claim,
            f"no {sampler} sweep from 1 step to many in these runs",
            "|log Laplacian-variance ratio| at 1 step − at the most steps, percentile bootstrap over "
            "samples, claimed > 0",
        )
    one, many = chain[0], chain[-1]
    value, reps = difference(one.figures.laplacian_ratio, many.figures.laplacian_ratio, distance_from_one)
    e = bootstrap_effect(
        f"|log ratio| at 1 step − at {many.steps} steps (Laplacian variance × test set)", value, reps, "samples"
    )
    effects = [e]
    if one.figures.fd is not None and many.figures.fd is not None:
        effects.append(
            bootstrap_effect(
                f"Fréchet distance at 1 step − at {many.steps} (guard)",
                *difference(one.figures.fd, many.figures.fd),
                "samples",
            )
        )
    curve = ", ".join(f"{p.steps}: {p.figures.laplacian_ratio.value:.2f}" for p in chain)
    vae = next((p for p in points if p.sampler == "decoder"), None)
    vae_txt = f" VAE (1 pass): {vae.figures.laplacian_ratio.value:.2f}." if vae else ""
    return judged(
        STEPS,
        claim,
        f"Diffusion, {sampler} sampler, Laplacian variance × test set by steps: {curve}."
        f"{vae_txt} Closeness to the data's own, 1 step against {many.steps}: {show(e)}.",
        effects,
        "guarded",
        figure="steps_sharpness",
    )


TUG_BLUR = "The tug-of-war, prior side: a heavy KL weight (high β) gives blurry samples"
TUG_DISJOINT = "The tug-of-war, reconstruction side: a light KL weight (low β) gives a disjointed latent space"


def sweep_text(points: Sequence[SweepPoint]) -> str:
    """Rate, distortion, sample FD and sharpness of each β."""

    def fig(p: SweepPoint, pick: Pick) -> str:
        found = None if p.sample_figures is None else pick(p.sample_figures)
        return "–" if found is None else f"{found.value:.2f}"

    return "; ".join(
        f"β={p.beta:g}: rate {p.rate_bpd:.3f} bits/dim, RMSE {p.distortion_rmse:.1f}, sample FD "
        f"{fig(p, lambda f: f.fd)}, sharpness {fig(p, lambda f: f.laplacian_ratio)}, interpolation max/mean step "
        f"{p.interpolation_max_step_ratio:.2f}"
        for p in points
    )


def contrast_tug_blur(sweep: Sequence[SweepPoint]) -> Contrast:
    """log sharpness ratio of samples at the lowest β minus at the highest."""
    claim = (
        "Weighting the KL (prior) term heavily squeezes z towards N(0, I), so the decoder averages over more "
        "and its samples blur."
    )
    points = sorted((p for p in sweep if p.sample_figures is not None), key=lambda p: p.beta)
    if len(points) < 2:
        return no_evidence(
            TUG_BLUR,
            claim,
            "needs sample sharpness of VAEs at two or more β",
            "log sharpness ratio at the lowest β − at the highest, percentile bootstrap over samples, claimed > 0",
        )
    low, high = points[0].sample_figures, points[-1].sample_figures
    assert low is not None and high is not None  # kept above
    e = bootstrap_effect(
        f"log sharpness ratio at β={points[0].beta:g} − at β={points[-1].beta:g}",
        *difference(low.laplacian_ratio, high.laplacian_ratio, log_ratio),
        "samples",
    )
    return judged(TUG_BLUR, claim, f"{sweep_text(points)}. Effect: {show(e)}.", [e], figure="beta_sweep")


def sample_fd(p: SweepPoint) -> Resampled | None:
    """The Fréchet distance of a sweep VAE's prior samples, where measured."""
    return None if p.sample_figures is None else p.sample_figures.fd


def reconstruction_fd(p: SweepPoint) -> Resampled | None:
    """The Fréchet distance of a sweep VAE's reconstructions of held-out images, where measured."""
    return None if p.reconstruction_figures is None else p.reconstruction_figures.fd


def contrast_tug_disjoint(sweep: Sequence[SweepPoint]) -> Contrast:
    """At the lowest β (< 1): FD of prior samples minus FD of reconstructions of held-out images."""
    claim = (
        "Weighting reconstruction heavily (β < 1) lets q(z|x) spread codes where the prior N(0, I) puts "
        "little mass: a disjointed latent space whose prior samples fall off the data, although "
        "reconstructions stay close."
    )
    points = sorted(
        ((p.beta, s, r) for p in sweep if (s := sample_fd(p)) is not None and (r := reconstruction_fd(p)) is not None),
        key=lambda found: found[0],
    )
    if not points or points[0][0] >= 1:
        return no_evidence(
            TUG_DISJOINT,
            claim,
            "needs a VAE with β < 1 and the FD of its samples and reconstructions",
            "FD of prior samples − FD of reconstructions at the lowest β, percentile bootstrap over "
            "samples, claimed > 0",
        )
    low, low_samples, low_reconstructions = points[0]
    e = bootstrap_effect(
        f"FD of prior samples − FD of reconstructions at β={low:g}",
        *difference(low_samples, low_reconstructions),
        "samples",
    )
    others = "; ".join(f"β={beta:g}: samples {s.value:.2f}, reconstructions {r.value:.2f}" for beta, s, r in points)
    return judged(
        TUG_DISJOINT,
        claim,
        f"Fréchet distance of prior samples and of reconstructions: {others}. Effect at β={low:g}: {show(e)}.",
        [e],
        figure="beta_sweep",
    )


LIKELIHOOD = "Likelihood: the same bound, on held-out data"


def contrast_likelihood(vae: BoundSummary, diffusion: BoundSummary) -> Contrast:
    """Paired per-image difference of the two bounds on the same test images."""
    n = min(len(vae.per_example_bpd), len(diffusion.per_example_bpd))
    e = paired_effect(
        "−ELBO bits/dim VAE − diffusion", vae.per_example_bpd[:n], diffusion.per_example_bpd[:n], "test images"
    )
    return judged(
        LIKELIHOOD,
        "Both optimise the same kind of bound; with enough steps diffusion's is the tighter (VDM, iDDPM).",
        f"VAE {vae.bpd.total:.3f} {plus_minus(vae.bpd.ci95, vae.n, 3)} bits/dim ({vae.estimator}), diffusion "
        f"{diffusion.bpd.total:.3f} {plus_minus(diffusion.bpd.ci95, diffusion.n, 3)} bits/dim ({diffusion.estimator}); "
        "paired "
        f"difference on the same {n} images: {show(e)}.",
        [e],
        figure="bound_terms",
    )


OBJECTIVE = "The ε-objective is the ELBO with its weights dropped"


def contrast_objective(simple: Measurement, weighted: Measurement, weighted_name: str) -> Contrast:
    """Two diffusion models trained alike but for the weighting: what L_simple costs in bits/dim and buys in FD."""
    n = min(len(simple.bounded.per_example_bpd), len(weighted.bounded.per_example_bpd))
    cost = paired_effect(
        "bits/dim L_simple − ELBO-weighted",
        simple.bounded.per_example_bpd[:n],
        weighted.bounded.per_example_bpd[:n],
        "test images",
    )
    effects = [cost]
    fd_simple = None if simple.samples is None else simple.samples.fd
    fd_weighted = None if weighted.samples is None else weighted.samples.fd
    fd_txt = ""
    if fd_simple is not None and fd_weighted is not None:
        effects.append(
            bootstrap_effect(
                "Fréchet distance ELBO-weighted − L_simple", *difference(fd_weighted, fd_simple), "samples"
            )
        )
        fd_txt = (
            f"; sample FD: L_simple {fd_simple.value:.2f}, ELBO-weighted {fd_weighted.value:.2f}, difference "
            f"{show(effects[1])}"
        )
    return judged(
        OBJECTIVE,
        "The diffusion ELBO is a weighted sum of ε-prediction errors; dropping the weights (L_simple) "
        "costs likelihood and buys sample quality.",
        f"Same budget, same network: L_simple ({simple.objective}) {simple.bounded.bpd.total:.3f} bits/dim, "
        f"ELBO-weighted ({weighted_name}) {weighted.bounded.bpd.total:.3f} bits/dim; cost of dropping "
        f"the weights {show(cost)} bits/dim{fd_txt}.",
        effects,
        figure="bound_terms",
    )


INTERPOLATION = "Interpolation: a VAE's latent space vs. diffusion's inverted noise"


def contrast_interpolation(paths: dict[str, PathStats], ends: tuple[str, str]) -> Contrast:
    """Paired over the same image pairs of the two ends (learned, fixed): midpoint recognisability (classifier
    confidence) and evenness."""
    claim = "VAE latent spaces are great for interpolating between concepts: the midpoints are recognisable."
    if not set(ends) <= set(paths):
        return no_evidence(
            INTERPOLATION,
            claim,
            "needs interpolations of the VAE and of diffusion",
            "classifier confidence on interior frames, VAE − diffusion, paired t-interval over image "
            "pairs, claimed > 0",
        )
    v, d = (paths[name] for name in ends)
    conf = paired_effect(
        "classifier confidence on interior frames, VAE − diffusion",
        v.interior_confidence,
        d.interior_confidence,
        "image pairs",
    )
    even = paired_effect(
        "largest step / mean step, diffusion − VAE (guard)", d.max_step_ratio, v.max_step_ratio, "image pairs"
    )
    rows = "; ".join(
        f"{k}: confidence {np.mean(p.interior_confidence):.2f} inside, {np.mean(p.end_confidence):.2f} "
        f"at the ends, mean step {np.mean(p.step_mean):.2f}, max/mean {np.mean(p.max_step_ratio):.2f}"
        for k, p in ((name, paths[name]) for name in ends)
    )
    return judged(
        INTERPOLATION,
        claim,
        f"{len(v.step_mean)} pairs of test images, {v.frames} frames: {rows}. Effect: {show(conf)}.",
        [conf, even],
        "guarded",
        figure="interpolation",
    )


LATENT = "Merged: latent diffusion"


def contrast_latent(
    latent: Measurement, timing: PairedTiming | None, dims: int, latent_dims: int, nfe: int
) -> Contrast:
    """Latent diffusion's bound against its own autoencoder's (paired), and its per-step cost against pixel
    diffusion's at equal NFE."""
    own, ae = latent.bounded, latent.components["autoencoder"]
    n = min(len(own.per_example_bpd), len(ae.per_example_bpd))
    tighter = paired_effect(
        "bits/dim autoencoder ELBO − latent diffusion", ae.per_example_bpd[:n], own.per_example_bpd[:n], "test images"
    )
    effects = [tighter]
    ratio = dims / latent_dims
    speed_txt = ""
    if timing is not None:
        faster = ratio_effect(f"pixel / latent diffusion sampling time at NFE {nfe}", timing)
        effects.append(faster)
        small = faster.low <= 1.0
        speed_txt = (
            f" Per-step cost, pixel over latent diffusion (DDIM, NFE {nfe}, alternating repeats): "
            f"{show(faster)}×."
            + (
                f" At a pixel-to-latent dimension ratio of {ratio:.0f}, these data are "
                "too small for the latent model's speed advantage to appear: both "
                "networks are cheap here."
                if small
                else ""
            )
        )
    return judged(
        LATENT,
        "Modelling a VAE's latents with a diffusion model keeps the autoencoder's fast decoder and replaces its "
        "N(0, I) prior by a far better one: a tighter bound than the VAE's own, and cheaper sampling steps than "
        "diffusion in pixel space.",
        f"D = {dims} pixel values, {latent_dims} latent dimensions (ratio {ratio:.1f}). Same frozen autoencoder: "
        f"its own ELBO {ae.bpd.total:.3f} bits/dim, with the latent diffusion prior {own.bpd.total:.3f}; paired "
        f"difference {show(tighter)}.{speed_txt}",
        effects,
        figure="frontier",
    )


# ---------------------------------------------------------------- one seed's evidence, and several seeds


def sweep_point(run: RunResult, reconstruction_figures: SampleFigures | None = None) -> SweepPoint:
    """A trained VAE on the rate–distortion axes, at the β its run was trained with, with its measured sample
    figures and paths, and the figures of its reconstructions of held-out images where measured."""
    m = run.measurement
    latent = None if m.information is None else m.information.latent
    if latent is None:
        raise ValueError(f"{m.kind}: a β-sweep point needs the rate of a learned latent (the information part)")
    paths = m.interpolation
    return SweepPoint(
        beta=run.beta(),
        rate_bpd=latent.rate_bpd,
        distortion_rmse=latent.distortion_rmse,
        budget_seconds=run.train_seconds,
        sample_figures=m.samples,
        reconstruction_figures=reconstruction_figures,
        interpolation_step_mean=float(np.mean(paths.step_mean)) if paths else math.nan,
        interpolation_max_step_ratio=float(np.mean(paths.max_step_ratio)) if paths else math.nan,
    )


@dataclass(frozen=True)
class Evidence:
    """What one seed's comparison measured, as the contrasts read it (absent parts: None or empty)."""

    models: dict[str, Measurement]
    dims: int
    nfe: int
    sweep: tuple[SweepPoint, ...] = ()
    floors: Floors | None = None
    forward_information: InformationCurve | None = None
    code_information: InformationCurve | None = None
    steps: tuple[StepsPoint, ...] = ()
    paths: dict[str, PathStats] | None = None
    timings: dict[str, PairedTiming] | None = None
    objective: tuple[Measurement, Measurement, str] | None = None  # (L_simple, ELBO-weighted, its name)
    ends: tuple[str, str] | None = None  # the learned one-step end and the fixed many-step end (`design` "ends")
    merged: tuple[str, str] | None = None  # the fixed end and the merged model (`design` "merged-fixed")
    objective_pair: tuple[str, str] | None = None  # the ELBO-weighted and the L_simple model (`design` "objective")


def judge(ev: Evidence) -> tuple[Contrast, ...]:
    """Every contrast whose measurements the evidence holds, each naming its factor and pair: those of the two
    ends on their pair, the steps sweep within the fixed end, the β-sweep, the ε-objective pair's, and the merged
    model's against the fixed end."""
    m, timings, out = ev.models, ev.timings or {}, []
    if ev.ends is not None:
        vae, dif = (m[name] for name in ev.ends)
        ends = []
        if "encoder" in timings:
            ends.append(contrast_encoder(timings["encoder"], vae.encoder_parameters or 0, dif.encode_passes or 0))
        if ev.forward_information is not None and vae.information and vae.information.latent:
            ends.append(
                contrast_bottleneck(
                    ev.forward_information, ev.code_information, vae.information.latent.latent_dims, ev.dims
                )
            )
        if "decoder" in timings:
            ends.append(contrast_speed(timings["decoder"], ev.nfe))
        if vae.samples is not None and dif.samples is not None:
            ends.append(contrast_sharpness(vae.samples, dif.samples, ev.floors))
            if vae.samples.fd is not None and dif.samples.fd is not None:
                ends.append(contrast_quality(vae.samples, dif.samples, ev.floors))
        out += [replace(c, factor="ends", pair=ev.ends) for c in ends]
        if ev.steps:
            out.append(replace(contrast_steps(ev.steps), factor="steps", pair=ev.ends[1:]))
        if len(ev.sweep) >= 2:
            out += [
                replace(c, factor="objective") for c in (contrast_tug_blur(ev.sweep), contrast_tug_disjoint(ev.sweep))
            ]
        if vae.bound and dif.bound:
            out.append(replace(contrast_likelihood(vae.bound, dif.bound), factor="ends", pair=ev.ends))
        if ev.paths:
            out.append(replace(contrast_interpolation(ev.paths, ev.ends), factor="ends", pair=ev.ends))
    if ev.objective is not None:
        out.append(replace(contrast_objective(*ev.objective), factor="objective", pair=ev.objective_pair or ()))
    if ev.merged is not None and m[ev.merged[1]].bound and "autoencoder" in m[ev.merged[1]].components:
        merged = m[ev.merged[1]]
        latent = merged.information.latent if merged.information else None
        contrast = contrast_latent(
            merged, timings.get("latent"), ev.dims, latent.latent_dims if latent else ev.dims, ev.nfe
        )
        out.append(replace(contrast, factor="merged", pair=ev.merged))
    return tuple(out)


def fold_effect(effects: Sequence[Effect]) -> Effect:
    """One effect from several seeds: the mean, with a normal interval whose variance adds the seed-to-seed
    spread to the mean within-seed one, both over the number of seeds; per-seed tests named."""
    values = np.array([e.value for e in effects], np.float64)
    within = np.array([((e.high - e.low) / (2 * Z95)) ** 2 for e in effects], np.float64)
    se = math.sqrt((np.nanmean(within) + values.var(ddof=1)) / len(values))
    mean = float(values.mean())
    first = effects[0]
    return Effect(
        first.name,
        mean,
        mean - Z95 * se,
        mean + Z95 * se,
        f"{first.test}, per seed; folded over {len(values)} seeds (seed-to-seed variance added)",
        first.null,
        first.direction,
        Z95 * se,
    )


def fold_seeds(per_seed: Sequence[tuple[Contrast, ...]]) -> tuple[Contrast, ...]:
    """The contrasts of several seeds' runs as one: each effect folded (`fold_effect`), the verdict decided
    again by the contrast's own rule, the per-seed values of its first effect kept."""
    if len(per_seed) == 1:
        return tuple(per_seed[0])
    folded = []
    for group in zip(*per_seed):
        first = group[0]
        if first.effect is None or any(c.title != first.title or c.effect is None for c in group):
            folded.append(first)
            continue
        how = first.combine
        effects = [fold_effect(list(es)) for es in zip(*(c.effects for c in group))]
        per = tuple(c.effect.value for c in group)
        folded.append(
            replace(
                first,
                verdict=combine(effects, how),
                per_seed=per,
                rule=rule_text(effects, how),
                measured=f"{first.measured} [{len(per_seed)} seeds; first effect per seed: "
                + ", ".join(f"{v:.3g}" for v in per)
                + f"; folded: {show(effects[0])}.]",
                effects=tuple(effects),
            )
        )
    return tuple(folded)
