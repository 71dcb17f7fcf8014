"""`elbolab compare`: every point of a design (`experiments.design`: each registered kind, and the models between
the paradigms) trained under one budget on one data set, each measured once through the same contract, every
contrast judged on its pair (`verdicts`) and every factor's effect on every outcome tabulated (`attribution`).

Every number in the results is measured here; each verdict is a rule over those numbers that
could come out either way, and states the rule it applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from elbolab.config import require
from elbolab.data import load_data
from elbolab.data.base import ImageData, to_model
from elbolab.errors import ConfigError, ElbolabError
from elbolab.evaluate.features import select_features
from elbolab.evaluate.floors import reference_floors
from elbolab.evaluate.information import InformationCurve
from elbolab.evaluate.interpolation import PathStats, path_stats
from elbolab.evaluate.resample import resampled_figures
from elbolab.evaluate.run import EvalConfig, Log, quality_reference, quality_sampling
from elbolab.evaluate.speed import PairedTiming, paired_timing
from elbolab.evaluate.steps import STEPS, StepsPoint, steps_sweep
from elbolab.experiments.attribution import PairEvidence, attribution, fold_tables
from elbolab.experiments.design import (
    DESIGNS,
    SWEEP,
    Design,
    DesignPoint,
    declared,
    design_points,
    place,
    point_config,
)
from elbolab.experiments.results import CompareResults, RunResult, SeedResult
from elbolab.experiments.runs import data_info, measure_run
from elbolab.experiments.verdicts import Evidence, fold_seeds, judge, sweep_point
from elbolab.machine import machine_info
from elbolab.model import DesignLevels, GenerativeModel
from elbolab.records import SweepPoint
from elbolab.registry import MODEL_KINDS, model_classes
from elbolab.train.api import fit_run
from elbolab.train.checkpoint import atomic_write_json
from elbolab.train.config import TrainConfig
from elbolab.train.run import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RunConfig,
    apply_overrides,
    build_model,
    load_run,
    pick_device,
    read_run_config,
)

#: the kinds compared: every registered model
KINDS = tuple(MODEL_KINDS)
#: compare's bound: where a model's Monte-Carlo bound takes it, t importance-sampled from a pilot pass and as
#: many draws as a standard error of 0.01 bits/dim on the test-set mean needs (the results name the estimator)
BOUND_PRECISION = {"proposal": "importance", "bpd_se": 0.01}


@dataclass(frozen=True)
class Preset:
    """What `compare` trains and measures, unless told otherwise, for images of one size on one kind of device."""

    budget: float  # training seconds per model
    batch_size: int  # images per optimiser step
    n_eval: int | None  # test images for the bound (None: the whole split)
    steps: tuple[int, ...]  # sampling steps of the steps sweep
    measure_seconds: float  # measurement time per seed on an idle machine (for the estimate printed first)
    lr: float = TrainConfig.lr  # every model's peak learning rate


def preset_for(side: int, device: str) -> Preset:
    """The preset for images of `side` px on `device`: digits (≤ 16 px) anywhere as measured for the README;
    larger images on a CPU with the models' CPU sizes (see each config's `sized_for`), a smaller batch for more
    steps, 2,000 test images for the bound (SE ≈ 0.01 bits/dim from the per-image spread) and a steps sweep to
    50; on a GPU the full test set and sweep. Digits train every model at a learning rate of 3e-3: over the
    ~1,000 steps of their budget it gave lower test bounds than 2e-3 on both sides (paired over the test set,
    the same steps: diffusion −0.013, −0.016 and −0.019 bits/dim at three seeds; the VAE −0.007 and +0.005 and
    latent diffusion −0.007, within their noise; 1e-3 was worse; benchmarks/results/digits_lr.json)."""
    if side <= 16:
        return Preset(budget=60.0, batch_size=128, n_eval=None, steps=STEPS, measure_seconds=70.0, lr=3e-3)
    if device.startswith("cuda"):
        return Preset(budget=60.0, batch_size=256, n_eval=None, steps=STEPS, measure_seconds=120.0)
    # measured on Fashion-MNIST on an idle 2-core CPU: 406 and 424 s of measurement after 461 s of training
    # (the budgets' 432 s plus each run's start and final evaluation): 14 min 31 s and 14 min 48 s in all
    return Preset(
        budget=120.0, batch_size=64, n_eval=2000, steps=tuple(s for s in STEPS if s <= 50), measure_seconds=450.0
    )


def compare_evaluation(**changes: Any) -> EvalConfig:
    """The evaluation `compare` runs: `EvalConfig` with `BOUND_PRECISION`, then `changes`."""
    return EvalConfig(**{**BOUND_PRECISION, **changes})


@dataclass(frozen=True)
class CompareConfig:
    """What `compare` trains, and how it measures (`evaluation`)."""

    data: str = "digits"
    data_dir: str | None = None
    budget: float | None = None  # training seconds per model (None: the preset's)
    seed: int = 0
    seeds: int = 1  # the whole experiment repeated with seeds seed, seed + 1, …
    evaluation: EvalConfig = field(default_factory=compare_evaluation)
    beta_sweep: tuple[float, ...] = (0.25, 4.0)  # extra VAEs placed on the rate–distortion axes
    sweep_budget_fraction: float = 0.15  # of `budget`, per β-sweep VAE
    objective_budget_fraction: float = 0.15  # of `budget`, per diffusion model of the ε-objective pair (0: none)
    steps: tuple[int, ...] | None = None  # sampling steps of the steps sweep (None: the preset's)
    batch_size: int | None = None  # training images per step (None: the preset's)
    lr: float | None = None  # every model's peak learning rate (None: the preset's)
    steps_replicates: int = 100  # bootstrap resamples per point of the steps sweep
    interpolation_pairs: int = 16  # test-image pairs interpolated by every model
    timing_repeats: int = 5  # alternating repeats of each paired timing
    information_images: int = 2000  # training images of the empirical distribution for I(x_0; x_t)
    information_draws: int = 256  # Monte-Carlo draws per point of the information curves
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per kind: extra --set keys
    device: str = "auto"  # where every model trains and is measured: auto | cpu | cuda[:N]
    design: str = "core"  # the models trained and the contrasts judged (`experiments.design`): core | full

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        require("--design", self.design, self.design in DESIGNS, f"one of {', '.join(DESIGNS)}")


@dataclass(frozen=True)
class JobEvent:
    """What the compare job is doing, for a progress display: a plan of its stages, a stage starting, a training
    step, a measurement message, or the end."""

    stage: str  # "plan" | "train" | "measure" | "done"
    name: str = ""  # the run: "vae", "vae β=4", ...
    detail: str = ""  # what is being measured
    step: int | None = None
    loss: float | None = None
    plan: tuple[tuple[str, str, float], ...] = ()  # "plan": (stage, name, training budget s; 0: not known) each


Watch = Callable[[JobEvent], None]


def job_plan(cfg: CompareConfig) -> tuple[tuple[str, str, float], ...]:
    """Every stage of the job in order, with its training budget in seconds (0 for measurements)."""
    sweep = [f"vae β={beta:g}" for beta in cfg.beta_sweep]
    sweep_budget = cfg.budget * cfg.sweep_budget_fraction
    return (
        tuple(("train", kind, cfg.budget) for kind in KINDS)
        + tuple(("train", n, sweep_budget) for n in sweep)
        + tuple(("measure", n, 0.0) for n in (*KINDS, *sweep))
    )


def watched_log(log: Log, watch: Watch | None, name: str) -> Log:
    """`log`, also telling `watch` what is measured for run `name`."""
    if watch is None:
        return log

    def both(message: str) -> None:
        watch(JobEvent("measure", name, detail=message))
        log(message)

    return both


def budgeted_run(
    kind: str, cfg: CompareConfig, test: ImageData, budget: float, model_changes: dict[str, Any] | None = None
) -> RunConfig:
    """The typed run config of one model in the comparison: the kind's configuration sized for these images,
    a wall-clock budget, the seed, no periodic evaluation; then the user's `--set` keys for that kind."""
    cfg_cls, _ = model_classes(kind)
    device = str(pick_device(cfg.device))
    model_cfg = replace(cfg_cls.sized_for(test.shape[-1], device), **(model_changes or {}))
    train_cfg = TrainConfig(
        steps=1_000_000,
        max_seconds=budget,
        seed=cfg.seed,
        eval_every=0,
        checkpoint_every=500,
        device=cfg.device,
        batch_size=cfg.batch_size or TrainConfig.batch_size,
        lr=cfg.lr or TrainConfig.lr,
    )
    model_cfg, train_cfg = apply_overrides(model_cfg, train_cfg, cfg.overrides.get(kind, {}))
    return RunConfig(kind, cfg.data, cfg.data_dir, tuple(test.shape), test.levels, model_cfg, train_cfg)


def train_or_reuse(
    run_cfg: RunConfig,
    run_dir: Path,
    train: ImageData,
    test: ImageData,
    log: Log,
    progress: bool,
    watch: Watch | None = None,
    name: str = "",
) -> None:
    """Train a run; a finished run with the same settings is reused, an interrupted one resumed."""
    if (run_dir / CONFIG_FILE).is_file() and read_run_config(run_dir) != run_cfg:
        raise ElbolabError(
            f"{run_dir} holds a {run_cfg.kind} run trained with other settings (budget, seed or "
            f"model); choose another --out or delete it"
        )
    if (run_dir / METRICS_FILE).is_file():
        log(f"{run_cfg.kind}: reusing the finished run in {run_dir}")
        return
    resume = (run_dir / CHECKPOINT_FILE).is_file()
    log(f"{run_cfg.kind}: {'resuming' if resume else 'training'} for {run_cfg.train.max_seconds:.0f} s")
    callbacks = (
        ()
        if watch is None
        else (lambda step, record: watch(JobEvent("train", name or run_cfg.kind, step=step, loss=record["loss"])),)
    )
    fit_run(run_cfg, run_dir, train, test, resume=resume, progress=progress, callbacks=callbacks)


def point_run(point: DesignPoint, cfg: CompareConfig, test: ImageData) -> RunConfig:
    """A design point's run config: `budgeted_run` of its kind on its share of the budget, with its changes; the
    user's `--set` keys for that kind apply, except those the point itself sets (they place it in the design)."""
    own = {f"model.{key}" for key in point.changes}
    kept = {k: v for k, v in cfg.overrides.get(point.kind, {}).items() if k not in own}
    cfg = replace(cfg, overrides={**cfg.overrides, point.kind: kept})
    return budgeted_run(point.kind, cfg, test, cfg.budget * point.budget, dict(point.changes))


def design_for(cfg: CompareConfig, test: ImageData) -> Design:
    """`cfg.design` placed for these images: each point's levels as its model declares them, built (untrained)
    from the run config `compare` trains it with."""
    points = design_points(cfg.design, cfg.beta_sweep, cfg.sweep_budget_fraction, cfg.objective_budget_fraction)
    device = str(pick_device(cfg.device))

    def levels_of(point: DesignPoint) -> DesignLevels:
        point_config(point, test.shape[-1], device)  # an unknown key or a refused value: a ConfigError naming it
        return declared(build_model(point_run(point, cfg, test)))

    return place(cfg.design, points, levels_of)


def train_models(
    cfg: CompareConfig,
    out: Path,
    log: Log,
    progress: bool,
    train: ImageData | None = None,
    test: ImageData | None = None,
    watch: Watch | None = None,
    design: Design | None = None,
) -> dict[str, Path]:
    """Train (or pick up) one run per point of the design (`design_for` where none is given), in `out/runs/NAME`;
    returns their folders by point name."""
    train = train or load_data(cfg.data, "train", cfg.data_dir)
    test = test or load_data(cfg.data, "test", cfg.data_dir)
    design = design or design_for(cfg, test)
    runs = {}
    for placed in design.placed:
        name = placed.point.name
        runs[name] = out / "runs" / name
        if watch:
            watch(JobEvent("train", name))
        train_or_reuse(point_run(placed.point, cfg, test), runs[name], train, test, log, progress, watch, name)
    return runs


def with_preset(cfg: CompareConfig, side: int) -> CompareConfig:
    """`cfg` with what it leaves open (budget, batch, learning rate, steps sweep, the bound's test images) from
    the preset for images of `side` px on its device."""
    preset = preset_for(side, str(pick_device(cfg.device)))
    evaluation = cfg.evaluation if cfg.evaluation.n_eval is not None else replace(cfg.evaluation, n_eval=preset.n_eval)
    return replace(
        cfg,
        budget=preset.budget if cfg.budget is None else cfg.budget,
        batch_size=cfg.batch_size or preset.batch_size,
        lr=cfg.lr or preset.lr,
        steps=cfg.steps or preset.steps,
        evaluation=evaluation,
    )


def seed_folder(out: Path, cfg: CompareConfig, index: int) -> Path:
    """Where seed number `index` of a comparison keeps its runs: `out` for the first, `out/seed-S` after."""
    return out if index == 0 else out / f"seed-{cfg.seed + index}"


def estimated_seconds(cfg: CompareConfig, side: int) -> float:
    """A rough wall-clock estimate of the whole comparison on an idle machine: training budgets plus the preset's
    measurement time, per seed."""
    cfg = with_preset(cfg, side)
    measure_seconds = preset_for(side, str(pick_device(cfg.device))).measure_seconds
    per_seed = cfg.budget * (
        len(KINDS) + cfg.sweep_budget_fraction * len(cfg.beta_sweep) + 2 * cfg.objective_budget_fraction
    )
    return cfg.seeds * (per_seed + measure_seconds)


def run_compare(
    cfg: CompareConfig,
    out: Path,
    log: Log = print,
    progress: bool = True,
    features_kind: str = "builtin",
    watch: Watch | None = None,
) -> tuple[CompareResults, dict[str, dict[str, Any]]]:
    """Train, measure and judge, once per seed; the contrasts fold every seed's effects. Returns the results and
    the first seed's images. `watch`, where given, hears every stage, training step and measurement (`JobEvent`)."""
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_data(cfg.data, "train", cfg.data_dir), load_data(cfg.data, "test", cfg.data_dir)
    cfg = with_preset(cfg, test.shape[-1])
    atomic_write_json(out / "compare-config.json", asdict(cfg))
    if watch:
        watch(JobEvent("plan", plan=job_plan(cfg)))
    log("feature network for sample quality")
    features, why_not = select_features(cfg.data, features_kind, data_dir=cfg.data_dir)
    seeds, images = [], {}
    for index in range(cfg.seeds):
        seed_cfg = replace(cfg, seed=cfg.seed + index, evaluation=replace(cfg.evaluation, seed=cfg.seed + index))
        if cfg.seeds > 1:
            log(f"seed {seed_cfg.seed} ({index + 1} of {cfg.seeds})")
        result, seed_images = run_seed(
            seed_cfg, seed_folder(out, cfg, index), train, test, features, log, progress, watch
        )
        atomic_write_json(out / f"seed-{seed_cfg.seed}-results.json", result.to_json())
        seeds.append(result)
        images = images or seed_images
    if watch:
        watch(JobEvent("done"))
    first = seeds[0]
    contrasts = fold_seeds([s.contrasts for s in seeds])
    tables = [s.attribution for s in seeds if s.attribution is not None]
    results = CompareResults(
        config=asdict(cfg),
        machine=machine_info(),
        data=data_info(test),
        feature_net={"name": features.name, "inception_unavailable_because": why_not},
        models=first.models,
        beta_sweep=first.beta_sweep,
        contrasts=contrasts,
        seeds=tuple(seeds),
        design=first.design,
        attribution=fold_tables(tables) if tables else None,
    )
    return results, images


def run_seed(
    cfg: CompareConfig,
    out: Path,
    train: ImageData,
    test: ImageData,
    features: Any,
    log: Log,
    progress: bool,
    watch: Watch | None = None,
) -> tuple[SeedResult, dict[str, dict[str, Any]]]:
    """One seed's comparison: place the design, train every point, measure each once, gather the evidence of
    every pair and judge it; the attribution table from every one-factor pair."""
    design = design_for(cfg, test)
    for name, why in design.absent:
        log(f"design: {name} is not in this run ({why})")
    runs = train_models(cfg, out, log, progress, train, test, watch, design)
    ev_cfg = cfg.evaluation
    models: dict[str, RunResult] = {}
    images: dict[str, dict[str, Any]] = {}
    for name, run_dir in runs.items():
        models[name], images[name] = measure_run(
            run_dir, ev_cfg, test, features, watched_log(log, watch, name), cfg.device
        )
    loaded = {name: load_run(run_dir, cfg.device)[1] for name, run_dir in runs.items()}
    ends, merged = design.pair("ends"), design.pair("merged-fixed")
    reference = quality_reference(test, ev_cfg.n_samples)
    held_out = train.images[: ev_cfg.n_samples]
    x0, x1 = pair_images(test, cfg.interpolation_pairs, pick_device(cfg.device))
    log("floors, information curves, steps sweep, interpolation and timings")
    floors = reference_floors(
        held_out,
        test.images,
        reference,
        test.levels,
        features,
        replicates=ev_cfg.replicates,
        seed=cfg.seed,
        real_source=f"{train.name} training images",
    )
    sweep_names = [p.point.name for p in design.placed if p.point.role == SWEEP]
    information = information_curves(loaded, ends, train, cfg)
    steps = steps_evidence(loaded, ends, reference, test.levels, features, cfg)
    paths = {
        name: path_stats(m.interpolate(x0, x1, 9).cpu(), test.levels, features)
        for name, m in loaded.items()
        if m.capabilities.encoding is not None and name not in sweep_names
    }
    timings = paired_timings(loaded, ends, merged, x0, cfg)
    sweep = sweep_points(design, models, loaded, held_out, reference, x0, x1, test.levels, features, cfg)
    objective_pair = design.pair("objective")
    objective = (
        {"elbo-weighted": models[objective_pair[0]], "simple": models[objective_pair[1]]} if objective_pair else {}
    )
    evidence = Evidence(
        models={k: r.measurement for k, r in models.items()},
        dims=test.dims,
        nfe=ev_cfg.quality_steps,
        sweep=sweep,
        floors=floors,
        forward_information=information[0] if ends else None,
        code_information=information[1] if ends else None,
        steps=steps,
        paths=paths,
        timings=timings,
        objective=(
            objective["simple"].measurement,
            objective["elbo-weighted"].measurement,
            objective["elbo-weighted"].measurement.objective,
        )
        if objective
        else None,
        ends=ends,
        merged=merged,
    )
    table = attribution(design, pair_evidence(design, models, loaded, paths, x0, cfg))
    curves = tuple(c for c in information if c is not None)
    return SeedResult(
        cfg.seed, models, sweep, floors, curves, steps, paths, timings, objective, judge(evidence), design, table
    ), images


def pair_images(test: ImageData, pairs: int, device: Any) -> tuple[Any, Any]:
    """The first `pairs` test images and the next `pairs`, in the model range: the ends of every interpolation."""
    pairs = min(pairs, len(test) // 2)
    return (test.model_range(slice(0, pairs)).to(device), test.model_range(slice(pairs, 2 * pairs)).to(device))


def information_curves(
    loaded: dict[str, GenerativeModel], ends: tuple[str, str] | None, train: ImageData, cfg: CompareConfig
) -> tuple[InformationCurve | None, InformationCurve | None]:
    """Each end's `information_curve` on the same training images: the fixed end's (the forward process along t)
    first, the learned end's (its code) second; None where there are no ends or an end declares none."""
    if ends is None:
        return None, None
    x = train.model_range(slice(0, min(len(train), cfg.information_images)))
    learned, fixed = (loaded[name] for name in ends)
    return tuple(m.information_curve(x, cfg.information_draws, cfg.seed) for m in (fixed, learned))  # type: ignore[return-value]


def steps_evidence(
    loaded: dict[str, GenerativeModel],
    ends: tuple[str, str] | None,
    reference: Any,
    levels: int,
    features: Any,
    cfg: CompareConfig,
) -> tuple[StepsPoint, ...]:
    """Sample figures against steps for the fixed end (each sampler it offers) and the learned end, on the same
    axes."""
    if ends is None:
        return ()
    n = cfg.evaluation.n_samples
    return tuple(
        point
        for name in ends[::-1]
        for point in steps_sweep(
            loaded[name],
            reference,
            levels,
            features,
            steps=cfg.steps,
            n=n,
            replicates=cfg.steps_replicates,
            seed=cfg.seed,
        )
    )


def seeded(model: GenerativeModel, seed: int) -> torch.Generator:
    """A generator on the model's device, seeded."""
    return torch.Generator(model.device).manual_seed(seed)


def sampling_timing(a: str, model_a: GenerativeModel, b: str, model_b: GenerativeModel, x: Any, cfg: CompareConfig):
    """Alternating timings of a batch of samples from `a` and from `b`, each at its quality sampler and NFE."""
    (sampler_a, steps_a), (sampler_b, steps_b) = (quality_sampling(m, cfg.evaluation) for m in (model_a, model_b))
    n, seed = len(x), cfg.seed
    return paired_timing(
        f"{a} {sampler_a} {steps_a}",
        lambda: model_a.sample(n, seeded(model_a, seed), sampler=sampler_a, steps=steps_a),
        f"{b} {sampler_b} {steps_b}",
        lambda: model_b.sample(n, seeded(model_b, seed), sampler=sampler_b, steps=steps_b),
        cfg.timing_repeats,
        model_b.device,
    )


def paired_timings(
    loaded: dict[str, GenerativeModel],
    ends: tuple[str, str] | None,
    merged: tuple[str, str] | None,
    x: Any,
    cfg: CompareConfig,
) -> dict[str, PairedTiming]:
    """Alternating timings: encoding and sampling of the two ends, and a DDIM chain of the same NFE over the
    merged model's latent and in the fixed end's pixel space, where the models offer them."""
    found = {}
    reps, nfe = cfg.timing_repeats, cfg.evaluation.quality_steps
    if ends is not None:
        (a, b), (vae, dif) = ends, (loaded[name] for name in ends)
        if vae.capabilities.encoding is not None and dif.capabilities.encoding is not None:
            found["encoder"] = paired_timing(
                f"{a} encode", lambda: vae.encode(x), f"{b} encode", lambda: dif.encode(x), reps, dif.device
            )
        found["decoder"] = sampling_timing(a, vae, b, dif, x, cfg)
    if merged is not None:
        (pixel, latent), (dif, ld) = merged, (loaded[name] for name in merged)
        if all("ddim" in m.capabilities.samplers for m in (dif, ld)):
            found["latent"] = paired_timing(
                f"{latent} ddim {nfe}",
                lambda: ld.sample(len(x), seeded(ld, cfg.seed), sampler="ddim", steps=nfe),
                f"{pixel} ddim {nfe}",
                lambda: dif.sample(len(x), seeded(dif, cfg.seed), sampler="ddim", steps=nfe),
                reps,
                dif.device,
            )
    return found


def pair_evidence(
    design: Design,
    models: dict[str, RunResult],
    loaded: dict[str, GenerativeModel],
    paths: dict[str, PathStats],
    x: Any,
    cfg: CompareConfig,
) -> dict[tuple[str, str], PairEvidence]:
    """What each judged pair's row is read from: both measurements, an alternating timing of their sampling and
    their interpolation paths."""
    found = {}
    for p in design.pairings:
        if p.pair is None or p.pair in found:
            continue
        a, b = p.pair
        timing = sampling_timing(a, loaded[a], b, loaded[b], x, cfg)
        found[p.pair] = PairEvidence(models[a].measurement, models[b].measurement, timing, paths.get(a), paths.get(b))
    return found


def sweep_points(
    design: Design,
    models: dict[str, RunResult],
    loaded: dict[str, GenerativeModel],
    held_out: Any,
    reference: Any,
    x0: Any,
    x1: Any,
    levels: int,
    features: Any,
    cfg: CompareConfig,
) -> tuple[SweepPoint, ...]:
    """The β-sweep on the rate–distortion axes: its points and the learned end where it is of their kind, by β."""
    names = [p.point.name for p in design.placed if p.point.role == SWEEP]
    ends = design.pair("ends")
    kinds = {design.point(n).point.kind for n in names}
    if ends is not None and design.point(ends[0]).point.kind in kinds:
        names.append(ends[0])
    found = [beta_point(models[n], loaded[n], held_out, reference, x0, x1, levels, features, cfg) for n in names]
    return tuple(sorted(found, key=lambda p: p.beta))


def beta_point(
    run: RunResult,
    vae: Any,
    held_out: Any,
    reference: Any,
    x0: Any,
    x1: Any,
    levels: int,
    features: Any,
    cfg: CompareConfig,
) -> SweepPoint:
    """A β-sweep VAE: rate, distortion, its prior samples' figures, its held-out reconstructions' and its paths."""
    with torch.no_grad():
        x = to_model(held_out, levels).to(vae.device)
        reconstructions = vae.decode(vae.encode(x)).cpu()
    recon = resampled_figures(reconstructions, reference, levels, features, cfg.evaluation.replicates, cfg.seed)
    return sweep_point(
        run, run.measurement.resampled, recon, path_stats(vae.interpolate(x0, x1, 9).cpu(), levels, features)
    )
