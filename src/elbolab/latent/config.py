"""The latent diffusion model's configuration, saved into every run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from elbolab.diffusion.config import DiffusionConfig
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig
from elbolab.vae.model import VAEConfig


def _latent_vae() -> VAEConfig:
    """A β = 1 VAE with one-channel spatial latents: z is [1, 4, 4] for digits, [1, 7, 7] for 28×28 images.

    On digits this gave the tightest final bound of those tried (1, 2, 4 channels; β = 1, 0.5, 0.25): a
    more informative latent leaves the diffusion prior more to model than a short training run can learn.
    """
    return VAEConfig(latent="spatial", latent_channels=1, net="small")


def _latent_diffusion() -> DiffusionConfig:
    """A chain for continuous latents: the bound itself as the loss (L_vlb) with importance-sampled steps,
    reverse variance β, the linear schedule, and a small UNet with attention at every level (side ≤ 8).

    Continuous u is smooth at the scale of the small-t noise, where the true reverse variance is β, not β̃
    (β̃ costs ≈ 0.7 nats per latent dimension; see tests/test_latent.py). L_vlb trains what the bound
    measures, and the importance sampler's history makes the bound's Monte-Carlo estimate ≈ 10× less noisy.
    The cosine schedule's last steps weigh ε-errors up to 1000×, which the short training runs here do not
    survive; the linear schedule's do not.
    """
    return DiffusionConfig(
        schedule="linear",
        loss="vlb",
        variance="large",
        timesteps="importance",
        unet=UNetConfig(
            preset="tiny", channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolution=8, heads=1
        ),
    )


@dataclass(frozen=True)
class LatentDiffusionConfig:
    """Stage 1: the autoencoder (`vae`, trained for `autoencoder_steps` and at most `stage_one_fraction` of a
    wall-clock budget, or the VAE run at `autoencoder`).
    Stage 2: `diffusion` over u = z/s, z ~ q(z|x) from the frozen encoder; s is measured from the data
    (on at most `scale_images` training images). The last `joint_finetune_steps` steps of stage 2 also
    train the autoencoder, on the whole bound.
    """

    vae: VAEConfig = field(default_factory=_latent_vae)
    diffusion: DiffusionConfig = field(default_factory=_latent_diffusion)
    autoencoder: str | None = None  # path of a trained VAE run to reuse (`elbolab train --autoencoder RUN`)
    autoencoder_steps: int | None = None  # stage-1 optimiser steps when no run is given (None: the run's train.steps)
    stage_one_fraction: float = 0.5  # of a wall-clock budget (train.max_seconds), the share stage 1 may take
    joint_finetune_steps: int = 0  # last steps of stage 2 that also update the autoencoder (0 = frozen)
    scale_images: int = 10000  # training images the latent scale s is measured on
    conditional: bool = False  # the latent chain p(z | y) given labels (`diffusion.label_dropout`); the autoencoder not

    @classmethod
    def sized_for(cls, side: int, device: str = "cpu") -> LatentDiffusionConfig:
        """The configuration `compare` starts from for images of this side on this device: the defaults, with the
        autoencoder sized as `VAEConfig.sized_for` sizes a VAE (its tiny net on a CPU over 16 px)."""
        vae = _latent_vae()
        return cls(vae=replace(vae, net=VAEConfig.sized_for(side, device).net))

    def __post_init__(self) -> None:
        if self.vae.latent != "spatial":
            raise ConfigError("latent diffusion needs a VAE with spatial latents (model.vae.latent=spatial)")
        if (
            (self.autoencoder_steps is not None and self.autoencoder_steps < 1)
            or self.joint_finetune_steps < 0
            or self.scale_images < 2
        ):
            raise ConfigError("autoencoder_steps must be ≥ 1, joint_finetune_steps ≥ 0 and scale_images ≥ 2")
        if not 0 < self.stage_one_fraction < 1:
            raise ConfigError(f"model.stage_one_fraction must be in (0, 1), got {self.stage_one_fraction}")
