"""Latent diffusion: an autoencoder's z, modelled by a diffusion model, with a true bound on log p(x).

Its two-stage training (the autoencoder first) lives in `elbolab.train.stages`.
"""

from elbolab.latent.bound import latent_bound, negative_entropy, total_std
from elbolab.latent.config import LatentDiffusionConfig
from elbolab.latent.model import LatentDiffusion

__all__ = ["LatentDiffusion", "LatentDiffusionConfig", "latent_bound", "negative_entropy", "total_std"]
