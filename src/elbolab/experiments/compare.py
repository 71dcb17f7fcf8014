"""`elbolab compare`: every registered model kind trained under one compute budget on one data set,
measured through the same contract, with a verdict per contrast (`verdicts`).

Every number in the results is measured here; each verdict is a rule over those numbers that
could come out either way, and states the rule it applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from elbolab.data import load_data
from elbolab.data.base import ImageData, to_model
from elbolab.errors import ConfigError, ElbolabError
from elbolab.evaluate.features import FeatureExtractor, select_features
from elbolab.evaluate.floors import reference_floors
from elbolab.evaluate.information import InformationCurve, code_information, forward_information
from elbolab.evaluate.resample import sample_figures
from elbolab.evaluate.run import EvalConfig, Log, pair_images, quality_reference, quality_sampling
from elbolab.evaluate.speed import PairedTiming, paired_timing
from elbolab.evaluate.steps import STEPS, StepsPoint, steps_sweep
from elbolab.experiments.results import CompareResults, RunResult, SeedResult
from elbolab.experiments.runs import data_info, measure_run
from elbolab.experiments.verdicts import Evidence, fold_seeds, judge, sweep_point
from elbolab.machine import machine_info
from elbolab.model import GenerativeModel
from elbolab.records import FeatureNet, Machine, SweepPoint
from elbolab.registry import MODEL_KINDS, model_classes
from elbolab.train.api import fit_run
from elbolab.train.budget import Budget
from elbolab.train.checkpoint import atomic_write_json
from elbolab.train.config import TrainConfig
from elbolab.train.run import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RunConfig,
    apply_overrides,
    pick_device,
    read_run_config,
)

#: the kinds compared: every registered model
KINDS = tuple(MODEL_KINDS)
#: compare's bound: where a model's Monte-Carlo bound takes it, t importance-sampled from a pilot pass and as
#: many draws as a standard error of 0.01 bits/dim on the test-set mean needs (the results name the estimator)
BOUND_PRECISION = {"proposal": "importance", "bpd_se": 0.01}
#: every compared model keeps its best EMA weights on this seeded share of the training images, validated this often
VALIDATION: dict[str, Any] = {"validation_fraction": 0.1, "validate_every": 100, "keep_best": True}


@dataclass(frozen=True)
class Preset:
    """What `compare` trains and measures, unless told otherwise, for images of one size on one kind of device."""

    budget: Budget  # training compute per model
    step_seconds: float  # idle training seconds per optimiser step, over the models (for the estimate printed first)
    flop_rate: float  # idle counted FLOPs trained per second, over the models (the same)
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
    latent diffusion −0.007, within their noise; 1e-3 was worse; benchmarks/results/digits_lr.json).

    The budgets are counted FLOPs (`train.budget.step_flops`), the same for every model, so that no model's
    steps depend on the machine. On digits one step costs 5.3e9 FLOPs (VAE), 3.1e9 (diffusion), 4.8e9 and 4.0e9
    (latent diffusion's autoencoder and prior); in the 60 s each model had before (2 threads, idle:
    benchmarks/results/compare_digits.json, 1,213 / 1,015 / 443 steps) they trained 6.5e12, 3.2e12 and ≈ 4.9e12
    FLOPs, 4.5e12 each on average. At one thread (`train.threads`) a step takes ≈ 1.3× as long idle, so 3e12
    keeps the README's command within its 6 minutes: ≈ 560 VAE steps, ≈ 960 diffusion steps, ≈ 310 + 375 of
    latent diffusion. On 28 px on a CPU (batch 64) the steps cost 9.4e9, 1.9e10, 9.0e9 and 7.1e9 FLOPs; the
    120 s of before bought ≈ 1e13 each (benchmarks/results/compare_fashion_mnist.json), 7.5e12 at one thread. On
    a GPU 500 steps, what diffusion's base preset trains in 60 s (123 ms a step, benchmarks/results/gpu-mfu.json)."""
    if side <= 16:
        return Preset(
            budget=Budget(3e12, "flop"),
            step_seconds=0.078,
            flop_rate=5.7e10,
            batch_size=128,
            n_eval=None,
            steps=STEPS,
            measure_seconds=70.0,
            lr=3e-3,
        )
    if device.startswith("cuda"):
        return Preset(
            budget=Budget(500, "steps"),
            step_seconds=0.123,
            flop_rate=7.9e13,
            batch_size=256,
            n_eval=None,
            steps=STEPS,
            measure_seconds=120.0,
        )
    # measured on Fashion-MNIST on an idle 2-core CPU: 406 and 424 s of measurement after 461 s of training
    # (the budgets' 432 s plus each run's start and final evaluation): 14 min 31 s and 14 min 48 s in all
    return Preset(
        budget=Budget(7.5e12, "flop"),
        step_seconds=0.21,
        flop_rate=6.4e10,
        batch_size=64,
        n_eval=2000,
        steps=tuple(s for s in STEPS if s <= 50),
        measure_seconds=450.0,
    )


def expected_seconds(budget: Budget, preset: Preset) -> float:
    """Roughly how long one model trains on `budget` on an idle machine like the preset's."""
    if budget.unit == "s":
        return budget.amount
    return budget.amount * preset.step_seconds if budget.unit == "steps" else budget.amount / preset.flop_rate


def compare_evaluation(**changes: Any) -> EvalConfig:
    """The evaluation `compare` runs: `EvalConfig` with `BOUND_PRECISION`, then `changes`."""
    return EvalConfig(**{**BOUND_PRECISION, **changes})


@dataclass(frozen=True)
class CompareConfig:
    """What `compare` trains, and how it measures (`evaluation`)."""

    data: str = "digits"
    data_dir: str | None = None
    budget: Budget | None = None  # training compute per model (None: the preset's); a number is seconds
    seed: int = 0
    seeds: int = 1  # the whole experiment repeated with seeds seed, seed + 1, …
    evaluation: EvalConfig = field(default_factory=compare_evaluation)
    beta_sweep: tuple[float, ...] = (0.25, 4.0)  # extra VAEs placed on the rate–distortion axes
    sweep_budget_fraction: float = 0.15  # of `budget`, per β-sweep VAE
    objective_budget_fraction: float = 0.15  # of `budget`, per diffusion model of the ε-objective pair (0: none)
    objective_n_eval: int | None = 500  # test images for the pair's bounds, at most (None: as the models')
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

    def __post_init__(self) -> None:
        if isinstance(self.budget, int | float):
            object.__setattr__(self, "budget", Budget(float(self.budget), "s"))
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        if self.objective_n_eval is not None and self.objective_n_eval < 2:
            raise ConfigError(f"objective_n_eval must be at least 2 test images, got {self.objective_n_eval}")


def elbo_weighted(diffusion: Any) -> tuple[dict[str, Any], str]:
    """The ε-objective contrast's ELBO-weighted side for this diffusion config: in continuous time the VDM bound
    itself (weighting γ′(t)); in discrete time the bound L_vlb with a learned variance. Returns the config changes
    and their name."""
    if getattr(diffusion, "time", "discrete") == "continuous":
        return {"loss": "vlb"}, "the continuous-time ELBO (weighting γ′(t))"
    return {"loss": "vlb", "variance": "learned"}, "L_vlb with learned variance"


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


def job_plan(cfg: CompareConfig, side: int = 8) -> tuple[tuple[str, str, float], ...]:
    """Every stage of the job in order, with its training time in seconds (a compute budget's idle estimate for
    images of `side` px, by default digits'; 0 for measurements)."""
    preset = preset_for(side, str(pick_device(cfg.device)))
    budget = cfg.budget or preset.budget
    sweep = [f"vae β={beta:g}" for beta in cfg.beta_sweep]
    seconds = expected_seconds(budget, preset)
    sweep_seconds = expected_seconds(budget.scaled(cfg.sweep_budget_fraction), preset)
    return (
        tuple(("train", kind, seconds) for kind in KINDS)
        + tuple(("train", n, sweep_seconds) for n in sweep)
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


def filled_budget(cfg: CompareConfig) -> Budget:
    """The budget of a config `with_preset` has filled in."""
    if cfg.budget is None:
        raise ElbolabError("compare's budget is not set: fill the config in with `with_preset` first")
    return cfg.budget


def budgeted_run(
    kind: str,
    cfg: CompareConfig,
    test: ImageData,
    budget: Budget | float,
    model_changes: dict[str, Any] | None = None,
) -> RunConfig:
    """The typed run config of one model in the comparison: the kind's configuration sized for these images,
    the budget, the seed, the best weights kept on a validation split (`VALIDATION`), no periodic evaluation;
    then the user's `--set` keys for that kind. A model trained in stages (latent diffusion) splits a budget of
    steps as it splits FLOPs and seconds: `stage_one_fraction` of them to its first stage. A number is seconds."""
    budget = budget if isinstance(budget, Budget) else Budget(float(budget), "s")
    cfg_cls, _ = model_classes(kind)
    device = str(pick_device(cfg.device))
    model_cfg = replace(cfg_cls.sized_for(test.shape[-1], device), **(model_changes or {}))
    keys = budget.train_keys()
    fraction = getattr(model_cfg, "stage_one_fraction", None)
    if budget.unit == "steps" and fraction is not None and getattr(model_cfg, "autoencoder", None) is None:
        first = max(1, min(keys["steps"] - 1, round(keys["steps"] * fraction)))
        model_cfg = replace(model_cfg, autoencoder_steps=first)
        keys["steps"] = max(1, keys["steps"] - first)
    train_cfg = TrainConfig(
        **keys,
        **VALIDATION,
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
    log(f"{run_cfg.kind}: {'resuming' if resume else 'training'} for {Budget.of(run_cfg.train)}")
    callbacks = (
        ()
        if watch is None
        else (lambda step, record: watch(JobEvent("train", name or run_cfg.kind, step=step, loss=record["loss"])),)
    )
    fit_run(run_cfg, run_dir, train, test, resume=resume, progress=progress, callbacks=callbacks)


def train_models(
    cfg: CompareConfig,
    out: Path,
    log: Log,
    progress: bool,
    train: ImageData | None = None,
    test: ImageData | None = None,
    watch: Watch | None = None,
) -> dict[str, Path]:
    """Train (or pick up) one run per kind; returns their folders."""
    train = train or load_data(cfg.data, "train", cfg.data_dir)
    test = test or load_data(cfg.data, "test", cfg.data_dir)
    runs = {kind: out / "runs" / kind for kind in KINDS}
    for kind, run_dir in runs.items():
        if watch:
            watch(JobEvent("train", kind))
        train_or_reuse(
            budgeted_run(kind, cfg, test, filled_budget(cfg)), run_dir, train, test, log, progress, watch, kind
        )
    return runs


def train_sweep(
    cfg: CompareConfig,
    out: Path,
    log: Log,
    progress: bool,
    train: ImageData,
    test: ImageData,
    watch: Watch | None = None,
) -> dict[float, Path]:
    """Train (or pick up) the β-sweep VAEs, each on `sweep_budget_fraction` of the budget; returns their folders."""
    sweep = {beta: out / "runs" / f"vae-beta{beta:g}" for beta in cfg.beta_sweep}
    for beta, run_dir in sweep.items():
        run_cfg = budgeted_run("vae", cfg, test, filled_budget(cfg).scaled(cfg.sweep_budget_fraction), {"beta": beta})
        if watch:
            watch(JobEvent("train", f"vae β={beta:g}"))
        log(f"β-sweep: VAE with β = {beta:g} for {Budget.of(run_cfg.train)}")
        train_or_reuse(run_cfg, run_dir, train, test, log, progress, watch, f"vae β={beta:g}")
    return sweep


def train_objective_pair(
    cfg: CompareConfig, out: Path, log: Log, progress: bool, train: ImageData, test: ImageData
) -> dict[str, Path]:
    """Train (or pick up) diffusion with L_simple and with the ELBO's weighting under one budget; their folders."""
    if cfg.objective_budget_fraction <= 0:
        return {}
    changes, name = elbo_weighted(budgeted_run("diffusion", cfg, test, filled_budget(cfg)).model)
    budget = filled_budget(cfg).scaled(cfg.objective_budget_fraction)
    runs = {
        "simple": (out / "runs" / "diffusion-simple", {"loss": "simple"}),
        "elbo-weighted": (out / "runs" / "diffusion-elbo", changes),
    }
    for label, (run_dir, model_changes) in runs.items():
        log(f"ε-objective pair: diffusion with {label if label == 'simple' else name} for {budget}")
        train_or_reuse(budgeted_run("diffusion", cfg, test, budget, model_changes), run_dir, train, test, log, progress)
    return {label: run_dir for label, (run_dir, _) in runs.items()}


def objective_pair_images(cfg: CompareConfig, available: int) -> int | None:
    """Test images for the ε-objective pair's bounds: the models' number, capped at `objective_n_eval`. The pair's
    contrast is a paired difference of two bounds on the same images, far larger than its standard error (on
    Fashion-MNIST 0.57 bits/dim against a smallest detectable 0.004 from 2,000 images), so a quarter of the
    images still decides it. The saving (≈ 45 s of a 28×28 compare on a CPU) holds while the draws that
    `bpd_se` asks for stay at their floor: with fewer images each needs more draws for the same standard error."""
    n = min(cfg.evaluation.n_eval or available, available)
    return n if cfg.objective_n_eval is None else min(n, cfg.objective_n_eval)


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
    preset = preset_for(side, str(pick_device(cfg.device)))
    per_seed = expected_seconds(filled_budget(cfg), preset) * (
        len(KINDS) + cfg.sweep_budget_fraction * len(cfg.beta_sweep) + 2 * cfg.objective_budget_fraction
    )
    return cfg.seeds * (per_seed + preset.measure_seconds)


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
        watch(JobEvent("plan", plan=job_plan(cfg, test.shape[-1])))
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
    results = CompareResults(
        config=cfg,
        machine=Machine.from_json(machine_info()),
        data=data_info(test),
        feature_net=FeatureNet(features.name, why_not),
        models=first.models,
        beta_sweep=first.beta_sweep,
        contrasts=contrasts,
        seeds=tuple(seeds),
    )
    return results, images


def run_seed(
    cfg: CompareConfig,
    out: Path,
    train: ImageData,
    test: ImageData,
    features: FeatureExtractor,
    log: Log,
    progress: bool,
    watch: Watch | None = None,
) -> tuple[SeedResult, dict[str, dict[str, Any]]]:
    """One seed's comparison: train every run, measure each once (its model kept for the evidence beyond),
    gather the evidence and judge it. The models' interpolations are the paths judged, the VAE's quality
    samples its point of the steps sweep and of the β-sweep."""
    runs = train_models(cfg, out, log, progress, train, test, watch)
    sweep_runs = train_sweep(cfg, out, log, progress, train, test, watch)
    objective_runs = train_objective_pair(cfg, out, log, progress, train, test)
    ev_cfg = replace(cfg.evaluation, interpolation_pairs=cfg.interpolation_pairs)
    models: dict[str, RunResult] = {}
    images: dict[str, dict[str, Any]] = {}
    loaded: dict[str, GenerativeModel] = {}
    for kind, run_dir in runs.items():
        models[kind], images[kind], loaded[kind] = measure_run(
            run_dir, ev_cfg, test, features, watched_log(log, watch, kind), cfg.device
        )
    reference = quality_reference(test, ev_cfg.n_samples)
    held_out = train.images[: ev_cfg.n_samples]
    x0, _ = pair_images(test, cfg.interpolation_pairs, loaded["vae"].device)
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
    information = information_curves(loaded, train, cfg)
    steps = steps_evidence(loaded, models["vae"], reference, test.levels, features, cfg)
    paths = {kind: r.measurement.interpolation for kind, r in models.items() if r.measurement.interpolation}
    timings = paired_timings(loaded, x0, cfg)
    sweep_cfg = replace(ev_cfg, parts=("information", "quality", "sharpness", "interpolation"))
    points = [beta_point(models["vae"], loaded["vae"], held_out, reference, test.levels, features, cfg)]
    for run_dir in sweep_runs.values():
        run, _, vae = measure_run(run_dir, sweep_cfg, test, features, log, cfg.device)
        points.append(beta_point(run, vae, held_out, reference, test.levels, features, cfg))
    sweep = tuple(sorted(points, key=lambda p: p.beta))
    # its sharpness is in `samples`; its bounds on fewer images than the models' (`objective_pair_images`)
    objective_cfg = replace(ev_cfg, parts=("likelihood", "quality"), n_eval=objective_pair_images(cfg, len(test)))
    objective = {
        label: measure_run(run_dir, objective_cfg, test, features, log, cfg.device)[0]
        for label, run_dir in objective_runs.items()
    }
    evidence = Evidence(
        models={k: r.measurement for k, r in models.items()},
        dims=test.dims,
        nfe=ev_cfg.quality_steps,
        sweep=sweep,
        floors=floors,
        forward_information=information[0],
        code_information=information[1] if len(information) > 1 else None,
        steps=steps,
        paths=paths,
        timings=timings,
        objective=(
            objective["simple"].measurement,
            objective["elbo-weighted"].measurement,
            elbo_weighted(loaded["diffusion"].config)[1],
        )
        if objective
        else None,
    )
    return SeedResult(
        cfg.seed, models, sweep, floors, information, steps, paths, timings, objective, judge(evidence)
    ), images


def information_curves(loaded: dict[str, Any], train: ImageData, cfg: CompareConfig) -> tuple[InformationCurve, ...]:
    """I(x_0; x_t) of diffusion's forward process on the training images, and the VAE's I(x; z) on the same ones."""
    x = train.model_range(slice(0, min(len(train), cfg.information_images)))
    curves = [
        forward_information(x, loaded["diffusion"].diffusion.schedule, draws=cfg.information_draws, seed=cfg.seed)
    ]
    vae = loaded["vae"]
    with torch.no_grad():
        mean, logvar = vae.posterior(x.to(vae.device))
    curves.append(code_information(mean.cpu(), logvar.cpu(), cfg.information_draws, cfg.seed))
    return tuple(curves)


def steps_evidence(
    loaded: dict[str, GenerativeModel],
    vae: RunResult,
    reference: Any,
    levels: int,
    features: FeatureExtractor,
    cfg: CompareConfig,
) -> tuple[StepsPoint, ...]:
    """Sample figures against steps for diffusion (ancestral, DDIM) and the VAE's one pass (its quality samples,
    measured already), on the same axes."""
    diffusion = steps_sweep(
        loaded["diffusion"],
        reference,
        levels,
        features,
        steps=cfg.steps or (),
        n=cfg.evaluation.n_samples,
        replicates=cfg.steps_replicates,
        seed=cfg.seed,
    )
    return (*diffusion, StepsPoint.of(vae.measurement))


def paired_timings(loaded: dict[str, Any], x: Any, cfg: CompareConfig) -> dict[str, PairedTiming]:
    """Alternating timings: encoding (VAE, diffusion), sampling (VAE, diffusion at the quality NFE) and a DDIM
    chain of the same NFE in latent and in pixel space."""
    vae, dif, n, reps = loaded["vae"], loaded["diffusion"], len(x), cfg.timing_repeats
    nfe = cfg.evaluation.quality_steps
    sampler, steps = quality_sampling(dif, cfg.evaluation)
    g = lambda: torch.Generator(dif.device).manual_seed(cfg.seed)
    found = {
        "encoder": paired_timing(
            "vae encode", lambda: vae.encode(x), "diffusion encode", lambda: dif.encode(x), reps, dif.device
        ),
        "decoder": paired_timing(
            "vae sample",
            lambda: vae.sample(n, g()),
            f"diffusion {sampler} {steps}",
            lambda: dif.sample(n, g(), sampler=sampler, steps=steps),
            reps,
            dif.device,
        ),
    }
    if "latent-diffusion" in loaded:
        ld = loaded["latent-diffusion"]
        found["latent"] = paired_timing(
            f"latent diffusion ddim {nfe}",
            lambda: ld.sample(n, g(), sampler="ddim", steps=nfe),
            f"pixel diffusion ddim {nfe}",
            lambda: dif.sample(n, g(), sampler="ddim", steps=nfe),
            reps,
            dif.device,
        )
    return found


def beta_point(
    run: RunResult,
    vae: GenerativeModel,
    held_out: Any,
    reference: Any,
    levels: int,
    features: FeatureExtractor,
    cfg: CompareConfig,
) -> SweepPoint:
    """A β-sweep VAE: rate, distortion, its prior samples' figures and paths (measured), and the figures of its
    reconstructions of held-out images."""
    with torch.no_grad():
        x = to_model(held_out, levels).to(vae.device)
        reconstructions = vae.decode(vae.encode(x)).cpu()
    return sweep_point(
        run, sample_figures(reconstructions, reference, levels, features, cfg.evaluation.replicates, cfg.seed)
    )
