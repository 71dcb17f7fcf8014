"""Everything measured about one trained model, through its contract, as one typed record.

`elbolab eval`, `compare` and `report` all call `measure`; each part can be switched off. It reads
the model's declared capabilities (samplers and step counts, estimators, encoding, components) and
its own `information` hook, so it reads the same way for every model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from elbolab.atomic import atomic_write_json
from elbolab.bounds import Estimator, mean_ci95, nats_to_bpd, rmse_255
from elbolab.data.base import ImageData, to_model
from elbolab.diffusion.samplers import nfe as sampler_nfe
from elbolab.errors import ConfigError, ElbolabError
from elbolab.evaluate.features import ClassifierFeatures, FeatureExtractor
from elbolab.evaluate.interpolation import PathStats, path_stats
from elbolab.evaluate.pilot_cache import finite_fit, read_pilot_fits
from elbolab.evaluate.precision import capped_draws, warn_if_imprecise
from elbolab.evaluate.resample import sample_figures
from elbolab.evaluate.speed import synchronize, time_sampling
from elbolab.model import GenerativeModel, dataset_bound
from elbolab.records import BoundSummary, Figure, Information, Record, SampleFigures, SpeedRow

#: draws chosen for a precision are a multiple of this (whole stratified replicates), at most
#: `precision.MAX_PRECISION_DRAWS`, and aim PRECISION_MARGIN × the requested standard error (the probe's variance is
#: itself an estimate)
PRECISION_ROUNDING, PRECISION_MARGIN = 4, 0.85
#: fits kept in a pilot cache (the newest); a run folder's cache file is named PILOT_CACHE_FILE
MAX_PILOT_FITS, PILOT_CACHE_FILE = 16, "pilot-fits.json"
#: part of every kept fit's key, raised whenever what a pilot pass fits changes, so that older fits are refitted
#: rather than reused (2: the discrete chain's control-variate slopes beside its proposal)
PILOT_FIT_VERSION = 2
#: the pilot pass draws from a stream seeded `seed + PILOT_SEED_OFFSET`, apart from the estimate's (`seed`), so that
#: the proposal and control-variate slopes it fits share no random bits with the draws they then weight
PILOT_SEED_OFFSET = 104_729
PARTS = ("likelihood", "speed", "quality", "sharpness", "interpolation", "information")
Log = Callable[[str], None]


@dataclass(frozen=True)
class EvalConfig:
    """What to measure and on how many images."""

    seed: int = 0
    n_eval: int | None = None  # test images for the bound (None: the whole split)
    estimator: Estimator | None = None  # how the bound is estimated (None: the model's default)
    proposal: str | None = None  # a Monte-Carlo bound's proposal over t, where the model offers it
    bpd_se: float | None = None  # a Monte-Carlo bound: draws chosen for this standard error of the mean
    pilot_n: int = 64  # training images for an importance proposal's pilot pass
    iwae_k: int = 100  # importance samples for models with an IWAE bound (0 = skip)
    iwae_n: int = 200  # test images for the IWAE bound
    n_samples: int = 256  # samples for quality and sharpness
    speed_n: int = 16  # images per timing
    nfe: tuple[int, ...] = (10, 20, 50)  # sampling steps timed (a one-pass model: 1)
    speed_samplers: tuple[str, ...] | None = None  # the samplers timed, where the model has them (None: every one)
    quality_sampler: str = "dpm-solver++"  # used where the model has it (else its default sampler)
    quality_steps: int = 50
    information_n: int | None = None  # images for the information hook (None: the model's default)
    replicates: int = 200  # bootstrap resamples of the sample figures (0: none)
    interpolation_pairs: int = 8  # pairs of test images interpolated (the first and the next this many)
    parts: tuple[str, ...] = PARTS


@dataclass(frozen=True)
class IWAESummary(Record):
    """The importance-weighted bound in bits/dim on n test images, with its 95% interval."""

    k: int
    n: int
    bpd: float
    ci95: float
    seconds: float


@dataclass(frozen=True)
class QualitySamples(Record):
    """How the samples behind quality and sharpness were drawn: `sampler` over `steps` steps, `nfe` network
    evaluations."""

    n: int
    seconds: float
    sampler: str
    steps: int

    @property
    def nfe(self) -> int:
        """Network evaluations of the sampler over its steps (`samplers.nfe`: Heun's 2k − 1)."""
        return sampler_nfe(self.sampler, self.steps)


@dataclass(frozen=True)
class ClassAccuracy(Record):
    """A conditional model's samples given each class (guidance 1: the model its bound is of), classified by the
    built-in feature net: the share of each class's samples it puts in that class, and their mean."""

    n_per_class: int
    per_class: tuple[float, ...]
    overall: float


@dataclass(frozen=True)
class ClassBounds(Record):
    """A conditional model's bound on −log p(x | y) over the test images of each class: how many were bounded
    (`n`) and their mean bits/dim with its 95% half-width (NaN for a class none of them is in); the means weighted
    by `n` are the bound's total."""

    n: tuple[int, ...]
    bpd: tuple[Figure, ...]


def class_bounds(bound: BoundSummary, labels: torch.Tensor, classes: int) -> ClassBounds:
    """Each image's bound (bits/dim, in the order the images were bounded) averaged over the images of each class."""
    per_image = torch.tensor(bound.per_example_bpd, dtype=torch.float64)
    y = labels[: len(per_image)]
    chosen = [per_image[y == k] for k in range(classes)]
    return ClassBounds(
        tuple(len(v) for v in chosen),
        tuple(Figure(*mean_ci95(v)) if len(v) else Figure(math.nan, math.nan) for v in chosen),
    )


@dataclass(frozen=True)
class Measurement(Record):
    """What `measure` found about one model; a part that was not measured is None (or empty)."""

    kind: str
    objective: str
    parameters: int
    encoder_parameters: int | None = None  # learned parameters of `encode` (None: the model has no encoder)
    encode_passes: int | None = None  # network passes per image of `encode`
    bound: BoundSummary | None = None  # a conditional model's on −log p(x | y), with the test labels
    classes: int | None = None  # K of a conditional model (None: unconditional)
    unconditional: BoundSummary | None = None  # a conditional model's bound on −log p(x), where it has one
    iwae: IWAESummary | None = None
    components: dict[str, BoundSummary] = field(default_factory=dict)  # e.g. latent diffusion's autoencoder
    speed: tuple[SpeedRow, ...] = ()
    quality_samples: QualitySamples | None = None
    samples: SampleFigures | None = None  # the quality samples' figures against the test images
    class_accuracy: ClassAccuracy | None = None  # a conditional model's samples per class, classified
    class_bounds: ClassBounds | None = None  # a conditional model's bound over the test images of each class
    reconstructions: SampleFigures | None = None  # decode(encode(x)) of test images: their sharpness
    encode_seconds_per_image: float | None = None
    reconstruction_rmse: float | None = None
    interpolation: PathStats | None = None
    information: Information | None = None

    @property
    def bounded(self) -> BoundSummary:
        """The bound, which every comparison measures; a clear error for a measurement made without it."""
        if self.bound is None:
            raise ElbolabError(f"the {self.kind} model's bound was not measured (add 'likelihood' to the parts)")
        return self.bound


@dataclass(frozen=True)
class DiffusersSource(Record):
    """Where a diffusers folder's model came from, its scheduler and settings, and its bound's cost."""

    source: str
    scheduler: str
    T: int
    parameterisation: str
    variance: str
    clip: bool
    bound_network_passes_per_image: float | None = None


@dataclass(frozen=True)
class EvalResult(Record):
    """`elbolab eval`: a model measured on one split of a data set; as JSON one object with the bound's fields
    (nats, bpd, estimator, …) at the top level beside the other measurements (DESIGN: `eval --json`)."""

    model: str
    data: str
    split: str
    dims: int
    levels: int
    measurement: Measurement
    diffusers: DiffusersSource | None = None

    def to_json(self) -> dict[str, Any]:
        """model, data, split, dims, levels, the bound's fields, the rest of the measurement, the diffusers source."""
        found = self.measurement.to_json()
        bound = found.pop("bound") or {}
        head = {"model": self.model, "data": self.data, "split": self.split, "dims": self.dims, "levels": self.levels}
        return {**head, **bound, **found, **(self.diffusers.to_json() if self.diffusers else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalResult:
        """The record `to_json` wrote: the bound's, the measurement's and the diffusers source's fields apart."""
        names = {r: {f.name for f in fields(r)} for r in (BoundSummary, Measurement, DiffusersSource)}
        part = {r: {k: v for k, v in data.items() if k in n} for r, n in names.items()}
        bound = BoundSummary.from_json(part[BoundSummary]) if part[BoundSummary] else None
        return EvalResult(
            data["model"],
            data["data"],
            data["split"],
            data["dims"],
            data["levels"],
            replace(Measurement.from_json(part[Measurement]), bound=bound),
            DiffusersSource.from_json(part[DiffusersSource]) if part[DiffusersSource] else None,
        )


def seeded_sampler(model: GenerativeModel, seed: int, **kwargs: Any) -> Callable[[int], torch.Tensor]:
    """n ↦ n samples, from a fixed seed."""
    return lambda n: model.sample(n, generator=torch.Generator(model.device).manual_seed(seed), **kwargs)


def speed_table(model: GenerativeModel, cfg: EvalConfig) -> tuple[SpeedRow, ...]:
    """Sampling speed of every sampler the model declares (those of `cfg.speed_samplers` among them; its first
    where it has none of them) at every step count it takes, each row at its NFE (`samplers.nfe`), each sampler
    after one 2-image warm-up at its fewest steps (first-call costs are the sampler's, not the NFE's)."""
    caps = model.capabilities
    rows = []
    wanted = [s for s in caps.samplers if cfg.speed_samplers is None or s in cfg.speed_samplers]
    for sampler in wanted or caps.samplers[:1]:
        counts = caps.steps_for(cfg.nfe)
        if counts:
            seeded_sampler(model, cfg.seed, sampler=sampler, steps=counts[0])(2)
        for steps in counts:
            draw = seeded_sampler(model, cfg.seed, sampler=sampler, steps=steps)
            evaluations = sampler_nfe(sampler, steps)
            timing = time_sampling(draw, cfg.speed_n, nfe=evaluations, repeats=1, warmup=0, device=model.device)
            rows.append(
                SpeedRow(
                    sampler=sampler,
                    nfe=evaluations,
                    n=timing["n"],
                    repeats=timing["repeats"],
                    seconds_per_call=timing["seconds_per_call"],
                    seconds_per_image=timing["seconds_per_image"],
                    images_per_second=timing["images_per_second"],
                    device=timing["device"],
                    torch_threads=timing["torch_threads"],
                )
            )
    return tuple(rows)


@dataclass(frozen=True)
class Pilot:
    """Training images for an estimator's pilot pass, and where what it fits is kept: `cache`, a JSON file
    (None: nowhere), under `key`, what the fit depends on beyond the estimator and the pilot (the weights)."""

    images: ImageData
    cache: Path | None = None
    key: Mapping[str, Any] = field(default_factory=dict)


def prepare_estimator(model: GenerativeModel, estimator: Estimator, pilot: Pilot, pilot_n: int, seed: int) -> bool:
    """Fit what `estimator` needs on a pilot pass over `pilot_n` of the pilot's images, or put back the fit
    kept in `pilot.cache` under the same key (then True); a new fit is added to the cache atomically."""
    key = json.loads(
        json.dumps(
            {
                **pilot.key,
                "proposal": estimator.proposal,
                "steps": estimator.steps,
                "data": pilot.images.name,
                "pilot_n": pilot_n,
                "seed": seed,
                "fit_version": PILOT_FIT_VERSION,
            }
        )
    )
    fits = read_pilot_fits(pilot.cache)
    for fit in fits:
        if fit["key"] == key and finite_fit(fit, pilot.cache):
            model.load_fitted_estimator(
                {name: torch.tensor(v, dtype=torch.float64) for name, v in fit["state"].items()}
            )
            return True
    model.prepare_estimator(
        estimator,
        pilot.images.model_range(slice(0, pilot_n)).to(model.device),
        torch.Generator(model.device).manual_seed(seed + PILOT_SEED_OFFSET),
    )
    state = {name: t.detach().cpu().double().flatten().tolist() for name, t in model.fitted_estimator().items()}
    if pilot.cache is not None and state:
        try:
            kept = [f for f in fits if f["key"] != key]  # a fit redone replaces the one it redoes
            atomic_write_json(pilot.cache, {"fits": [*kept, {"key": key, "state": state}][-MAX_PILOT_FITS:]})
        except ElbolabError:  # a run folder that cannot be written keeps no cache; the fit is used all the same
            pass
    return False


def summarize(
    model: GenerativeModel,
    test: ImageData,
    n: int | None,
    estimator: Estimator | None,
    seed: int,
    cfg: EvalConfig = EvalConfig(),
    pilot: Pilot | None = None,
    conditional: bool = True,
) -> BoundSummary:
    """The model's test-set bound, timed, with the estimator it used: `cfg.proposal` where the model offers
    it (an importance proposal fitted on `cfg.pilot_n` images of `pilot`, or kept in its cache; without a
    pilot the model fits it on the images it bounds), and with `cfg.bpd_se` as many draws as that standard
    error of the test-set mean needs. A conditional model's is on −log p(x | y) with the test labels, or with
    `conditional` False on −log p(x)."""
    torch.manual_seed(seed)
    estimator = model.check_estimator(estimator)
    if estimator.method == "mc" and cfg.proposal in model.capabilities.proposals:
        estimator = replace(estimator, proposal=cfg.proposal)
    start = time.perf_counter()
    if estimator.proposal == "importance" and pilot is not None:
        prepare_estimator(model, estimator, pilot, cfg.pilot_n, seed)
    if cfg.bpd_se is not None and estimator.method == "mc":
        estimator = draws_for_precision(model, test, n, estimator, cfg.bpd_se)
    bound = dataset_bound(model, test, n, 256, estimator, conditional=conditional)
    if cfg.bpd_se is not None and estimator.method == "mc":
        warn_if_imprecise(bound, cfg.bpd_se, estimator.samples)
    return BoundSummary.of(bound, estimator.describe(), time.perf_counter() - start)


def draws_for_precision(
    model: GenerativeModel, test: ImageData, n: int | None, estimator: Estimator, bpd_se: float, probe_n: int = 64
) -> Estimator:
    """The Monte-Carlo estimator with K draws such that the standard error of the mean over n images is
    below `bpd_se` bits/dim: K = Var_1/(n (m·se)²), Var_1 the per-draw variance seen on `probe_n` images,
    m = PRECISION_MARGIN. An estimator that reports no standard error is returned as it is."""
    n = len(test) if n is None else min(n, len(test))
    k = estimator.samples or model.capabilities.default_estimator.samples or PRECISION_ROUNDING
    probe = dataset_bound(model, test, min(n, probe_n), 256, replace(estimator, samples=k))
    if "stderr" not in probe.extras:  # an estimator without a standard error (e.g. a VAE's one-sample ELBO)
        return estimator
    per_draw = nats_to_bpd(probe.extras["stderr"].double(), probe.dims).pow(2).mean().item() * k
    draws = math.ceil(per_draw / (n * (PRECISION_MARGIN * bpd_se) ** 2) / PRECISION_ROUNDING) * PRECISION_ROUNDING
    return replace(estimator, samples=capped_draws(draws, 2 * PRECISION_ROUNDING))


#: (image, sample) pairs an IWAE bound decodes at once: 64 images × k = 100 of a latent the size of x held ~1.5 GB
IWAE_PAIRS = 1024


def iwae_summary(model: GenerativeModel, test: ImageData, cfg: EvalConfig) -> IWAESummary:
    """The IWAE bound with k = cfg.iwae_k on at most cfg.iwae_n test images."""
    n = min(cfg.n_eval or len(test), cfg.iwae_n, len(test))
    start = time.perf_counter()
    batch = max(1, IWAE_PAIRS // cfg.iwae_k)  # images × k samples through the decoder at once, bounded
    mean, ci = mean_ci95(dataset_bound(model, test, n, batch, Estimator("iwae", cfg.iwae_k)).bits_per_dim())
    return IWAESummary(cfg.iwae_k, n, mean, ci, time.perf_counter() - start)


def quality_sampling(model: GenerativeModel, cfg: EvalConfig) -> tuple[str, int]:
    """(sampler, NFE) for the quality samples: the configured one where the model has it."""
    caps = model.capabilities
    sampler = cfg.quality_sampler if cfg.quality_sampler in caps.samplers else caps.samplers[0]
    steps = caps.steps_for((cfg.quality_steps,))
    if steps:
        return sampler, steps[0]
    if caps.max_steps is None:  # steps_for keeps every NFE of a model without a maximum
        raise ConfigError(f"the {model.kind} model offers no sampling steps for {cfg.quality_steps}")
    return sampler, caps.max_steps


def class_accuracy(
    model: GenerativeModel, features: ClassifierFeatures, cfg: EvalConfig, sampler: str, steps: int, levels: int
) -> ClassAccuracy:
    """⌊n_samples / K⌋ (at least 1) samples given each of the K classes, classified by the built-in feature net."""
    classes = int(model.capabilities.classes or 0)
    per = max(1, cfg.n_samples // classes)
    y = torch.arange(classes).repeat_interleave(per)
    draw = seeded_sampler(model, cfg.seed, sampler=sampler, steps=steps, y=y.to(model.device))
    predicted = features.class_probabilities(draw(len(y)).cpu(), levels).argmax(1)
    hits = (predicted == y).double().view(classes, per).mean(1)
    return ClassAccuracy(per, tuple(hits.tolist()), float(hits.mean()))


def quality_reference(test: ImageData, n_samples: int) -> torch.Tensor:
    """The test images sample figures are measured against: at least n_samples, up to 2000."""
    return test.images[: max(n_samples, min(len(test), 2000))]


def pair_images(test: ImageData, pairs: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `pairs` test images and the next `pairs`, in the model range: the ends of every interpolation."""
    pairs = min(pairs, len(test) // 2)
    return test.model_range(slice(0, pairs)).to(device), test.model_range(slice(pairs, 2 * pairs)).to(device)


def timed_round_trip(model: GenerativeModel, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(seconds per image for `encode`, decode(encode(x)) as levels)."""
    synchronize(x.device)
    start = time.perf_counter()
    z = model.encode(x)
    synchronize(x.device)
    seconds = (time.perf_counter() - start) / len(x)
    return seconds, model.decode(z).cpu()


def measure(
    model: GenerativeModel,
    test: ImageData,
    cfg: EvalConfig,
    features: FeatureExtractor | None = None,
    log: Log = lambda _: None,
    pilot: Pilot | None = None,
) -> tuple[Measurement, dict[str, torch.Tensor | None]]:
    """The measurements named in `cfg.parts`, and the images behind them (samples, reconstructions, frames);
    `pilot`: training images for an estimator that needs a pilot pass. Each image set is featurised once
    (`sample_figures`, `path_stats`), against test images whose features are extracted once per process."""
    unknown = set(cfg.parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown evaluation parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    parts, kind, caps = set(cfg.parts), model.kind, model.capabilities
    found: dict[str, Any] = {}
    images: dict[str, torch.Tensor | None] = {"samples": None, "reconstructions": None, "interpolation": None}
    if "likelihood" in parts:
        log(f"{kind}: bound on {cfg.n_eval or len(test)} test images")
        found["bound"] = summarize(model, test, cfg.n_eval, cfg.estimator, cfg.seed, cfg, pilot)
        if caps.classes is not None:
            found["classes"] = caps.classes
            found["class_bounds"] = class_bounds(found["bound"], test.require_labels("a bound per class"), caps.classes)
            if caps.null_class:
                log(f"{kind}: unconditional bound (the null class) on {cfg.n_eval or len(test)} test images")
                found["unconditional"] = summarize(
                    model, test, cfg.n_eval, cfg.estimator, cfg.seed, cfg, pilot, conditional=False
                )
        if "iwae" in caps.estimators and cfg.iwae_k > 1:
            found["iwae"] = iwae_summary(model, test, cfg)
        found["components"] = {
            name: summarize(part, test, cfg.n_eval, None, cfg.seed) for name, part in model.components().items()
        }
    if "speed" in parts:
        log(f"{kind}: sampling speed")
        found["speed"] = speed_table(model, cfg)
    reference = quality_reference(test, cfg.n_samples)
    if parts & {"quality", "sharpness"}:
        log(f"{kind}: {cfg.n_samples} samples for quality and sharpness")
        sampler, steps = quality_sampling(model, cfg)
        start = time.perf_counter()
        samples = seeded_sampler(model, cfg.seed, sampler=sampler, steps=steps)(cfg.n_samples).cpu()
        images["samples"] = samples
        found["quality_samples"] = QualitySamples(cfg.n_samples, time.perf_counter() - start, sampler, steps)
        found["samples"] = sample_figures(
            samples,
            reference,
            test.levels,
            features if "quality" in parts else None,
            cfg.replicates,
            cfg.seed,
        )
        if caps.classes is not None and isinstance(features, ClassifierFeatures) and "quality" in parts:
            log(f"{kind}: samples of each of its {caps.classes} classes, classified")
            found["class_accuracy"] = class_accuracy(model, features, cfg, sampler, steps, test.levels)
    x = test.model_range(slice(0, min(len(test), cfg.n_samples, 64))).to(model.device)
    if caps.encoding is not None:
        found["encoder_parameters"] = caps.encoding.learned_parameters
        found["encode_passes"] = caps.encoding.network_passes
        if parts & {"speed", "sharpness", "interpolation"}:
            found["encode_seconds_per_image"], reconstructions = timed_round_trip(model, x)
            images["reconstructions"] = reconstructions
            found["reconstruction_rmse"] = rmse_255(to_model(reconstructions, test.levels), x.cpu()).mean().item()
            if "sharpness" in parts:
                found["reconstructions"] = sample_figures(
                    reconstructions, reference, test.levels, None, cfg.replicates, cfg.seed
                )
        if "interpolation" in parts and features is not None:
            log(f"{kind}: interpolation")
            x0, x1 = pair_images(test, cfg.interpolation_pairs, model.device)
            frames = model.interpolate(x0, x1, 9).cpu()
            images["interpolation"] = frames
            found["interpolation"] = path_stats(frames, test.levels, features)
    if "information" in parts:
        log(f"{kind}: information")
        generator = torch.Generator(model.device).manual_seed(cfg.seed)
        kwargs = {} if cfg.information_n is None else {"n": cfg.information_n}
        found["information"] = model.information(test, generator=generator, **kwargs)
    return Measurement(
        kind=kind, objective=model.objective, parameters=sum(p.numel() for p in model.parameters()), **found
    ), images
