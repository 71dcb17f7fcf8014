"""Samplers: pure functions over an explicit time grid 1 = t_K > … > t_1 > t_0 = 0, stepping in (t, s) pairs.

Each takes a denoiser (see `reverse`), the state x_T, the grid (`schedule.time_grid`) and the
schedule, and returns x_0. No step reads hidden state: whatever a multistep method carries
(DPM-Solver++'s previous x̂_0) is a local of the loop. The step into s = 0 returns the
denoiser's x̂_0 (the mean of p_θ(x_0|x_1)), for every sampler.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from elbolab.diffusion.forward import posterior_coefficients, posterior_log_variance
from elbolab.diffusion.reverse import VARIANCES, Denoiser, denoise, reverse_log_variance
from elbolab.diffusion.schedule import Schedule, alpha, log_beta, sigma
from elbolab.errors import ConfigError


def pairs(grid: Tensor) -> list[tuple[float, float]]:
    """Consecutive (t, s), s < t, of a descending grid."""
    times = grid.tolist()
    return list(itertools.pairwise(times))


@dataclass(frozen=True)
class Step:
    """One step t → s of a grid with every coefficient a sampler multiplies by, computed once in float64
    and kept as Python numbers, so a step costs the network and a few tensor-scalar operations."""

    t: float
    s: float
    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float
    a: float  # E[x_s | x_t, x_0] = a x_t + b x_0 (VDM, eq. 7)
    b: float
    log_var: float  # log β̃(t, s), the posterior variance (Ho et al. 2020, eq. 7)
    log_beta: float  # log β(t, s) = log σ²_{t|s}
    h: float  # λ'_s − λ'_t with λ' = λ/2 (DPM-Solver's step in half-log-SNR)


def grid_steps(grid: Tensor, schedule: Schedule) -> list[Step]:
    """The (t, s) steps of a descending grid with their coefficients (a step into s = 0 has s's as NaN)."""
    times = grid.to(torch.float64)
    lam = schedule.log_snr(times)
    lam_t, lam_s = lam[:-1], lam[1:].clamp(max=torch.finfo(torch.float64).max)
    a, b = posterior_coefficients(lam_t, lam_s)
    columns = (
        times[:-1],
        times[1:],
        alpha(lam_t),
        sigma(lam_t),
        alpha(lam_s),
        sigma(lam_s),
        a,
        b,
        posterior_log_variance(lam_t, lam_s),
        log_beta(lam_t, lam_s),
        0.5 * (lam_s - lam_t),
    )
    rows = zip(*(c.tolist() for c in columns))
    return [Step(*row) if row[1] > 0 else Step(row[0], 0.0, row[2], row[3], *([math.nan] * 7)) for row in rows]


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ancestral(
    denoiser: Denoiser,
    x_T: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    parameterisation: str = "eps",
    variance: str = "small",
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s = μ̃(x_t, x̂_0) + σ z with σ² = β̃, β or the learned interpolation (Ho et al. 2020, Alg. 2)."""
    if variance not in VARIANCES:
        raise ConfigError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    x = x_T
    for step in grid_steps(grid, schedule):
        d = denoise(denoiser, x, step.t, schedule, parameterisation)
        if step.s <= 0:
            return d.x0_hat
        if variance == "learned":
            std = torch.exp(0.5 * reverse_log_variance(schedule, step.t, step.s, variance, x, d.var_interp))
        else:
            std = math.exp(0.5 * (step.log_var if variance == "small" else step.log_beta))
        x = step.a * x + step.b * d.x0_hat + std * _noise(x, generator)
    return x


def ddim(
    denoiser: Denoiser,
    x_T: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    parameterisation: str = "eps",
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s = α_s x̂_0 + sqrt(σ_s² − σ_η²) ε̂ + σ_η z, σ_η² = η² β̃(t, s) (Song et al. 2021, eq. 12)."""
    x = x_T
    for step in grid_steps(grid, schedule):
        d = denoise(denoiser, x, step.t, schedule, parameterisation)
        if step.s <= 0:
            return d.x0_hat
        var_eta = eta**2 * math.exp(step.log_var)
        x = step.alpha_s * d.x0_hat + math.sqrt(max(step.sigma_s**2 - var_eta, 0.0)) * d.eps_hat
        if eta > 0:
            x = x + math.sqrt(var_eta) * _noise(x, generator)
    return x


def dpm_solver_pp(
    denoiser: Denoiser, x_T: Tensor, grid: Tensor, schedule: Schedule, *, parameterisation: str = "eps"
) -> Tensor:
    """DPM-Solver++(2M): x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D, h = λ'_s − λ'_t, λ' = log(α/σ) = λ/2,
    D = (1 + 1/2r) x̂_0 − (1/2r) x̂_0,prev, r = h_prev/h (Lu et al. 2022, Alg. 2).

    First order (D = x̂_0, i.e. DDIM) on the first step and on the last one into the smallest
    positive time, whose h dwarfs the step before it (Lu et al.'s "lower order final").
    """
    x = x_T
    steps = grid_steps(grid, schedule)
    previous: tuple[Tensor, float] | None = None  # (x̂_0, h) of the step before
    for n, step in enumerate(steps):
        d = denoise(denoiser, x, step.t, schedule, parameterisation)
        if step.s <= 0:
            return d.x0_hat
        D = d.x0_hat
        if previous is not None and n < len(steps) - 2:
            x0_prev, h_prev = previous
            half_inv_r = step.h / (2 * h_prev)
            D = (1 + half_inv_r) * d.x0_hat - half_inv_r * x0_prev
        x = (step.sigma_s / step.sigma_t) * x - (step.alpha_s * math.expm1(-step.h)) * D
        previous = (d.x0_hat, step.h)
    return x


def ddim_invert(
    denoiser: Denoiser,
    x_0: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    parameterisation: str = "eps",
    fixed_point: int = 0,
) -> Tensor:
    """x_0 → x_T by DDIM (η = 0) run backwards: x_t = α_t (x_s − σ_s ε̂)/α_s + σ_t ε̂ (Song et al. 2021, eq. 13).

    ε̂ is read at (x_s, s) (at (x_0, t) from the data, where σ_0 = 0), then refined `fixed_point`
    times by ε̂ ← ε̂(x_t, t), which makes the step the exact inverse of `ddim`'s as it converges.
    """
    x = x_0
    for step in reversed(grid_steps(grid, schedule)):
        a_s, s_s = (1.0, 0.0) if step.s <= 0 else (step.alpha_s, step.sigma_s)
        eps_hat = denoise(denoiser, x, step.s if step.s > 0 else step.t, schedule, parameterisation).eps_hat
        x_t = (step.alpha_t / a_s) * (x - s_s * eps_hat) + step.sigma_t * eps_hat
        for _ in range(fixed_point):
            eps_hat = denoise(denoiser, x_t, step.t, schedule, parameterisation).eps_hat
            x_t = (step.alpha_t / a_s) * (x - s_s * eps_hat) + step.sigma_t * eps_hat
        x = x_t
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ancestral": ancestral, "ddim": ddim, "dpm-solver++": dpm_solver_pp}


def run_sampler(
    name: str,
    denoiser: Denoiser,
    x_T: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    parameterisation: str = "eps",
    variance: str = "small",
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run the sampler called `name` with the options that apply to it."""
    if name == "ancestral":
        return ancestral(
            denoiser, x_T, grid, schedule, parameterisation=parameterisation, variance=variance, generator=generator
        )
    if name == "ddim":
        return ddim(denoiser, x_T, grid, schedule, parameterisation=parameterisation, eta=eta, generator=generator)
    if name == "dpm-solver++":
        return dpm_solver_pp(denoiser, x_T, grid, schedule, parameterisation=parameterisation)
    raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
