"""Run-level entry points: `elbolab eval` on one run, and the measurements `elbolab report` compares."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from elbolab.config import to_dict
from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.evaluate.features import select_features
from elbolab.evaluate.run import EvalConfig, Log, measure
from elbolab.experiments.results import CompareResults, RunResult
from elbolab.experiments.verdicts import judge, sweep_point
from elbolab.machine import machine_info
from elbolab.records import DataInfo
from elbolab.train.run import METRICS_FILE, load_run, read_run_config


def data_info(test: ImageData) -> DataInfo:
    """The data set's name, shape, levels and size."""
    return DataInfo(test.name, tuple(test.shape), test.levels, test.dims, len(test))


def measure_run(run_dir: Path, cfg: EvalConfig, test: ImageData, features: Any,
                log: Log, device: str = "auto") -> tuple[RunResult, dict[str, Any]]:
    """`evaluate.measure` on a trained run, with its training figures beside; and the images behind it."""
    run_cfg, model = load_run(run_dir, device)
    metrics = json.loads((Path(run_dir) / METRICS_FILE).read_text())
    measurement, images = measure(model, test, cfg, features, log)
    return RunResult(measurement, int(metrics["step"]), float(metrics["train_images_per_s"]),
                     float(metrics["train_seconds"]), to_dict(run_cfg.model)), images


def measure_runs(run_dirs: list[Path], n_samples: int = 256, features_kind: str = "builtin",
                 log: Log = print, device: str = "auto") -> tuple[CompareResults, dict[str, dict[str, Any]]]:
    """`elbolab report`: measure existing runs (one per kind, same data) and judge what they allow."""
    if len({Path(r).resolve() for r in run_dirs}) != len(run_dirs):
        raise ElbolabError("the same run folder was given twice")
    configs = {Path(r): read_run_config(Path(r)) for r in run_dirs}
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
        models[run_cfg.kind], images[run_cfg.kind] = measure_run(run_dir, evaluation, test, features, log, device)
    sweep = (sweep_point(models["vae"]),) if "vae" in models else ()
    results = CompareResults(
        config={"data": data, "data_dir": data_dir, "budget": float("nan"), "evaluation": asdict(evaluation),
                "runs": [str(r) for r in run_dirs]},
        machine=machine_info(), data=data_info(test),
        feature_net={"name": features.name, "inception_unavailable_because": why_not},
        models=models, beta_sweep=sweep,
        contrasts=judge({k: r.measurement for k, r in models.items()}, sweep, test.dims, evaluation.quality_steps))
    return results, images


def evaluate_run(run_dir: Path, split: str = "test", cfg: EvalConfig = EvalConfig(), features_kind: str = "builtin",
                 log: Log = lambda _: None, device: str = "auto") -> dict[str, Any]:
    """`elbolab eval`: the run's measurements as one JSON object, with the bound's nats/bpd at the top level."""
    run_cfg, model = load_run(run_dir, device)
    data = load_data(run_cfg.data, split, run_cfg.data_dir)
    features = None
    if set(cfg.parts) & {"quality", "interpolation"}:
        features, _ = select_features(run_cfg.data, features_kind, data_dir=run_cfg.data_dir)
    measurement, _ = measure(model, data, cfg, features, log)
    found = measurement.to_json()
    bound = found.pop("bound") or {}
    return {"model": run_cfg.kind, "data": run_cfg.data, "split": split, "dims": data.dims,
            "levels": run_cfg.levels, **bound, **found}
