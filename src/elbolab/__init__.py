"""elbolab: VAEs, diffusion and latent diffusion under one evidence lower bound."""

from elbolab.bounds import Bound, log_mean_exp, mean_ci95, nats_to_bpd
from elbolab.errors import ElbolabError

__all__ = ["Bound", "ElbolabError", "log_mean_exp", "mean_ci95", "nats_to_bpd"]
__version__ = "0.1.0"
