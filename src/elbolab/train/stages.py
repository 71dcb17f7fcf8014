"""Staged training: models whose training starts with a stage of its own, run before the trainer's main stage.

Latent diffusion trains (or loads) its autoencoder first, as a VAE run of its own inside the run folder,
then measures the latent scale s; the trainer then trains the latent diffusion prior. A model class is
registered in `FIRST_STAGES`; every other model has no first stage. `run_first_stage` is safe to call
again: a model whose scale is set, a run that already has a checkpoint (resume: the checkpoint holds the
autoencoder's weights and s) and a finished autoencoder run are all left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.latent.config import LatentDiffusionConfig
from elbolab.latent.model import LatentDiffusion
from elbolab.model import GenerativeModel
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer
from elbolab.train.run import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    RunConfig,
    build_model,
    load_run,
    read_metrics,
    read_run_config,
    save_run_config,
)
from elbolab.vae.model import VAE

#: where stage 1 trains the autoencoder, inside the latent diffusion run
AUTOENCODER_DIR = "autoencoder"


@dataclass(frozen=True)
class Spent:
    """What a first stage spent of the run's budget: wall-clock training seconds and counted FLOPs."""

    seconds: float = 0.0
    flops: float = 0.0


FirstStage = Callable[[GenerativeModel, ImageData, ImageData, RunConfig, Path, bool], Spent]


def stage_budget(train_cfg: TrainConfig, spent: Spent, staged: bool = False) -> TrainConfig:
    """The main stage's share of a wall-clock or FLOP budget: what a first stage that spent `spent` left of it
    (at least one second; at least one step, which `steps_in_budget` grants). A `staged` model keeps no
    snapshots along the budget: before its last stage it has no prior to measure, and a fraction of the last
    stage's budget is not that fraction of the run's."""
    if staged:
        train_cfg = replace(train_cfg, snapshots=())
    if train_cfg.max_seconds > 0 and spent.seconds > 0:
        train_cfg = replace(train_cfg, max_seconds=max(train_cfg.max_seconds - spent.seconds, 1.0))
    if train_cfg.max_flops > 0 and spent.flops > 0:
        train_cfg = replace(train_cfg, max_flops=max(train_cfg.max_flops - spent.flops, 1.0))
    return train_cfg


def run_first_stage(
    model: GenerativeModel,
    train_data: ImageData,
    test_data: ImageData,
    run_cfg: RunConfig,
    run_dir: Path,
    progress: bool = True,
) -> Spent:
    """Run the model's registered first stage, if it has one; returns what it spent of the budget."""
    stage = FIRST_STAGES.get(type(model))
    return Spent() if stage is None else stage(model, train_data, test_data, run_cfg, Path(run_dir), progress)


# ---------------------------------------------------------------- latent diffusion: the autoencoder


def latent_first_stage(
    model: GenerativeModel,
    train_data: ImageData,
    test_data: ImageData,
    run_cfg: RunConfig,
    run_dir: Path,
    progress: bool = True,
) -> Spent:
    """Load (`config.autoencoder`) or train the autoencoder into `run_dir/autoencoder`, adopt it, measure s."""
    if not isinstance(model, LatentDiffusion):
        raise TypeError(f"latent diffusion's first stage got a {model.kind} model")
    if not (model.prepared or (run_dir / CHECKPOINT_FILE).is_file()):
        cfg = model.config
        if cfg.autoencoder is not None:
            vae = load_autoencoder(Path(cfg.autoencoder), run_cfg.train.device)
        else:
            vae = train_autoencoder(model, train_data, test_data, run_cfg, run_dir / AUTOENCODER_DIR, progress)
        before = model.config
        model.to(next(vae.parameters()).device)
        model.adopt_autoencoder(vae)
        if model.config != before:  # a reused VAE of another architecture: the run's config must rebuild it
            save_run_config(run_dir, replace(run_cfg, model=model.config))
        model.measure_scale(train_data, cfg.scale_images)
    return stage_one_spent(model.config, run_dir)


def stage_one_spent(cfg: LatentDiffusionConfig, run_dir: Path) -> Spent:
    """Training seconds and FLOPs this run spent on its own autoencoder (none when it reuses a trained VAE run)."""
    metrics = run_dir / AUTOENCODER_DIR / METRICS_FILE
    if cfg.autoencoder is not None or not metrics.is_file():
        return Spent()
    record = read_metrics(metrics.parent)
    return Spent(float(record["train_seconds"]), float(record.get("train_flops") or 0.0))


def load_autoencoder(path: Path, device: str = "auto") -> VAE:
    """A trained VAE run's model (EMA weights), with a clear error for anything else."""
    kind = read_run_config(path).kind
    if kind != "vae":
        raise ElbolabError(f"{path} holds a {kind} run; the autoencoder must be a VAE run")
    model = load_run(path, device)[1]
    if not isinstance(model, VAE):
        raise ElbolabError(f"{path} holds a {kind} run; the autoencoder must be a VAE run")
    return model


def train_autoencoder(
    model: LatentDiffusion,
    train_data: ImageData,
    test_data: ImageData,
    run_cfg: RunConfig,
    folder: Path,
    progress: bool = True,
) -> VAE:
    """Stage 1: the VAE `config.vae` trained by the library's Trainer into `folder`, a VAE run of its own, for
    `autoencoder_steps` steps and `stage_one_fraction` of the wall-clock or FLOP budget (resumed from its checkpoint if it
    was cut short; kept if it finished)."""
    cfg = model.config
    if not (folder / WEIGHTS_FILE).is_file():
        train = replace(
            run_cfg.train,
            steps=cfg.autoencoder_steps or run_cfg.train.steps,
            max_seconds=run_cfg.train.max_seconds * cfg.stage_one_fraction,
            max_flops=run_cfg.train.max_flops * cfg.stage_one_fraction,
            snapshots=(),  # a snapshot of the autoencoder alone is no state of the run (see `stage_budget`)
        )
        vae_run = RunConfig("vae", run_cfg.data, run_cfg.data_dir, run_cfg.shape, run_cfg.levels, cfg.vae, train)
        folder.mkdir(parents=True, exist_ok=True)
        save_run_config(folder, vae_run)
        trainer = Trainer(build_model(vae_run), train_data, test_data, train, folder, progress=progress)
        if (folder / CHECKPOINT_FILE).is_file():
            trainer.load_checkpoint()
        trainer.fit()
    return load_autoencoder(folder, run_cfg.train.device)


#: model class → its first stage
FIRST_STAGES: dict[type, FirstStage] = {LatentDiffusion: latent_first_stage}


def has_first_stage(model: GenerativeModel) -> bool:
    """Whether the model's training starts with a registered stage of its own."""
    return type(model) in FIRST_STAGES
