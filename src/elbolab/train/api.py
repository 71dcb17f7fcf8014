"""Training a run folder from names and overrides: what `elbolab train` and `compare` both call."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from elbolab.config import read_config_file
from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.train import distributed
from elbolab.train.loop import Trainer
from elbolab.train.run import (CHECKPOINT_FILE, RunConfig, build_model, pick_device, read_run_config,
                               resolve_configs, save_run_config)
from elbolab.train.stages import run_first_stage, stage_budget


def train_run(kind: str, data: str, out: str | Path, *, data_dir: str | None = None,
              overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
              resume: bool = False, steps: int | None = None, progress: bool = True) -> tuple[RunConfig, dict]:
    """Train (or resume) one model into a run folder; returns its config and final metrics."""
    run_dir = Path(out)
    has_checkpoint = (run_dir / CHECKPOINT_FILE).is_file()
    if resume:
        if not has_checkpoint:
            raise ElbolabError(f"{run_dir}: nothing to resume (no {CHECKPOINT_FILE})")
        cfg = read_run_config(run_dir)
        if cfg.kind != kind:
            raise ElbolabError(f"{run_dir} holds a {cfg.kind} run, not {kind}")
        if steps is not None:
            cfg = replace(cfg, train=replace(cfg.train, steps=steps))
    else:
        if has_checkpoint:
            raise ElbolabError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        overrides = dict(overrides or {})
        if steps is not None:
            overrides["train.steps"] = steps
        file_data = read_config_file(config_file) if config_file else None
        model_cfg, train_cfg = resolve_configs(kind, file_data, overrides)
        test_data = load_data(data, "test", data_dir)
        cfg = RunConfig(kind, data, data_dir, test_data.shape, test_data.levels, model_cfg, train_cfg)
    if resume:
        test_data = load_data(cfg.data, "test", cfg.data_dir)
    return cfg, fit_run(cfg, run_dir, load_data(cfg.data, "train", cfg.data_dir), test_data, resume=resume,
                        progress=progress)


def fit_run(cfg: RunConfig, run_dir: Path, train_data: ImageData, test_data: ImageData, *, resume: bool = False,
            progress: bool = True) -> dict:
    """Train the run `cfg` into `run_dir` on data already loaded (a first stage first, where the model has one);
    with `resume`, from the run's checkpoint. Returns the final metrics."""
    run_dir = Path(run_dir)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    owns_group = distributed.current().size == 1
    world = distributed.setup(pick_device(cfg.train.device))  # under torchrun: join its process group
    try:
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        if world.main:
            save_run_config(run_dir, cfg)
        # e.g. latent diffusion: train or load the autoencoder, measure the latent scale
        spent = run_first_stage(model, train_data, test_data, cfg, run_dir, progress)
        trainer = Trainer(model, train_data, test_data, stage_budget(cfg.train, spent), run_dir, progress=progress)
        if resume:
            trainer.load_checkpoint()
        return trainer.fit()
    finally:
        if owns_group:
            distributed.teardown()
