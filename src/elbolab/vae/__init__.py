"""The VAE: encoder q(z|x), decoder p(x|z), N(0, I) prior; ELBO and IWAE bounds."""

from elbolab.vae.bound import (
    elbo_terms,
    free_bits_kl,
    iwae_bound,
    kl_per_dim,
    kl_weight,
    reconstruction_draws,
    reparameterize,
)
from elbolab.vae.model import VAE, VAEConfig

__all__ = [
    "VAE",
    "VAEConfig",
    "elbo_terms",
    "free_bits_kl",
    "iwae_bound",
    "kl_per_dim",
    "kl_weight",
    "reconstruction_draws",
    "reparameterize",
]
