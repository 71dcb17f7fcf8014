"""The hierarchical VAE: a bottom-up pass over x, L top-down stochastic levels, per-level KL terms."""

from elbolab.hvae.bound import LevelDraw, level_kl, log_prior_over_posterior, top_down
from elbolab.hvae.config import HVAEConfig
from elbolab.hvae.model import HierarchicalVAE, TopDownBlock

__all__ = [
    "HVAEConfig",
    "HierarchicalVAE",
    "LevelDraw",
    "TopDownBlock",
    "level_kl",
    "log_prior_over_posterior",
    "top_down",
]
