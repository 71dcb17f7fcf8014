"""Training a run folder from names and overrides: what `elbolab train` and `compare` both call."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from elbolab.config import flatten, read_config_file, to_dict
from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.errors import ConfigError, ElbolabError
from elbolab.train import distributed
from elbolab.train.loop import Callback, Say, Trainer, say_on_stderr
from elbolab.train.run import (
    CONFIG_FILE,
    CONFIG_HISTORY_FILE,
    RunConfig,
    adopt_run_folder,
    apply_overrides,
    build_model,
    check_data_agrees,
    check_run_folder,
    conditional_classes,
    list_checkpoints,
    pick_device,
    read_run_config,
    resolve_configs,
    run_lock,
    save_run_config,
)
from elbolab.train.stages import has_first_stage, run_first_stage, stage_budget
from elbolab.train.tensorboard import TensorBoardLog

#: keys `--resume --set` may change: they steer the rest of the run, not what its checkpoint means
RESUMABLE = frozenset(
    f"train.{k}"
    for k in (
        "lr",
        "min_lr_ratio",
        "warmup_steps",
        "steps",
        "max_seconds",
        "max_flops",
        "checkpoint_every",
        "eval_every",
        "eval_n",
        "precision",
        "keep_checkpoints",
        "nonfinite_patience",
        "max_rollbacks",
        "grad_clip",
        "weight_decay",
        "adam_beta1",
        "adam_beta2",
        "ema_decay",
        "threads",
        "validate_every",
        "device",
        "deterministic",
        "grad_accum",
        "compile",
        "channels_last",
        "log_every",
    )
)

Changes = dict[str, tuple[Any, Any]]


def use_threads(threads: int) -> None:
    """Run torch's CPU arithmetic on `threads` intra-op threads (0: torch's default, one per core) and as many
    inter-op threads; the inter-op count can only be set before torch's first parallel work, and stays as it
    was after it. One thread gives the same sums in the same order on any machine and at any load."""
    if threads <= 0:
        return
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # inter-op work already ran in this process: its pool is fixed
            pass


def resume_config(saved: RunConfig, overrides: dict[str, Any]) -> tuple[RunConfig, Changes]:
    """The saved config with the changes `--resume` may make, and those changes; any other is a ConfigError."""
    model_cfg, train_cfg = apply_overrides(saved.model, saved.train, overrides)
    old = flatten({"model": to_dict(saved.model), "train": to_dict(saved.train)})
    new = flatten({"model": to_dict(model_cfg), "train": to_dict(train_cfg)})
    changes = {k: (old[k], new[k]) for k in old if old[k] != new[k]}
    for key, (before, after) in changes.items():
        if key not in RESUMABLE:
            raise ConfigError(
                f"{key} cannot change on --resume ({before!r} → {after!r}): the checkpoint was "
                f"trained with {before!r}; start a new run (another --out) to change it"
            )
    return replace(saved, model=model_cfg, train=train_cfg), changes


def record_changes(run_dir: Path, trainer: Trainer, changes: Changes, say: Say) -> None:
    """Write config changes made on resume to the run's log, its config history and stderr."""
    if not changes:
        return
    entry = {
        "step": trainer.step,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "changes": {k: list(v) for k, v in changes.items()},
    }
    with open(run_dir / CONFIG_HISTORY_FILE, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    trainer.log_event("config-change", changes=entry["changes"])
    listed = ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in changes.items())
    say(f"resume at step {trainer.step}: {listed} (recorded in {CONFIG_HISTORY_FILE})")


def resumed_config(run_dir: Path, kind: str, data: str | None, overrides: dict[str, Any]) -> tuple[RunConfig, Changes]:
    """The config a resumed run continues with: the saved one, with the changes allowed."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise ElbolabError(f"{run_dir}: nothing to resume (not a run folder: no {CONFIG_FILE})")
    saved = read_run_config(run_dir)
    if saved.kind != kind:
        raise ElbolabError(f"{run_dir} holds a {saved.kind} run, not {kind}")
    if data is not None and data != saved.data:
        raise ConfigError(f"--data {data} cannot change on --resume: the run was trained on {saved.data}")
    return resume_config(saved, overrides)


def train_run(
    kind: str,
    data: str | None,
    out: str | Path,
    *,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    resume: bool = False,
    steps: int | None = None,
    progress: bool = True,
    say: Say = say_on_stderr,
) -> tuple[RunConfig, dict[str, Any]]:
    """Train (or resume) one model into a run folder; returns its config and final metrics.

    On resume, `overrides` (and a config file) may change the keys in `RESUMABLE`; the changes are recorded,
    and a change to any other key is refused.
    """
    run_dir = Path(out)
    merged = {**flatten(read_config_file(config_file) if config_file else {}), **(overrides or {})}
    if steps is not None:
        merged["train.steps"] = steps
    changes: Changes = {}
    check_run_folder(run_dir, resume)
    if resume:
        cfg, changes = resumed_config(run_dir, kind, data, merged)
        use_threads(cfg.train.threads)  # before any torch work
    else:
        model_cfg, train_cfg = resolve_configs(kind, None, merged)
        use_threads(train_cfg.threads)  # before any torch work
        data = data or "digits"
        test_data = load_data(data, "test", data_dir)
        train_data = load_data(data, "train", data_dir)
        classes = conditional_classes(model_cfg, train_data)
        cfg = RunConfig(kind, data, data_dir, test_data.shape, test_data.levels, model_cfg, train_cfg, classes)
    if resume:
        test_data = load_data(cfg.data, "test", cfg.data_dir)
        check_data_agrees(cfg, test_data.shape, test_data.levels, run_dir)
        train_data = load_data(cfg.data, "train", cfg.data_dir)
    return cfg, fit_run(
        cfg,
        run_dir,
        train_data,
        test_data,
        resume=resume,
        progress=progress,
        say=say,
        changes=changes,
    )


def fit_run(
    cfg: RunConfig,
    run_dir: Path,
    train_data: ImageData,
    test_data: ImageData,
    *,
    resume: bool = False,
    progress: bool = True,
    say: Say = say_on_stderr,
    changes: Changes | None = None,
    callbacks: tuple[Callback, ...] = (),
) -> dict[str, Any]:
    """Train the run `cfg` into `run_dir` on data already loaded (a first stage first, where the model has one);
    with `resume`, from the run's newest good checkpoint, recording `changes` made to its config. `callbacks`
    hear every step of the main stage. Returns the final metrics."""
    run_dir = Path(run_dir)
    use_threads(cfg.train.threads)
    owns_group = distributed.current().size == 1
    world = distributed.setup(pick_device(cfg.train.device))  # under torchrun: join its process group
    try:
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg)
        with run_lock(run_dir) if world.main else nullcontext():  # rank 0 writes the run folder, alone
            if world.main:
                adopt_run_folder(run_dir, resume, say)
            return _fit_locked(
                cfg, model, run_dir, train_data, test_data, world, resume, progress, say, changes, callbacks
            )
    finally:
        if owns_group:
            distributed.teardown()


def _fit_locked(
    cfg: RunConfig,
    model: Any,
    run_dir: Path,
    train_data: ImageData,
    test_data: ImageData,
    world: distributed.World,
    resume: bool,
    progress: bool,
    say: Say,
    changes: Changes | None,
    callbacks: tuple[Callback, ...],
) -> dict[str, Any]:
    """`fit_run`'s work once the run folder is this process's (see there)."""
    board = TensorBoardLog(run_dir, cfg.levels, seed=cfg.train.seed) if cfg.train.tensorboard and world.main else None
    if world.main:
        save_run_config(run_dir, cfg)
    # e.g. latent diffusion: train or load the autoencoder, measure the latent scale
    spent = run_first_stage(model, train_data, test_data, cfg, run_dir, progress)
    trainer = Trainer(
        model,
        train_data,
        test_data,
        stage_budget(cfg.train, spent, has_first_stage(model)),
        run_dir,
        (*callbacks, board) if board else callbacks,
        progress=progress,
        say=say,
    )
    if board:
        board.watch(trainer.eval_model)
    if world.main:
        trainer.remove_temporary_files()
    if resume:
        if list_checkpoints(run_dir):
            trainer.load_checkpoint()
        else:
            say(f"{run_dir}: no checkpoint yet; starting the run from step 0")
        if world.main:
            record_changes(run_dir, trainer, changes or {}, say)
    return trainer.fit()
