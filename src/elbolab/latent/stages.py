"""The two training stages around the library's Trainer: the autoencoder (its own run folder), then the scale.

`prepare` runs before the trainer's stage 2 (`elbolab train latent-diffusion` calls it). It is safe to
call again: a model whose scale is set, a run that already has a checkpoint (resume: the checkpoint
holds the autoencoder's weights and s) and a finished autoencoder run are all left as they are.
The training layer is imported lazily: it sits above this package.
"""

from __future__ import annotations

import json

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elbolab.data.base import ImageData
from elbolab.errors import ElbolabError
from elbolab.latent.config import LatentDiffusionConfig
from elbolab.vae.model import VAE

if TYPE_CHECKING:
    from elbolab.latent.model import LatentDiffusion

#: where stage 1 trains the autoencoder, inside the latent diffusion run
AUTOENCODER_DIR = "autoencoder"


def prepare(model: "LatentDiffusion", train_data: ImageData, test_data: ImageData, run_cfg: Any, run_dir: Path,
            progress: bool = True) -> None:
    """Load (`config.autoencoder`) or train the autoencoder into `run_dir/autoencoder`, adopt it, measure s."""
    from elbolab.train.run import CHECKPOINT_FILE, save_run_config

    model.total_steps = run_cfg.train.steps
    model.stage_one_seconds = stage_one_seconds(model.config, run_dir)
    if model.prepared or (run_dir / CHECKPOINT_FILE).is_file():
        return
    cfg = model.config
    if cfg.autoencoder is not None:
        vae = load_autoencoder(Path(cfg.autoencoder), run_cfg.train.device)
    else:
        vae = train_autoencoder(cfg, train_data, test_data, run_cfg, run_dir / AUTOENCODER_DIR, progress)
    before = model.config
    model.to(next(vae.parameters()).device)
    model.adopt_autoencoder(vae)
    if model.config != before:  # a reused VAE of another architecture: the run's config must rebuild it
        save_run_config(run_dir, replace(run_cfg, model=model.config))
    model.measure_scale(train_data, cfg.scale_images)
    model.stage_one_seconds = stage_one_seconds(cfg, run_dir)


def stage_one_seconds(cfg: LatentDiffusionConfig, run_dir: Path) -> float:
    """Training seconds this run spent on its own autoencoder (0 when it reuses a trained VAE run)."""
    from elbolab.train.run import METRICS_FILE

    metrics = run_dir / AUTOENCODER_DIR / METRICS_FILE
    if cfg.autoencoder is not None or not metrics.is_file():
        return 0.0
    return float(json.loads(metrics.read_text()).get("train_seconds", 0.0))


def load_autoencoder(path: Path, device: str = "auto") -> VAE:
    """A trained VAE run's model (EMA weights), with a clear error for anything else."""
    from elbolab.train.run import load_run, read_run_config

    kind = read_run_config(path).kind
    if kind != "vae":
        raise ElbolabError(f"{path} holds a {kind} run; the autoencoder must be a VAE run")
    return load_run(path, device)[1]


def train_autoencoder(cfg: LatentDiffusionConfig, train_data: ImageData, test_data: ImageData, run_cfg: Any,
                      folder: Path, progress: bool = True) -> VAE:
    """Stage 1: the VAE `cfg.vae` trained for `cfg.autoencoder_steps` by the library's Trainer into `folder`,
    a VAE run of its own (resumed from its checkpoint if it was cut short; kept if it finished)."""
    from elbolab.train.loop import Trainer
    from elbolab.train.run import CHECKPOINT_FILE, WEIGHTS_FILE, RunConfig, build_model, save_run_config

    if not (folder / WEIGHTS_FILE).is_file():
        total = cfg.autoencoder_steps + run_cfg.train.steps
        train = replace(run_cfg.train, steps=cfg.autoencoder_steps,
                        max_seconds=run_cfg.train.max_seconds * cfg.autoencoder_steps / total)
        vae_run = RunConfig("vae", run_cfg.data, run_cfg.data_dir, run_cfg.shape, run_cfg.levels, cfg.vae, train)
        folder.mkdir(parents=True, exist_ok=True)
        save_run_config(folder, vae_run)
        trainer = Trainer(build_model(vae_run), train_data, test_data, train, folder, progress=progress)
        if (folder / CHECKPOINT_FILE).is_file():
            trainer.load_checkpoint()
        trainer.fit()
    return load_autoencoder(folder, run_cfg.train.device)
