"""Typed results shared by models, `eval`, `compare` and `report`: frozen dataclasses with `to_json` and
`from_json`.

No layer indexes another's nested dicts by string: a renamed field fails where it is read, at once; a saved
result is read back into the same records (`Record.from_json`, driven by the dataclass field types).
This module sits at the bottom of the package (it imports only `bounds`), so a model's own
`information` hook can return these records.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typing.Self is Python ≥ 3.11
    from typing_extensions import Self

from elbolab.bounds import Bound, json_ready, mean_ci95, nats_to_bpd


class Record:
    """A frozen result record: `to_json` gives plain JSON-ready data (NaN → None), `from_json` reads it back."""

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON-ready data, NaN and ±inf as None."""
        return json_ready(_plain(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record `to_json` wrote: every field rebuilt as its declared type (None → NaN for a float)."""
        return typing.cast("Self", revive(data, cls, cls.__name__))

    @classmethod
    def type_names(cls) -> dict[str, Any]:
        """Names the field annotations use beyond their module's own (for records of a higher layer)."""
        return {}

    @classmethod
    def json_types(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Field types that depend on the saved data itself (e.g. a model config by the model's kind)."""
        return {}


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _fields(cls: type) -> dict[str, Any]:
    """A dataclass's field types, resolved (with the names its `type_names` adds)."""
    extra = cls.type_names() if issubclass(cls, Record) else {}
    return typing.get_type_hints(cls, localns=extra)


def _short(value: Any) -> str:
    """A value as an error message shows it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def revive(value: Any, annotation: Any, key: str) -> Any:
    """JSON data as the declared type `annotation`: dataclasses field by field, tuples, dicts, optionals, numbers;
    a ValueError naming `key` where the data do not fit."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for arg in options[:-1]:
            try:
                return revive(value, arg, key)
            except (TypeError, ValueError):
                continue
        return revive(value, options[-1], key)  # the last option's error names what did not fit
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping for {annotation.__name__}, got {_short(value)}")
        hints = {**_fields(annotation), **(annotation.json_types(value) if issubclass(annotation, Record) else {})}
        fields = dataclasses.fields(annotation)
        unknown = set(value) - {f.name for f in fields}
        if unknown:
            raise ValueError(f"{key}: unknown fields {sorted(unknown)} for {annotation.__name__}")
        init = {f.name for f in fields if f.init}  # the others are derived again by the record itself
        return annotation(**{k: revive(v, hints[k], f"{key}.{k}") for k, v in value.items() if k in init})
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {_short(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(revive(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        return tuple(revive(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping, got {_short(value)}")
        inner = args[1] if args else Any
        return {k: revive(v, inner, f"{key}.{k}") for k, v in value.items()}
    if annotation is float:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {_short(value)}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {_short(value)}")
        return value
    if annotation in (bool, str) and not isinstance(value, annotation):
        raise ValueError(f"{key}: expected {annotation.__name__}, got {_short(value)}")
    return value


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


@dataclass(frozen=True)
class SampleFigures(Record):
    """Every figure of one sample set against one reference set, each bootstrapped with the same resampling
    indices: sharpness (Laplacian variance and high-frequency share, each over the reference's, 1 = as sharp as
    the data) and, where a feature network measured them, Fréchet distance, KID (the unbiased MMD² of the full
    sets) and k-NN precision and recall; None where not measured."""

    n: int
    n_reference: int
    laplacian_ratio: Resampled
    high_frequency_ratio: Resampled
    fd: Resampled | None = None
    kid: Resampled | None = None
    precision: Resampled | None = None
    recall: Resampled | None = None
    feature_net: str | None = None  # the feature network of fd, kid, precision and recall


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
class LevelRate(Record):
    """One level z_l of a hierarchical latent: its rate E_q[KL(q(z_l|z_>l, x)‖p(z_l|z_>l))] (its share of the
    bound's KL) and its active units (Cov_x E_q[z_l] > threshold, the levels above at their posterior means)."""

    level: int
    rate_nats: float
    rate_ci95_nats: float
    rate_bpd: float
    latent_dims: int
    active_units: int


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
    """What a model's `information` hook reports about its own latent: a learned code, a chain along t, or both;
    for a hierarchy, `latent` is all its levels together and `levels` each one, top level first."""

    latent: LatentRate | None = None
    chain: ChainRateDistortion | None = None
    levels: tuple[LevelRate, ...] = ()


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
class Power(Record):
    """What a design could detect for one effect: the smallest effect it detects with 80% power at the 5% level
    ((z_0.975 + z_0.8) × its standard error), and, for an inconclusive verdict, the seeds (`--seeds`) at which
    an effect of the size measured would be detected with 80% power, the standard error taken to shrink as
    1/√seeds; None where that is more than `MAX_SEEDS` or the effect measured is nil. With one seed the
    interval holds no seed-to-seed spread, so the count is a lower bound."""

    seeds: int  # the seeds the effect was measured over
    detectable: float
    seeds_needed: int | None = None


#: how a contrast's effects make its verdict: "all" (supported if every effect is, not supported if any is
#: not, else inconclusive); "guarded" (the first effect's verdict, inconclusive if the second, a guard, is
#: not supported)
COMBINE = ("all", "guarded")


@dataclass(frozen=True)
class Contrast(Record):
    """One contrast between the models: the claim, what was measured, the rule applied and its verdict;
    the effects the verdict rests on (each with its interval; the first is the contrast's effect) and how they
    combine (`COMBINE`); the figure that shows it; the factor it isolates (or the composite it crosses, e.g. the
    two ends) and the models it contrasts, by name (`experiments.design`)."""

    title: str
    claim: str
    measured: str
    rule: str
    verdict: str
    effects: tuple[Effect, ...] = ()
    combine: str = "all"
    figure: str | None = None  # the name of the figure or image grid that shows it
    per_seed: tuple[float, ...] = ()  # the effect in each seed's run, where several seeds ran
    factor: str = ""  # the design factor the contrast isolates, or the composite it crosses ("ends", "merged")
    pair: tuple[str, ...] = ()  # the models it contrasts, a then b (one name: within one model)
    power: Power | None = None  # what the design could detect, and the seeds an inconclusive verdict would need

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"a verdict is one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if self.combine not in COMBINE:
            raise ValueError(f"effects combine by one of {', '.join(COMBINE)}, got {self.combine!r}")

    @property
    def effect(self) -> Effect | None:
        """The effect the verdict rests on first (None: the contrast could not be measured)."""
        return self.effects[0] if self.effects else None


@dataclass(frozen=True)
class SweepPoint(Record):
    """A VAE of the β-sweep on the rate–distortion axes, with its samples' and reconstructions' figures."""

    beta: float
    rate_bpd: float
    distortion_rmse: float
    budget_seconds: float = float("nan")
    sample_figures: SampleFigures | None = None  # prior samples
    reconstruction_figures: SampleFigures | None = None  # held-out images
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


@dataclass(frozen=True)
class Machine(Record):
    """Where a comparison ran: platform, processors, torch and its threads, the accelerator (`machine_info`)."""

    platform: str
    processor: str
    cpu_count: int | None
    torch: str
    torch_threads: int
    python: str
    date: str
    load_average_1_5_15_min: tuple[float, ...]
    cuda_device: str | None = None


@dataclass(frozen=True)
class FeatureNet(Record):
    """The feature network of the sample figures, and why Inception's was not used (None: it was)."""

    name: str
    inception_unavailable_because: str | None = None
