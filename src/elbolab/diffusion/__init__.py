"""Diffusion: one log-SNR schedule, the forward process q, ε/x_0/v parameterisations, the bound and samplers."""

from elbolab.diffusion.bound import exact_bound, mc_bound, prior_term, step_terms, vlb_term
from elbolab.diffusion.chain import GaussianDiffusion
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.forward import q_marginal, q_posterior, q_sample, q_step
from elbolab.diffusion.model import DiffusionModel
from elbolab.diffusion.reverse import Denoised, Denoiser, reverse_log_variance
from elbolab.diffusion.samplers import SAMPLERS, ancestral, ddim, ddim_invert, dpm_solver_pp, run_sampler
from elbolab.diffusion.schedule import Schedule, step_grid, time_grid
from elbolab.diffusion.timesteps import LossSecondMomentResampler

__all__ = [
    "SAMPLERS",
    "Denoised",
    "Denoiser",
    "DiffusionConfig",
    "DiffusionModel",
    "GaussianDiffusion",
    "LossSecondMomentResampler",
    "Schedule",
    "ancestral",
    "ddim",
    "ddim_invert",
    "dpm_solver_pp",
    "exact_bound",
    "mc_bound",
    "prior_term",
    "q_marginal",
    "q_posterior",
    "q_sample",
    "q_step",
    "reverse_log_variance",
    "run_sampler",
    "step_grid",
    "step_terms",
    "time_grid",
    "vlb_term",
]
