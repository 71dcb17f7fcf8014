"""Latent diffusion: an autoencoder's z, modelled by a diffusion model, with a true bound on log p(x)."""

from elbolab.latent.bound import latent_bound, negative_entropy, total_std
from elbolab.latent.config import LatentDiffusionConfig
from elbolab.latent.model import LatentDiffusion
from elbolab.latent.stages import AUTOENCODER_DIR, load_autoencoder, prepare, train_autoencoder

__all__ = ["AUTOENCODER_DIR", "LatentDiffusion", "LatentDiffusionConfig", "latent_bound", "load_autoencoder",
           "negative_entropy", "prepare", "total_std", "train_autoencoder"]
