"""Typed results shared by models, `eval`, `compare` and `report`: frozen dataclasses with `to_json`.

No layer indexes another's nested dicts by string: a renamed field fails where it is read, at once.
This module sits at the bottom of the package (it imports only `bounds`), so a model's own
`information` hook can return these records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from elbolab.bounds import Bound, json_ready, mean_ci95, nats_to_bpd


class Record:
    """A frozen result record: `to_json` gives plain JSON-ready data (NaN → None)."""

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON-ready data, NaN and ±inf as None."""
        return json_ready(_plain(self))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------- the bound


@dataclass(frozen=True)
class Figure(Record):
    """A mean with the half-width of its 95% interval."""

    mean: float
    ci95: float


@dataclass(frozen=True)
class UnitSummary(Record):
    """The bound in one unit (nats per image or bits per dimension): total and terms, each with its 95% interval."""

    total: float
    ci95: float
    terms: dict[str, float]
    terms_ci95: dict[str, float]


@dataclass(frozen=True)
class BoundSummary(Record):
    """A test-set bound: nats and bits/dim, how it was estimated, on how many images, at what cost."""

    nats: UnitSummary
    bpd: UnitSummary
    discrete: bool
    n: int
    estimator: str
    seconds: float = float("nan")
    mc_stderr_nats: float | None = None  # mean Monte-Carlo standard error of one example's estimate
    mean_stderr_bpd: float | None = None  # Monte-Carlo standard error of the mean over these n images
    per_image_sd_bpd: float = float("nan")  # spread of the per-image bound over the images
    passes_per_image: float | None = None  # network passes per image of the estimator (None: not reported)
    per_example_bpd: tuple[float, ...] = ()  # each image's bound, in order: two models pair on the same images

    @staticmethod
    def of(bound: Bound, estimator: str, seconds: float = float("nan")) -> BoundSummary:
        """Means over the examples of a `Bound`, with 95% half-widths, in both units; for a Monte-Carlo bound
        the standard error of the mean, sqrt(Σ se_i²)/n; the cost where the model reports it."""
        units = {}
        for unit, scale in (("nats", lambda t: t), ("bpd", lambda t: nats_to_bpd(t, bound.dims))):
            total, ci = mean_ci95(scale(bound.total))
            stats = {k: mean_ci95(scale(v)) for k, v in bound.terms.items()}
            units[unit] = UnitSummary(
                total, ci, {k: m for k, (m, _) in stats.items()}, {k: c for k, (_, c) in stats.items()}
            )
        stderr, passes = bound.extras.get("stderr"), bound.extras.get("passes")
        n = int(bound.total.shape[0])
        mean_se = None if stderr is None else nats_to_bpd(stderr.double().pow(2).sum().sqrt().item() / n, bound.dims)
        spread = nats_to_bpd(bound.total.double().std().item(), bound.dims) if n > 1 else float("nan")
        return BoundSummary(
            units["nats"],
            units["bpd"],
            bound.discrete,
            n,
            estimator,
            seconds,
            None if stderr is None else stderr.double().mean().item(),
            mean_se,
            spread,
            None if passes is None else passes.double().mean().item(),
            tuple(nats_to_bpd(bound.total.double(), bound.dims).tolist()),
        )


# ---------------------------------------------------------------- resampled figures


@dataclass(frozen=True)
class Resampled(Record):
    """A figure computed once on the measured sample (`value`) and on bootstrap resamples of it (`replicates`).

    Figures measured with the same seed share their resampling indices (e.g. of the reference set),
    so the replicates of two such figures pair up: their differences are a bootstrap of the difference.
    """

    value: float
    replicates: tuple[float, ...]

    def interval(self) -> tuple[float, float]:
        """The percentile bootstrap 95% interval (2.5% and 97.5% quantiles of the replicates)."""
        return percentile_interval(self.replicates)


def percentile_interval(values: Any) -> tuple[float, float]:
    """2.5% and 97.5% quantiles of `values` (linear interpolation); NaN for fewer than two finite values."""
    finite = sorted(v for v in values if math.isfinite(v))
    if len(finite) < 2:
        return math.nan, math.nan
    return _quantile(finite, 0.025), _quantile(finite, 0.975)


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


# ---------------------------------------------------------------- speed


@dataclass(frozen=True)
class SpeedRow(Record):
    """Sampling speed of one sampler at one number of network evaluations (median over repeats)."""

    sampler: str
    nfe: int
    n: int
    repeats: int
    seconds_per_call: float
    seconds_per_image: float
    images_per_second: float
    device: str
    torch_threads: int


# ---------------------------------------------------------------- information


@dataclass(frozen=True)
class LatentRate(Record):
    """A learned encoder's latent: rate KL(q(z|x)‖p(z)) (an upper bound on I(x; z)), per-dimension KL,
    active units and the distortion of the mean reconstruction (RMSE on the 0–255 scale)."""

    rate_nats: float
    rate_ci95_nats: float
    rate_bpd: float
    kl_per_dim_nats: tuple[float, ...]
    latent_dims: int
    active_units: int
    active_threshold: float
    distortion_rmse: float
    n: int


@dataclass(frozen=True)
class RatePoint(Record):
    """One point of diffusion's progressive rate–distortion curve (at step `step`, time t)."""

    step: int
    t: float
    rate_bpd: float
    distortion_rmse: float
    bits_to_recover_bpd: float
    capacity_bpd: float


@dataclass(frozen=True)
class ChainRateDistortion(Record):
    """A diffusion chain's rate–distortion along t, its exact per-step bound, and the Monte-Carlo check."""

    curve: tuple[RatePoint, ...]
    n: int
    T: int
    exact_bpd: float
    mc_minus_exact_nats: float
    mc_minus_exact_se_nats: float
    per_step_bpd: tuple[float, ...]


@dataclass(frozen=True)
class Information(Record):
    """What a model's `information` hook reports about its own latent: a learned code, a chain along t, or both."""

    latent: LatentRate | None = None
    chain: ChainRateDistortion | None = None


# ---------------------------------------------------------------- contrasts and the comparison

VERDICTS = ("supported", "not supported", "inconclusive")


@dataclass(frozen=True)
class Effect(Record):
    """An effect size with its 95% interval [low, high] and the test that produced it.

    `null` is the value of "no effect" and `direction` the side the claim predicts (+1: above the
    null, −1: below). `min_detectable` is the smallest effect the test could have detected (e.g.
    1.96 × its standard error), where known.
    """

    name: str
    value: float
    low: float
    high: float
    test: str
    null: float = 0.0
    direction: int = 1
    min_detectable: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"direction is +1 or −1, got {self.direction}")
        if self.low > self.high:
            raise ValueError(f"an interval needs low ≤ high, got [{self.low}, {self.high}]")

    def verdict(self) -> str:
        """supported: the interval excludes the null on the claimed side; not supported: on the other side;
        inconclusive: it contains the null (or the interval is not finite)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "inconclusive"
        above, below = self.low > self.null, self.high < self.null
        if (above and self.direction > 0) or (below and self.direction < 0):
            return "supported"
        if above or below:
            return "not supported"
        return "inconclusive"


@dataclass(frozen=True)
class Contrast(Record):
    """One contrast between the models: the claim, what was measured, the rule applied and its verdict;
    where the verdict rests on an effect, the effect with its interval; the figure that shows it."""

    title: str
    claim: str
    measured: str
    rule: str
    verdict: str
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    effect: Effect | None = None
    figure: str | None = None  # the name of the figure or image grid that shows it
    per_seed: tuple[float, ...] = ()  # the effect in each seed's run, where several seeds ran

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"a verdict is one of {', '.join(VERDICTS)}, got {self.verdict!r}")


@dataclass(frozen=True)
class SweepPoint(Record):
    """A VAE of the β-sweep on the rate–distortion axes, with its samples' and reconstructions' figures."""

    beta: float
    rate_bpd: float
    distortion_rmse: float
    budget_seconds: float = float("nan")
    sample_figures: dict[str, Resampled] = dataclasses.field(default_factory=dict)  # prior samples
    reconstruction_figures: dict[str, Resampled] = dataclasses.field(default_factory=dict)  # held-out images
    interpolation_step_mean: float = float("nan")  # mean neighbour distance along its latent slerps
    interpolation_max_step_ratio: float = float("nan")  # mean over paths of the largest step over the mean


@dataclass(frozen=True)
class DataInfo(Record):
    """The data set a comparison ran on."""

    name: str
    shape: tuple[int, ...]
    levels: int
    dims: int
    n_test: int
