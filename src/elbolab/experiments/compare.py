"""`elbolab compare`: every registered model kind trained under one wall-clock budget on one data set,
measured through the same contract, with a verdict per contrast (`verdicts`).

Every number in the results is measured here; each verdict is a rule over those numbers that
could come out either way, and states the rule it applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.evaluate.features import select_features
from elbolab.evaluate.run import EvalConfig, Log
from elbolab.experiments.results import CompareResults, RunResult
from elbolab.experiments.runs import data_info, measure_run
from elbolab.experiments.verdicts import judge, sweep_point
from elbolab.train.checkpoint import atomic_write_json
from elbolab.machine import machine_info
from elbolab.train.api import fit_run
from elbolab.train.config import TrainConfig
from elbolab.registry import MODEL_KINDS, model_classes
from elbolab.train.run import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, RunConfig, apply_overrides, pick_device,
                               read_run_config)

#: the kinds compared: every registered model
KINDS = tuple(MODEL_KINDS)


@dataclass(frozen=True)
class CompareConfig:
    """What `compare` trains, and how it measures (`evaluation`)."""

    data: str = "digits"
    data_dir: str | None = None
    budget: float = 60.0                       # training seconds per model
    seed: int = 0
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    beta_sweep: tuple[float, ...] = (0.25, 4.0)  # extra VAEs placed on the rate–distortion axes
    sweep_budget_fraction: float = 0.25        # of `budget`, per β-sweep VAE
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per kind: extra --set keys
    device: str = "auto"                       # where every model trains and is measured: auto | cpu | cuda[:N]

    def training_seconds(self) -> float:
        """The training budgets added up: one per kind, and the β-sweep's shares."""
        return self.budget * (len(KINDS) + self.sweep_budget_fraction * len(self.beta_sweep))


def budgeted_run(kind: str, cfg: CompareConfig, test: ImageData, budget: float,
                 model_changes: dict[str, Any] | None = None) -> RunConfig:
    """The typed run config of one model in the comparison: the kind's configuration sized for these images,
    a wall-clock budget, the seed, no periodic evaluation; then the user's `--set` keys for that kind."""
    cfg_cls, _ = model_classes(kind)
    device = str(pick_device(cfg.device))
    model_cfg = replace(cfg_cls.sized_for(test.shape[-1], device), **(model_changes or {}))
    train_cfg = TrainConfig(steps=1_000_000, max_seconds=budget, seed=cfg.seed, eval_every=0, checkpoint_every=500,
                            device=cfg.device)
    model_cfg, train_cfg = apply_overrides(model_cfg, train_cfg, cfg.overrides.get(kind, {}))
    return RunConfig(kind, cfg.data, cfg.data_dir, tuple(test.shape), test.levels, model_cfg, train_cfg)


def train_or_reuse(run_cfg: RunConfig, run_dir: Path, train: ImageData, test: ImageData, log: Log,
                   progress: bool) -> None:
    """Train a run; a finished run with the same settings is reused, an interrupted one resumed."""
    if (run_dir / CONFIG_FILE).is_file() and read_run_config(run_dir) != run_cfg:
        raise ElbolabError(f"{run_dir} holds a {run_cfg.kind} run trained with other settings (budget, seed or "
                           f"model); choose another --out or delete it")
    if (run_dir / METRICS_FILE).is_file():
        log(f"{run_cfg.kind}: reusing the finished run in {run_dir}")
        return
    resume = (run_dir / CHECKPOINT_FILE).is_file()
    log(f"{run_cfg.kind}: {'resuming' if resume else 'training'} for {run_cfg.train.max_seconds:.0f} s")
    fit_run(run_cfg, run_dir, train, test, resume=resume, progress=progress)


def train_models(cfg: CompareConfig, out: Path, log: Log, progress: bool, train: ImageData | None = None,
                 test: ImageData | None = None) -> dict[str, Path]:
    """Train (or pick up) one run per kind; returns their folders."""
    train = train or load_data(cfg.data, "train", cfg.data_dir)
    test = test or load_data(cfg.data, "test", cfg.data_dir)
    runs = {kind: out / "runs" / kind for kind in KINDS}
    for kind, run_dir in runs.items():
        train_or_reuse(budgeted_run(kind, cfg, test, cfg.budget), run_dir, train, test, log, progress)
    return runs


def train_sweep(cfg: CompareConfig, out: Path, log: Log, progress: bool, train: ImageData,
                test: ImageData) -> dict[float, Path]:
    """Train (or pick up) the β-sweep VAEs, each on `sweep_budget_fraction` of the budget; returns their folders."""
    sweep = {beta: out / "runs" / f"vae-beta{beta:g}" for beta in cfg.beta_sweep}
    for beta, run_dir in sweep.items():
        run_cfg = budgeted_run("vae", cfg, test, cfg.budget * cfg.sweep_budget_fraction, {"beta": beta})
        log(f"β-sweep: VAE with β = {beta:g} for {run_cfg.train.max_seconds:.0f} s")
        train_or_reuse(run_cfg, run_dir, train, test, log, progress)
    return sweep


def run_compare(cfg: CompareConfig, out: Path, log: Log = print, progress: bool = True,
                features_kind: str = "builtin") -> tuple[CompareResults, dict[str, dict[str, Any]]]:
    """Train, measure and judge; returns the results and each model's images."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "compare-config.json", asdict(cfg))
    train, test = load_data(cfg.data, "train", cfg.data_dir), load_data(cfg.data, "test", cfg.data_dir)
    runs = train_models(cfg, out, log, progress, train, test)
    sweep_runs = train_sweep(cfg, out, log, progress, train, test)
    log("feature network for sample quality")
    features, why_not = select_features(cfg.data, features_kind, data_dir=cfg.data_dir)
    models: dict[str, RunResult] = {}
    images: dict[str, dict[str, Any]] = {}
    for kind, run_dir in runs.items():
        models[kind], images[kind] = measure_run(run_dir, cfg.evaluation, test, features, log, cfg.device)
    sweep_only = replace(cfg.evaluation, parts=("information",))
    sweep = [sweep_point(measure_run(run_dir, sweep_only, test, features, log, cfg.device)[0])
             for run_dir in sweep_runs.values()]
    sweep.append(sweep_point(models["vae"]))
    sweep = tuple(sorted(sweep, key=lambda p: p.beta))
    contrasts = judge({k: r.measurement for k, r in models.items()}, sweep, test.dims, cfg.evaluation.quality_steps)
    results = CompareResults(config=asdict(cfg), machine=machine_info(), data=data_info(test),
                             feature_net={"name": features.name, "inception_unavailable_because": why_not},
                             models=models, beta_sweep=sweep, contrasts=contrasts)
    return results, images
