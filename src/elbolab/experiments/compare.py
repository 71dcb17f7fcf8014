"""`elbolab compare`: every point of a design (`experiments.design`: each registered kind, and the models between
the paradigms) trained under one compute budget on one data set, each measured once through the same contract,
every contrast judged on its pair (`verdicts`) and every factor's effect on every outcome tabulated
(`attribution`).

Every number in the results is measured here; each verdict is a rule over those numbers that
could come out either way, and states the rule it applied.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from elbolab.atomic import atomic_write_json
from elbolab.config import require
from elbolab.data import load_data
from elbolab.data.base import ImageData, to_model
from elbolab.diffusion.samplers import SAMPLERS
from elbolab.errors import ConfigError, ElbolabError, one_line_warnings
from elbolab.evaluate.features import FeatureExtractor, select_features
from elbolab.evaluate.floors import Floors, reference_floors
from elbolab.evaluate.frontier import SWEPT, frontier_sweep, with_points
from elbolab.evaluate.information import InformationCurve
from elbolab.evaluate.resample import sample_figures
from elbolab.evaluate.run import EvalConfig, Log, Measurement, pair_images, quality_reference, quality_sampling
from elbolab.evaluate.speed import PairedTiming, paired_timing
from elbolab.evaluate.steps import STEPS, StepsPoint
from elbolab.experiments.along import BUDGET_POINTS, budget_tables, judged_points, snapshot_measurements
from elbolab.experiments.attribution import PairEvidence, attribution, fold_tables, with_budget_points
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
from elbolab.experiments.power import contrast_power, table_power
from elbolab.experiments.results import CompareResults, RunResult, SeedResult
from elbolab.experiments.runs import data_info, measure_run
from elbolab.experiments.verdicts import Evidence, fold_seeds, judge, sweep_point
from elbolab.machine import machine_info
from elbolab.model import DesignLevels, GenerativeModel
from elbolab.records import FeatureNet, Machine, SweepPoint
from elbolab.registry import MODEL_KINDS, model_classes
from elbolab.signals import stop_on_signals
from elbolab.train.api import fit_run, use_threads
from elbolab.train.budget import Budget
from elbolab.train.config import TrainConfig
from elbolab.train.run import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RunConfig,
    apply_overrides,
    build_model,
    conditional_classes,
    load_run,
    pick_device,
    read_run_config,
)

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
    measure_seconds: float  # idle measurement seconds per seed of the core design's runs, beside their training
    lr: float = TrainConfig.lr  # every model's peak learning rate
    warmup_steps: int = TrainConfig.warmup_steps  # every model's linear learning-rate warm-up
    thread_factor: float = 1.0  # a step's time at compare's one training thread over its time at `flop_rate`'s

    def training_rate(self) -> float:
        """Counted FLOPs per second one model trains at in `compare` (one thread), idle."""
        return self.flop_rate / self.thread_factor


#: the runs of the core design (the measurement time of a preset is theirs; `estimated_seconds` scales it)
CORE_RUNS = 10
#: idle seconds per seed that measuring the core design's runs on digits adds to training them, in compare's pool
#: of two processes (`estimated_seconds`): on 683f6af the whole comparison took 299 s, its training 150 s of it
MEASURE_DIGITS = 150.0


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
    FLOPs, 4.5e12 each on average. At one thread (`train.threads`) a step takes ≈ 1.3× as long idle. 3e12 (≈ 560
    VAE steps, ≈ 960 diffusion steps, ≈ 310 + 375 of latent diffusion) took the core design's ten runs 3.6-4.4 min
    to train, two at a time, and the README's command 7 min 43 s without the install (load ≈ 2); 2e12 (≈ 375 VAE
    and ≈ 640 diffusion steps) 6 min 1 s with the install in a fresh clone once training and measuring shared one
    pool (683f6af: 61 s install, 181 s until the last run was trained, 299 s the whole comparison); 1.75e12
    (≈ 330 VAE and ≈ 560 diffusion steps) keeps it within its 6 minutes. On 28 px on a CPU (batch 64, before batch 32) the steps
    cost 9.4e9, 1.8e10 (1.9e10 with the tiny UNet before the compact one), 9.0e9 and 7.1e9 FLOPs; the
    120 s of before bought ≈ 1e13 each (benchmarks/results/compare_fashion_mnist.json), 7.5e12 at one thread. On
    a GPU 500 steps, what diffusion's base preset trains in 60 s (123 ms a step, benchmarks/results/gpu-mfu.json)."""
    if side <= 16:
        return Preset(
            budget=Budget(1.75e12, "flop"),
            step_seconds=0.078,
            flop_rate=5.7e10,
            batch_size=128,
            n_eval=None,
            steps=DIGITS_STEPS,
            measure_seconds=MEASURE_DIGITS,
            lr=3e-3,
            thread_factor=1.3,
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
    # (the budgets' 432 s plus each run's start and final evaluation): 14 min 31 s and 14 min 48 s in all. Batch 32
    # and 20 warm-up steps (issue 25's search, benchmarks/results/quality_budget-fashion-mnist.json): with the compact
    # UNet diffusion's samples reached FD 39.7 at 7.5e12 FLOPs against 45.3 at batch 64 and 100 warm-up steps
    return Preset(
        budget=Budget(7.5e12, "flop"),
        step_seconds=0.105,
        flop_rate=6.4e10,
        batch_size=32,
        warmup_steps=20,
        n_eval=2000,
        steps=tuple(s for s in STEPS if s <= 50),
        measure_seconds=450.0,
        thread_factor=1.3,
    )


def expected_seconds(budget: Budget, preset: Preset) -> float:
    """Roughly how long one model trains on `budget` on an idle machine like the preset's, at compare's one
    training thread."""
    if budget.unit == "s":
        return budget.amount
    if budget.unit == "steps":
        return budget.amount * preset.step_seconds * preset.thread_factor
    return budget.amount / preset.training_rate()


#: the steps sweep on digits: NFE 1 to 32 by doublings, where every sampler's Fréchet distance has levelled off
#: (the ancestral sampler's lowest is at 32, DDIM's and DPM-Solver++'s flat from 16; frontier-digits.json);
#: 50 and 100 cost twice the rest together and showed nothing new
DIGITS_STEPS = (1, 2, 4, 8, 16, 32)
#: the NFE of compare's quality samples: DPM-Solver++'s Fréchet distance on digits levels off by 8 NFE (1.47 at 8
#: and 16, 1.51 at 64 and 100; benchmarks/results/frontier-digits.json), so 20 keeps a margin and costs 2.5× less
#: than the 50 of `EvalConfig`
QUALITY_NFE = 20


def compare_evaluation(**changes: Any) -> EvalConfig:
    """The evaluation `compare` runs: `EvalConfig` with `BOUND_PRECISION`, the speed table of the samplers the
    steps sweep draws and of the quality sampler (not of every sampler: `--frontier` sweeps those), then
    `changes`."""
    speed = (*SWEPT, EvalConfig.quality_sampler)
    return EvalConfig(**{**BOUND_PRECISION, "speed_samplers": speed, "quality_steps": QUALITY_NFE, **changes})


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
    steps: tuple[int, ...] | None = None  # NFE targets of the steps sweep (None: the preset's; see `frontier`)
    steps_samplers: tuple[str, ...] | None = SWEPT  # the samplers swept (None: every one the fixed end declares)
    batch_size: int | None = None  # training images per step (None: the preset's)
    lr: float | None = None  # every model's peak learning rate (None: the preset's)
    warmup_steps: int | None = None  # every model's learning-rate warm-up in steps (None: the preset's)
    steps_replicates: int = 100  # bootstrap resamples per point of the steps sweep
    interpolation_pairs: int = 16  # test-image pairs interpolated by every model
    timing_repeats: int = 5  # alternating repeats of each paired timing
    information_images: int = 2000  # training images of the empirical distribution for I(x_0; x_t)
    information_draws: int = 256  # Monte-Carlo draws per point of the information curves
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per kind: extra --set keys
    device: str = "auto"  # where every model trains and is measured: auto | cpu | cuda[:N]
    design: str = "core"  # the models trained and the contrasts judged (`experiments.design`): core | full
    jobs: int = 2  # runs trained at once on a CPU, each in its own process at one thread (1: in turn, in this one)
    measure_threads: int = 2  # torch threads of the measurement, the same on every machine whatever its cores
    budget_points: tuple[float, ...] = BUDGET_POINTS  # fractions of the budget every pair is judged at again
    conditional: bool = False  # also each end trained conditionally, and the conditional contrasts (`conditional`)

    def __post_init__(self) -> None:
        if isinstance(self.budget, int | float):
            object.__setattr__(self, "budget", Budget(float(self.budget), "s"))
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        require("--design", self.design, self.design in DESIGNS, f"one of {', '.join(DESIGNS)}")
        known = self.steps_samplers is None or all(s in SAMPLERS for s in self.steps_samplers)
        require("steps_samplers", self.steps_samplers, known, f"None or names among {', '.join(SAMPLERS)}")
        require("--jobs", self.jobs, isinstance(self.jobs, int) and 1 <= self.jobs <= 64, "an integer from 1 to 64")
        require("measure_threads", self.measure_threads, 1 <= self.measure_threads <= 256, "an integer from 1 to 256")
        require(
            "--budget-points",
            self.budget_points,
            all(0 < f < 1 for f in self.budget_points) and len(set(self.budget_points)) == len(self.budget_points),
            "distinct fractions of the budget, each in (0, 1) (none: an empty list)",
        )


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


def planned_points(cfg: CompareConfig) -> tuple[DesignPoint, ...]:
    """The points of `cfg.design` whose kind is registered: what the job plans to train (one a config refuses is
    left out when the design is placed)."""
    points = design_points(cfg.design, cfg.beta_sweep, cfg.sweep_budget_fraction, cfg.objective_budget_fraction)
    return tuple(p for p in points if p.kind in MODEL_KINDS)


def job_plan(cfg: CompareConfig, side: int = 8) -> tuple[tuple[str, str, float], ...]:
    """Every stage of the job in order, with its training time in seconds (a compute budget's idle estimate for
    images of `side` px, by default digits'; 0 for measurements): each design point trained, then measured; then
    with `conditional` each twin trained (in the design's pool where it has one) and measured."""
    preset = preset_for(side, str(pick_device(cfg.device)))
    budget = cfg.budget or preset.budget
    points = planned_points(cfg)

    def trained(p: DesignPoint) -> tuple[str, str, float]:
        return ("train", p.name, expected_seconds(budget.scaled(p.budget), preset))

    twins = tuple(stage for p in planned_conditional(cfg, side) for stage in (trained(p), ("measure", p.name, 0.0)))
    return tuple(trained(p) for p in points) + tuple(("measure", p.name, 0.0) for p in points) + twins


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
    cfg_cls: Any = model_classes(kind)[0]  # every registered config class has `sized_for`
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
        warmup_steps=TrainConfig.warmup_steps if cfg.warmup_steps is None else cfg.warmup_steps,
        snapshots=tuple(sorted(cfg.budget_points)),
    )
    model_cfg, train_cfg = apply_overrides(model_cfg, train_cfg, cfg.overrides.get(kind, {}))
    classes = conditional_classes(model_cfg, test)  # a conditional model's K, from the data's labels
    return RunConfig(kind, cfg.data, cfg.data_dir, test.shape, test.levels, model_cfg, train_cfg, classes)


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
        log(f"{name or run_cfg.kind}: reusing the finished run in {run_dir}")
        return
    resume = (run_dir / CHECKPOINT_FILE).is_file()
    log(f"{name or run_cfg.kind}: {'resuming' if resume else 'training'} for {Budget.of(run_cfg.train)}")
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
    budget = filled_budget(cfg)
    return budgeted_run(
        point.kind, cfg, test, budget if point.budget == 1 else budget.scaled(point.budget), dict(point.changes)
    )


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
    todo, runs = design_runs(cfg, out, design, test)
    if in_parallel(cfg, len(todo)):
        left = reuse_finished(todo, runs, train, test, log, progress, watch)
        if left:
            log(f"training {len(left)} runs, {cfg.jobs} at a time (one process each)")
        in_processes(training_tasks(left, runs, cfg), cfg.jobs, lambda name, _: trained(name, log, watch))
        return runs
    for name, run_cfg in todo.items():
        if watch:
            watch(JobEvent("train", name))
        train_or_reuse(run_cfg, runs[name], train, test, log, progress, watch, name)
    return runs


def design_runs(
    cfg: CompareConfig, out: Path, design: Design, test: ImageData
) -> tuple[dict[str, RunConfig], dict[str, Path]]:
    """Each point's run config and its folder `out/runs/NAME`, in the design's order."""
    todo = {placed.point.name: point_run(placed.point, cfg, test) for placed in design.placed}
    return todo, {name: out / "runs" / name for name in todo}


def in_parallel(cfg: CompareConfig, runs: int) -> bool:
    """Whether the runs are trained and measured in worker processes (`in_processes`): several on a CPU."""
    return cfg.jobs > 1 and runs > 1 and pick_device(cfg.device).type == "cpu"


def reuse_finished(
    todo: dict[str, RunConfig],
    runs: dict[str, Path],
    train: ImageData,
    test: ImageData,
    log: Log,
    progress: bool,
    watch: Watch | None,
) -> dict[str, RunConfig]:
    """The finished runs checked against their settings and reused here, as in turn; the runs left to train."""
    finished = {name for name in todo if (runs[name] / METRICS_FILE).is_file()}
    for name in finished:
        train_or_reuse(todo[name], runs[name], train, test, log, progress, watch, name)
    return {n: c for n, c in todo.items() if n not in finished}


def trained(name: str, log: Log, watch: Watch | None) -> None:
    """A run trained in a worker: its stage on the display, a line in the log."""
    if watch:
        watch(JobEvent("train", name))
    log(f"{name}: trained")


def training_tasks(todo: dict[str, RunConfig], runs: dict[str, Path], cfg: CompareConfig) -> dict[str, Task]:
    """One task per run left to train (`train_one_run`), named `train:NAME`, in the design's order: the runs are
    independent and seeded, each trained at its own (saved) thread count, so their weights are those of
    training them in turn."""
    kinds = dict(MODEL_KINDS)
    return {
        f"train:{name}": Task(train_one_run, (run_cfg, str(runs[name]), cfg.data, cfg.data_dir, kinds))
        for name, run_cfg in todo.items()
    }


@dataclass(frozen=True)
class Task:
    """A call a worker process makes, `fn(*args)`, once the tasks named in `after` have finished."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    after: tuple[str, ...] = ()


def in_processes(tasks: Mapping[str, Task], jobs: int, done: Callable[[str, Any], None]) -> None:
    """Each named task in a fresh process, at most `jobs` at once (spawned: a forked torch may hang in its thread
    pools): whenever a process is free, the first task in the mapping's order whose `after` have all finished
    starts; `done(name, result)` as each finishes. The first error, or a stop signal, stops the others
    (`stop_workers`) and is raised here."""
    waiting = dict(tasks)
    unknown = {a for t in waiting.values() for a in t.after} - set(waiting)
    if unknown:
        raise ValueError(f"tasks wait on tasks that are not there: {sorted(unknown)}")
    finished: set[str] = set()
    context = multiprocessing.get_context("spawn")
    stopping = context.Event()
    with ProcessPoolExecutor(jobs, context, initializer=start_worker, initargs=(stopping,)) as pool:
        running: dict[Future[Any], str] = {}
        try:
            while waiting or running:
                ready = [name for name, task in waiting.items() if finished.issuperset(task.after)]
                for name in ready[: jobs - len(running)]:
                    task = waiting.pop(name)
                    running[pool.submit(task.fn, *task.args)] = name
                if not running:
                    raise ValueError(f"tasks wait on each other: {sorted(waiting)}")
                complete, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in complete:
                    name = running.pop(future)
                    done(name, future.result())
                    finished.add(name)
        except BaseException:
            stop_workers(pool, running, stopping)
            raise


#: set in a training process when the job is stopping: a run it is handed then is not started
STOPPING: Any = None


def start_worker(stopping: Any) -> None:
    """A training process's start: SIGTERM and SIGHUP unwind it like Ctrl-C until a trainer takes them over, and
    it keeps the job's stop flag."""
    global STOPPING
    STOPPING = stopping
    stop_on_signals()
    one_line_warnings()


def stop_workers(pool: ProcessPoolExecutor, pending: Mapping[Future[Any], str], stopping: Any) -> None:
    """After an error or a stop signal in the parent: the runs not started are dropped (those the pool had
    already handed on see the stop flag and return) and the running ones are sent SIGTERM, so that each writes a
    checkpoint at its current step and stops (a later `compare` resumes them), instead of the pool training
    every queued run to the end before the job can exit."""
    stopping.set()
    for future in pending:
        future.cancel()
    for process in list(getattr(pool, "_processes", {}).values()):  # the pool's own workers (no public handle)
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)


def train_one_run(
    run_cfg: RunConfig, run_dir: str, data: str, data_dir: str | None, kinds: dict[str, tuple[str, str, str]]
) -> None:
    """`train_or_reuse` in a process of its own (`train_in_processes`): the parent's registry (`kinds`, which may
    hold a kind registered at run time), the data loaded here, no display; nothing once the job is stopping."""
    if STOPPING is not None and STOPPING.is_set():
        return
    MODEL_KINDS.update(kinds)
    train, test = load_data(data, "train", data_dir), load_data(data, "test", data_dir)
    train_or_reuse(run_cfg, Path(run_dir), train, test, lambda _message: None, progress=False)


def measure_one_run(
    run_dir: str,
    cfg: EvalConfig,
    fractions: tuple[float, ...],
    data: str,
    data_dir: str | None,
    features: FeatureExtractor,
    device: str,
    kinds: dict[str, tuple[str, str, str]],
) -> tuple[RunResult, dict[str, Any], dict[float, Measurement]]:
    """`measure_run` in a process of its own at one thread, and the run's measurements at the budget's
    `fractions` (`snapshot_measurements`): what `run_seed` measures of each run in turn, the test images loaded
    here."""
    measuring_here(kinds)
    test = load_data(data, "test", data_dir)
    quiet: Log = lambda _message: None
    result, images, _ = measure_run(Path(run_dir), cfg, test, features, quiet, device)
    return result, images, snapshot_measurements(Path(run_dir), fractions, cfg, test, features, quiet, device)


def with_preset(cfg: CompareConfig, side: int) -> CompareConfig:
    """`cfg` with what it leaves open (budget, batch, learning rate and its warm-up, steps sweep, the bound's test
    images) from the preset for images of `side` px on its device."""
    preset = preset_for(side, str(pick_device(cfg.device)))
    evaluation = cfg.evaluation if cfg.evaluation.n_eval is not None else replace(cfg.evaluation, n_eval=preset.n_eval)
    return replace(
        cfg,
        budget=preset.budget if cfg.budget is None else cfg.budget,
        batch_size=cfg.batch_size or preset.batch_size,
        lr=cfg.lr or preset.lr,
        warmup_steps=preset.warmup_steps if cfg.warmup_steps is None else cfg.warmup_steps,
        steps=cfg.steps or preset.steps,
        evaluation=evaluation,
    )


#: `compare --quick`: a smoke test's evaluation (each model's default draws for the bound, not as many as a precision
#: needs: an untrained model drives those to the cap) and a smaller job around it
QUICK_EVALUATION: dict[str, Any] = {
    "n_eval": 100,
    "iwae_n": 50,
    "speed_n": 8,
    "nfe": (5, 10),
    "quality_steps": 10,
    "bpd_se": None,
    "replicates": 50,
}
QUICK: dict[str, Any] = {
    "beta_sweep": (4.0,),
    "steps": (1, 2, 10),
    "steps_replicates": 50,
    "interpolation_pairs": 8,
    "timing_repeats": 3,
    "information_images": 500,
    "information_draws": 64,
    "objective_budget_fraction": 0.5,
}


def quick_config(cfg: CompareConfig) -> CompareConfig:
    """`cfg` as `compare --quick` runs it: `QUICK` and `QUICK_EVALUATION`, at most 32 samples."""
    evaluation = replace(cfg.evaluation, n_samples=min(cfg.evaluation.n_samples, 32), **QUICK_EVALUATION)
    return replace(cfg, evaluation=evaluation, **QUICK)


def seed_folder(out: Path, cfg: CompareConfig, index: int) -> Path:
    """Where seed number `index` of a comparison keeps its runs: `out` for the first, `out/seed-S` after."""
    return out if index == 0 else out / f"seed-{cfg.seed + index}"


def estimated_seconds(cfg: CompareConfig, side: int) -> float:
    """A rough wall-clock estimate of the whole comparison on an idle machine, per seed: every design point's
    training (`expected_seconds`) and the preset's measurement time (its core design's, scaled by the runs
    measured), shared among `cfg.jobs` processes where compare runs them in processes (`in_parallel`; the preset's
    time was measured in two); with `conditional`, the ends' twins, trained in the same pool (`twin_runs`) and
    measured in turn after it."""
    cfg = with_preset(cfg, side)
    preset = preset_for(side, str(pick_device(cfg.device)))
    points, twins = planned_points(cfg), planned_conditional(cfg, side)
    budget = filled_budget(cfg)

    def trained(group: tuple[DesignPoint, ...]) -> float:
        return sum((expected_seconds(budget.scaled(p.budget), preset) for p in group), 0.0)

    share = cfg.jobs if in_parallel(cfg, len(points)) else 1
    measured = preset.measure_seconds / CORE_RUNS * 2  # one run's measurement in one process
    design = (trained(points) + trained(twins) + measured * len(points)) / share
    return cfg.seeds * (design + measured * len(twins))


def planned_conditional(cfg: CompareConfig, side: int) -> tuple[DesignPoint, ...]:
    """The conditional twins the job trains after the design's points (none without `cfg.conditional`)."""
    if not cfg.conditional:
        return ()
    from elbolab.experiments.conditional import planned_twins  # it trains as this module trains

    return planned_twins(cfg, side)


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
    use_threads(cfg.measure_threads)  # a fixed count, not the machine's cores: the same arithmetic everywhere
    train, test = load_data(cfg.data, "train", cfg.data_dir), load_data(cfg.data, "test", cfg.data_dir)
    cfg = with_preset(cfg, test.shape[-1])
    atomic_write_json(out / "compare-config.json", asdict(cfg))
    if watch:
        watch(JobEvent("plan", plan=job_plan(cfg, test.shape[-1])))
    log("feature network for sample quality")
    features, why_not = select_features(cfg.data, features_kind, data_dir=cfg.data_dir)
    seeds: list[SeedResult] = []
    images: dict[str, dict[str, Any]] = {}
    twins: dict[str, RunResult] = {}
    for index in range(cfg.seeds):
        seed_cfg = replace(cfg, seed=cfg.seed + index, evaluation=replace(cfg.evaluation, seed=cfg.seed + index))
        if cfg.seeds > 1:
            log(f"seed {seed_cfg.seed} ({index + 1} of {cfg.seeds})")
        result, seed_images = run_seed(
            seed_cfg, seed_folder(out, cfg, index), train, test, features, log, progress, watch
        )
        if cfg.conditional:  # the seed's own twins, judged on its models, folded below with its other contrasts
            from elbolab.experiments.conditional import with_twins  # it trains as this module trains

            result, seed_twins = with_twins(
                seed_cfg, seed_folder(out, cfg, index), train, test, features, result, log, watch
            )
            twins = twins or seed_twins
        atomic_write_json(out / f"seed-{seed_cfg.seed}-results.json", result.to_json())
        seeds.append(result)
        images = images or seed_images
    if watch:
        watch(JobEvent("done"))
    first = seeds[0]
    contrasts = contrast_power(fold_seeds([s.contrasts for s in seeds]), cfg.seeds)
    tables = [s.attribution for s in seeds if s.attribution is not None]
    results = CompareResults(
        config=cfg,
        machine=Machine.from_json(machine_info()),
        data=data_info(test),
        feature_net=FeatureNet(features.name, why_not),
        models=first.models,
        beta_sweep=first.beta_sweep,
        contrasts=contrasts,
        seeds=tuple(seeds),
        design=first.design,
        attribution=table_power(fold_tables(tables), cfg.seeds) if tables else None,
        calibration=preset_for(test.shape[-1], str(pick_device(cfg.device))).training_rate(),
        conditional=twins,  # the first seed's; every seed's conditional contrasts are folded above
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
    """One seed's comparison: place the design, train every point, measure each once (its model kept for the
    evidence beyond), gather the evidence of every pair and judge it; the attribution table from every pair.
    The models' interpolations are the paths judged, the learned end's quality samples its point of the steps
    sweep and of the β-sweep."""
    design = design_for(cfg, test)
    for name, why in design.absent:
        log(f"design: {name} is not in this run ({why})")
    ev_cfg = replace(cfg.evaluation, interpolation_pairs=cfg.interpolation_pairs)
    todo, runs = design_runs(cfg, out, design, test)
    judged = set(judged_points(design))
    fractions = {name: tuple(sorted(cfg.budget_points)) if name in judged else () for name in runs}
    ends, merged = design.pair("ends"), design.pair("merged-fixed")
    if in_parallel(cfg, len(runs)):
        twins = twin_runs(cfg, design, out, test)
        found = measured_in_processes(
            cfg, todo, runs, fractions, ev_cfg, features, train, test, ends, log, watch, twins
        )
    else:
        found = measured_in_turn(cfg, design, fractions, ev_cfg, features, out, train, test, ends, log, progress, watch)
    models, loaded = found.models, found.loaded
    reference = quality_reference(test, ev_cfg.n_samples)
    held_out = train.images[: ev_cfg.n_samples]
    x0, _ = pair_images(test, cfg.interpolation_pairs, pick_device(cfg.device))
    log("timings, the β-sweep's reconstructions and the evidence of each pair")
    forward, code = found.information
    steps = with_steps_points(found.sweep, models, ends)
    paths = {name: r.measurement.interpolation for name, r in models.items() if r.measurement.interpolation}
    timings = paired_timings(loaded, ends, merged, x0, cfg)
    sweep = sweep_points(design, models, loaded, held_out, reference, test.levels, features, cfg)
    pair = design.pair("objective")
    objective = {"elbo-weighted": models[pair[0]], "simple": models[pair[1]]} if pair else {}
    evidence = Evidence(
        models={k: r.measurement for k, r in models.items()},
        dims=test.dims,
        nfe=ev_cfg.quality_steps,
        sweep=sweep,
        floors=found.floors,
        forward_information=forward,
        code_information=code,
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
        objective_pair=pair,
    )
    table = attribution(design, pair_evidence(design, models, loaded, x0, cfg))
    if cfg.budget_points:
        table = with_budget_points(table, budget_tables(tuple(sorted(cfg.budget_points)), design, found.along))
    curves = tuple(c for c in (forward, code) if c is not None)
    return SeedResult(
        cfg.seed, models, sweep, found.floors, curves, steps, paths, timings, objective, judge(evidence), design, table
    ), found.images


@dataclass
class SeedMeasurements:
    """What `run_seed` measures of one seed's runs before it times and judges them: each run's measurement, its
    images and its measurements along the budget, its model; the fixed end's steps sweep (`fixed_end_sweep`);
    the information curves of the two ends (`information_curves`); the real-data floors (`seed_floors`)."""

    models: dict[str, RunResult] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    along: dict[str, dict[float, Measurement]] = field(default_factory=dict)
    loaded: dict[str, GenerativeModel] = field(default_factory=dict)
    sweep: tuple[StepsPoint, ...] = ()
    information: tuple[InformationCurve | None, InformationCurve | None] = (None, None)
    floors: Floors | None = None


def measured_in_processes(
    cfg: CompareConfig,
    todo: dict[str, RunConfig],
    runs: dict[str, Path],
    fractions: dict[str, tuple[float, ...]],
    ev_cfg: EvalConfig,
    features: FeatureExtractor,
    train: ImageData,
    test: ImageData,
    ends: tuple[str, str] | None,
    log: Log,
    watch: Watch | None,
    twins: tuple[dict[str, RunConfig], dict[str, Path]] = ({}, {}),
) -> SeedMeasurements:
    """The runs left trained and every run measured in worker processes, `cfg.jobs` at once, in one pool: a run's
    measurement starts once it is trained and a process is free, beside the others' training, so no core waits
    for the slowest run of a stage; the steps sweep, the information curves and the floors are tasks of their
    own. Each worker measures at one thread: the same arithmetic on every machine. `twins` (configs and folders)
    are runs trained in the same pool, after the design's, and measured by their caller (`compare --conditional`'s
    twins: `twin_runs`)."""
    left = reuse_finished(todo, runs, train, test, log, False, watch)
    kinds = dict(MODEL_KINDS)
    twins_left = reuse_finished(*twins, train, test, log, False, watch)

    def after(*names: str) -> tuple[str, ...]:
        return tuple(f"train:{n}" for n in names if n in left)

    tasks = {**training_tasks(left, runs, cfg), **training_tasks(twins_left, twins[1], cfg)}
    if ends is not None:
        learned, fixed = ends
        tasks["steps"] = Task(sweep_one_run, (str(runs[fixed]), cfg, features, kinds), after(fixed))
        dirs = (str(runs[learned]), str(runs[fixed]))
        tasks["information"] = Task(information_one_pair, (dirs, cfg, kinds), after(learned, fixed))
    tasks["floors"] = Task(floors_one_seed, (cfg, features, kinds))
    for name, run_dir in runs.items():
        args = (str(run_dir), ev_cfg, fractions[name], cfg.data, cfg.data_dir, features, cfg.device, kinds)
        tasks[f"measure:{name}"] = Task(measure_one_run, args, after(name))
    found = SeedMeasurements()

    def done(task: str, result: Any) -> None:
        stage, _, name = task.partition(":")
        if stage == "train":
            trained(name, log, watch)
        elif stage == "measure":
            found.models[name], found.images[name], found.along[name] = result
            found.loaded[name] = load_run(runs[name], cfg.device, say_live=False)[1]
            if watch:
                watch(JobEvent("measure", name, detail="measured"))
            log(f"{name}: measured")
        elif stage == "steps":
            found.sweep = result
        elif stage == "information":
            found.information = result
        else:
            found.floors = result

    also = f" and {len(twins_left)} conditional twins" if twins_left else ""
    log(f"training {len(left)} runs{also} and measuring {len(runs)}, {cfg.jobs} at a time (one process each)")
    in_processes(tasks, cfg.jobs, done)
    found.models = {name: found.models[name] for name in runs}  # in the design's order, not the order they finished
    return found


def twin_runs(
    cfg: CompareConfig, design: Design, out: Path, test: ImageData
) -> tuple[dict[str, RunConfig], dict[str, Path]]:
    """With `cfg.conditional`, the ends' conditional twins (`conditional_points`) as runs: their configs and their
    folders `out/runs/NAME-conditional`, where `conditional_contrasts` finds them trained; none without it."""
    if not cfg.conditional:
        return {}, {}
    from elbolab.experiments.conditional import conditional_points  # it trains as this module trains

    todo = {twin.name: point_run(twin, cfg, test) for _, twin in conditional_points(design, test.shape[-1])}
    return todo, {name: out / "runs" / name for name in todo}


def measured_in_turn(
    cfg: CompareConfig,
    design: Design,
    fractions: dict[str, tuple[float, ...]],
    ev_cfg: EvalConfig,
    features: FeatureExtractor,
    out: Path,
    train: ImageData,
    test: ImageData,
    ends: tuple[str, str] | None,
    log: Log,
    progress: bool,
    watch: Watch | None,
) -> SeedMeasurements:
    """What `measured_in_processes` measures, in this process, one run after another."""
    runs = train_models(cfg, out, log, progress, train, test, watch, design)
    found = SeedMeasurements()
    for name, run_dir in runs.items():
        named = watched_log(log, watch, name)
        found.models[name], found.images[name], found.loaded[name] = measure_run(
            run_dir, ev_cfg, test, features, named, cfg.device
        )
        found.along[name] = snapshot_measurements(run_dir, fractions[name], ev_cfg, test, features, named, cfg.device)
    log("floors, information curves and the steps sweep")
    if ends is not None:
        learned, fixed = (found.loaded[name] for name in ends)
        found.sweep = fixed_end_sweep(fixed, test, features, cfg)
        found.information = information_curves(learned, fixed, train, cfg)
    found.floors = seed_floors(cfg, train, test, features)
    return found


def measuring_here(kinds: dict[str, tuple[str, str, str]]) -> None:
    """A measuring task's start in its worker: nothing once the job is stopping, the parent's registry (`kinds`,
    which may hold a kind registered at run time), one thread."""
    if STOPPING is not None and STOPPING.is_set():
        raise ElbolabError("the job is stopping")
    MODEL_KINDS.update(kinds)
    use_threads(1)


def sweep_one_run(
    run_dir: str, cfg: CompareConfig, features: FeatureExtractor, kinds: dict[str, tuple[str, str, str]]
) -> tuple[StepsPoint, ...]:
    """`fixed_end_sweep` of a trained run in a worker process (`measured_in_processes`)."""
    measuring_here(kinds)
    model = load_run(Path(run_dir), cfg.device, say_live=False)[1]
    return fixed_end_sweep(model, load_data(cfg.data, "test", cfg.data_dir), features, cfg)


def information_one_pair(
    run_dirs: tuple[str, str], cfg: CompareConfig, kinds: dict[str, tuple[str, str, str]]
) -> tuple[InformationCurve | None, InformationCurve | None]:
    """`information_curves` of the two ends' trained runs (learned, fixed) in a worker process."""
    measuring_here(kinds)
    learned, fixed = (load_run(Path(d), cfg.device, say_live=False)[1] for d in run_dirs)
    return information_curves(learned, fixed, load_data(cfg.data, "train", cfg.data_dir), cfg)


def floors_one_seed(cfg: CompareConfig, features: FeatureExtractor, kinds: dict[str, tuple[str, str, str]]) -> Floors:
    """`seed_floors` in a worker process."""
    measuring_here(kinds)
    return seed_floors(
        cfg, load_data(cfg.data, "train", cfg.data_dir), load_data(cfg.data, "test", cfg.data_dir), features
    )


def seed_floors(cfg: CompareConfig, train: ImageData, test: ImageData, features: FeatureExtractor) -> Floors:
    """The sample figures' real-data floors (`reference_floors`): held-out training images and blurred ones
    against the test reference."""
    n = cfg.evaluation.n_samples
    return reference_floors(
        train.images[:n],
        test.images,
        quality_reference(test, n),
        test.levels,
        features,
        replicates=cfg.evaluation.replicates,
        seed=cfg.seed,
        real_source=f"{train.name} training images",
    )


def information_curves(
    learned: GenerativeModel, fixed: GenerativeModel, train: ImageData, cfg: CompareConfig
) -> tuple[InformationCurve | None, InformationCurve | None]:
    """Each end's `information_curve` on the same training images: the fixed end's (the forward process along t)
    and the learned end's (its code); None where an end declares none."""
    x = train.model_range(slice(0, min(len(train), cfg.information_images)))
    return (
        fixed.information_curve(x, cfg.information_draws, cfg.seed),
        learned.information_curve(x, cfg.information_draws, cfg.seed),
    )


def fixed_end_sweep(
    fixed: GenerativeModel, test: ImageData, features: FeatureExtractor, cfg: CompareConfig
) -> tuple[StepsPoint, ...]:
    """Sample figures against NFE for the fixed end: `cfg.steps_samplers` at the NFE targets `cfg.steps`
    (`frontier_sweep`)."""
    return frontier_sweep(
        fixed,
        quality_reference(test, cfg.evaluation.n_samples),
        test.levels,
        features,
        targets=cfg.steps or (),
        samplers=cfg.steps_samplers,
        n=cfg.evaluation.n_samples,
        replicates=cfg.steps_replicates,
        seed=cfg.seed,
    )


def with_steps_points(
    chain: tuple[StepsPoint, ...], models: dict[str, RunResult], ends: tuple[str, str] | None
) -> tuple[StepsPoint, ...]:
    """The fixed end's steps sweep beside both ends' quality samples, measured already (the fixed end's: the
    sampler `compare` uses; the learned end's: its one pass), on the same axes."""
    if ends is None:
        return ()
    learned, fixed = ends
    measured = (models[name].measurement for name in (fixed, learned))
    return with_points(chain, [StepsPoint.of(m) for m in measured if m.quality_samples and m.samples])


def seeded(model: GenerativeModel, seed: int) -> torch.Generator:
    """A generator on the model's device, seeded."""
    return torch.Generator(model.device).manual_seed(seed)


def sampling_timing(
    a: str, model_a: GenerativeModel, b: str, model_b: GenerativeModel, x: Any, cfg: CompareConfig
) -> PairedTiming:
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
    design: Design, models: dict[str, RunResult], loaded: dict[str, GenerativeModel], x: Any, cfg: CompareConfig
) -> dict[tuple[str, str], PairEvidence]:
    """What each judged pair's row is read from: both measurements (their interpolation paths among them) and an
    alternating timing of their sampling."""
    found: dict[tuple[str, str], PairEvidence] = {}
    for p in design.pairings:
        if p.pair is None or p.pair in found:
            continue
        a, b = p.pair
        timing = sampling_timing(a, loaded[a], b, loaded[b], x, cfg)
        found[p.pair] = PairEvidence(models[a].measurement, models[b].measurement, timing)
    return found


def sweep_points(
    design: Design,
    models: dict[str, RunResult],
    loaded: dict[str, GenerativeModel],
    held_out: Any,
    reference: Any,
    levels: int,
    features: FeatureExtractor,
    cfg: CompareConfig,
) -> tuple[SweepPoint, ...]:
    """The β-sweep on the rate–distortion axes: its points, and the learned end where it is of their kind, by β."""
    names = [p.point.name for p in design.placed if p.point.role == SWEEP]
    ends = design.pair("ends")
    kinds = {design.point(n).point.kind for n in names}
    if ends is not None and design.point(ends[0]).point.kind in kinds:
        names.append(ends[0])
    found = [beta_point(models[n], loaded[n], held_out, reference, levels, features, cfg) for n in names]
    return tuple(sorted(found, key=lambda p: p.beta))


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
