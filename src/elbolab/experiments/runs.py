"""Run-level entry points: `elbolab eval` on one run, and the measurements `elbolab report` compares."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.evaluate.features import FeatureExtractor, select_features
from elbolab.evaluate.run import (
    PILOT_CACHE_FILE,
    DiffusersSource,
    EvalConfig,
    EvalResult,
    Log,
    Pilot,
    measure,
)
from elbolab.evaluate.speed import PassCounter
from elbolab.experiments.design import Design, DesignPoint, declared, place
from elbolab.experiments.results import CompareResults, RunResult
from elbolab.experiments.verdicts import Evidence, judge, sweep_point
from elbolab.machine import machine_info
from elbolab.model import GenerativeModel
from elbolab.records import DataInfo, FeatureNet, Machine
from elbolab.train.run import (
    METRICS_FILE,
    WEIGHTS_FILE,
    RunConfig,
    build_model,
    list_checkpoints,
    load_run,
    read_metrics,
    read_run_config,
)


def data_info(test: ImageData) -> DataInfo:
    """The data set's name, shape, levels and size."""
    return DataInfo(test.name, tuple(test.shape), test.levels, test.dims, len(test))


def pilot_images(run_dir: Path, run_cfg: RunConfig, model: GenerativeModel, cfg: EvalConfig) -> Pilot | None:
    """The run's training images where the bound's estimator (the model's default, or the one `cfg` asks for)
    fits an importance proposal on a pilot pass; the fit is kept in the run folder, keyed by the weights."""
    estimator = model.check_estimator(cfg.estimator)
    wanted = estimator.proposal == "importance" or (cfg.proposal == "importance" and estimator.method == "mc")
    if not (wanted and "likelihood" in cfg.parts):
        return None
    return Pilot(
        load_data(run_cfg.data, "train", run_cfg.data_dir),
        Path(run_dir) / PILOT_CACHE_FILE,
        {"weights": weights_identity(Path(run_dir))},
    )


def weights_identity(run_dir: Path) -> dict[str, Any]:
    """What identifies the weights `load_run` reads: the training step and the SHA-256 of their file."""
    weights = run_dir / WEIGHTS_FILE
    path = weights if weights.is_file() else list_checkpoints(run_dir)[0]
    metrics = run_dir / METRICS_FILE
    step = read_metrics(run_dir)["step"] if metrics.is_file() else None
    return {"step": step, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def measure_run(
    run_dir: Path,
    cfg: EvalConfig,
    test: ImageData,
    features: FeatureExtractor | None,
    log: Log,
    device: str = "auto",
) -> tuple[RunResult, dict[str, Any], GenerativeModel]:
    """`evaluate.measure` on a trained run, with its training figures beside; the images behind it and the
    loaded model (so that a caller measuring more need not load it again)."""
    run_cfg, model = load_run(run_dir, device)
    metrics = read_metrics(run_dir)
    measurement, images = measure(model, test, cfg, features, log, pilot_images(run_dir, run_cfg, model, cfg))
    return (
        RunResult(
            measurement,
            int(metrics["step"]),
            float(metrics["train_images_per_s"]),
            float(metrics["train_seconds"]),
            run_cfg.model,
            None if metrics.get("train_flops") is None else float(metrics["train_flops"]),
            run_cfg.train.threads,
        ),
        images,
        model,
    )


def measure_runs(
    run_dirs: list[Path], n_samples: int = 256, features_kind: str = "builtin", log: Log = print, device: str = "auto"
) -> tuple[CompareResults, dict[str, dict[str, Any]]]:
    """`elbolab report`: measure existing runs (one per kind, same data) and judge what they allow."""
    if len({Path(r).resolve() for r in run_dirs}) != len(run_dirs):
        raise ElbolabError("the same run folder was given twice")
    configs = {Path(r): read_run_config(Path(r)) for r in run_dirs}
    for run_dir in configs:
        read_metrics(run_dir)  # a damaged metrics.json is refused before any work
    kinds = [c.kind for c in configs.values()]
    if len(set(kinds)) != len(kinds):
        raise ElbolabError(f"give at most one run of each kind, got {', '.join(kinds)}")
    datas = {(c.data, c.data_dir) for c in configs.values()}
    if len(datas) != 1:
        raise ElbolabError("the runs were trained on different data sets; a report compares runs on one data set")
    data, data_dir = datas.pop()
    evaluation = EvalConfig(n_samples=n_samples)
    test = load_data(data, "test", data_dir)
    features, why_not = select_features(data, features_kind, data_dir=data_dir)
    models, images = {}, {}
    for run_dir, run_cfg in configs.items():
        models[run_cfg.kind], images[run_cfg.kind], _ = measure_run(run_dir, evaluation, test, features, log, device)
    design = runs_design(configs)
    ends, merged = design.pair("ends"), design.pair("merged-fixed")
    try:
        sweep = (sweep_point(models[ends[0]]),) if ends else ()
    except TypeError:  # the learned end has no β (it is no VAE): nothing to place on the sweep
        sweep = ()
    from elbolab.experiments.compare import CompareConfig

    results = CompareResults(
        config=CompareConfig(data=data, data_dir=data_dir, evaluation=evaluation),
        machine=Machine.from_json(machine_info()),
        data=data_info(test),
        feature_net=FeatureNet(features.name, why_not),
        models=models,
        beta_sweep=sweep,
        contrasts=judge(
            Evidence(
                {k: r.measurement for k, r in models.items()},
                test.dims,
                evaluation.quality_steps,
                sweep,
                ends=ends,
                merged=merged,
            )
        ),
        runs=tuple(str(r) for r in run_dirs),
        design=design,
    )
    return results, images


def runs_design(configs: dict[Path, RunConfig]) -> Design:
    """The design of existing runs: one point per run, named by its kind, at its own levels."""
    points = {run_cfg.kind: DesignPoint(run_cfg.kind, run_cfg.kind) for run_cfg in configs.values()}
    levels = {run_cfg.kind: declared(build_model(run_cfg)) for run_cfg in configs.values()}
    return place("full", tuple(points.values()), lambda point: levels[point.name])


def evaluate_run(
    run_dir: Path,
    split: str = "test",
    cfg: EvalConfig = EvalConfig(),
    features_kind: str = "builtin",
    log: Log = lambda _: None,
    device: str = "auto",
) -> EvalResult:
    """`elbolab eval`: the run's measurements on one split of its data."""
    run_cfg, model = load_run(run_dir, device)
    model.check_estimator(cfg.estimator)  # a bound the model does not offer is refused before any work
    data = load_data(run_cfg.data, split, run_cfg.data_dir)
    measurement = measure(
        model,
        data,
        cfg,
        _features(cfg, run_cfg.data, features_kind, run_cfg.data_dir),
        log,
        pilot_images(run_dir, run_cfg, model, cfg),
    )[0]
    return EvalResult(run_cfg.kind, run_cfg.data, split, data.dims, data.levels, measurement)


def evaluate_diffusers(
    path: Path,
    data_name: str,
    data_dir: str | None = None,
    split: str = "test",
    cfg: EvalConfig = EvalConfig(),
    features_kind: str = "builtin",
    log: Log = lambda _: None,
) -> EvalResult:
    """`elbolab eval --diffusers PATH`: a diffusers folder's model measured like a run, on the data set `data_name`,
    with the network passes per image its bound cost, counted."""
    from elbolab.interop.diffusers import diffusers_folders, load_diffusers

    diffusers_folders(Path(path))  # a clear error for a missing folder (or a Hub id) before any data is read
    data = load_data(data_name, split, data_dir)
    model = load_diffusers(Path(path), data.shape, data.levels)
    passes = PassCounter(model.diffusion.net)
    found = measure(model, data, replace(cfg, parts=tuple(p for p in cfg.parts if p == "likelihood")), None, log)[0]
    passes.remove()
    rest = tuple(p for p in cfg.parts if p != "likelihood")
    if rest:
        features = _features(cfg, data_name, features_kind, data_dir)
        found = replace(measure(model, data, replace(cfg, parts=rest), features, log)[0], bound=found.bound)
    source = DiffusersSource(
        str(path),
        model.scheduler_name,
        model.config.T,
        model.config.parameterisation,
        model.config.variance,
        bool(model.clip),
        None if found.bound is None else passes.images / found.bound.n,
    )
    return EvalResult(model.kind, data_name, split, data.dims, data.levels, found, source)


def _features(cfg: EvalConfig, data_name: str, features_kind: str, data_dir: str | None) -> FeatureExtractor | None:
    """The feature network for quality or interpolation, if `cfg` measures them."""
    if set(cfg.parts) & {"quality", "interpolation"}:
        return select_features(data_name, features_kind, data_dir=data_dir)[0]
    return None
