"""Samplers: pure functions over an explicit time grid 1 = t_K > … > t_1 > t_0 = 0, stepping in (t, s) pairs.

Each takes a denoiser (see `reverse`), the state x_T, the grid (`schedule.time_grid`) and the
schedule, and returns x_0. No step reads hidden state: whatever a multistep method carries
(DPM-Solver++'s previous x̂_0) is a local of the loop. The step into s = 0 returns the
denoiser's x̂_0 (the mean of p_θ(x_0|x_1)), for every sampler.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from elbolab.diffusion.forward import expand, posterior_coefficients, posterior_log_variance
from elbolab.diffusion.reverse import Denoiser, denoise, reverse_log_variance
from elbolab.diffusion.schedule import Schedule, alpha, sigma
from elbolab.errors import ConfigError


def pairs(grid: Tensor) -> list[tuple[float, float]]:
    """Consecutive (t, s), s < t, of a descending grid."""
    times = grid.tolist()
    return list(zip(times[:-1], times[1:]))


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _lam(schedule: Schedule, t: float) -> Tensor:
    return schedule.log_snr(torch.tensor(t, dtype=torch.float64))


def ancestral(denoiser: Denoiser, x_T: Tensor, grid: Tensor, schedule: Schedule, *, parameterisation: str = "eps",
              variance: str = "small", generator: torch.Generator | None = None) -> Tensor:
    """x_s = μ̃(x_t, x̂_0) + σ z with σ² = β̃, β or the learned interpolation (Ho et al. 2020, Alg. 2)."""
    x = x_T
    for t, s in pairs(grid):
        d = denoise(denoiser, x, t, schedule, parameterisation)
        if s <= 0:
            return d.x0_hat
        a, b = posterior_coefficients(_lam(schedule, t), _lam(schedule, s))
        log_var = reverse_log_variance(schedule, t, s, variance, x, d.var_interp)
        x = expand(a, x) * x + expand(b, x) * d.x0_hat + torch.exp(0.5 * log_var) * _noise(x, generator)
    return x


def ddim(denoiser: Denoiser, x_T: Tensor, grid: Tensor, schedule: Schedule, *, parameterisation: str = "eps",
         eta: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """x_s = α_s x̂_0 + sqrt(σ_s² − σ_η²) ε̂ + σ_η z, σ_η² = η² β̃(t, s) (Song et al. 2021, eq. 12)."""
    x = x_T
    for t, s in pairs(grid):
        d = denoise(denoiser, x, t, schedule, parameterisation)
        if s <= 0:
            return d.x0_hat
        lam_t, lam_s = _lam(schedule, t), _lam(schedule, s)
        var_eta = eta ** 2 * torch.exp(posterior_log_variance(lam_t, lam_s))
        x = (expand(alpha(lam_s), x) * d.x0_hat
             + expand((torch.sigmoid(-lam_s) - var_eta).clamp_min(0).sqrt(), x) * d.eps_hat)
        if eta > 0:
            x = x + expand(var_eta.sqrt(), x) * _noise(x, generator)
    return x


def dpm_solver_pp(denoiser: Denoiser, x_T: Tensor, grid: Tensor, schedule: Schedule, *,
                  parameterisation: str = "eps") -> Tensor:
    """DPM-Solver++(2M): x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D, h = λ'_s − λ'_t, λ' = log(α/σ) = λ/2,
    D = (1 + 1/2r) x̂_0 − (1/2r) x̂_0,prev, r = h_prev/h (Lu et al. 2022, Alg. 2).

    First order (D = x̂_0, i.e. DDIM) on the first step and on the last one into the smallest
    positive time, whose h dwarfs the step before it (Lu et al.'s "lower order final").
    """
    x = x_T
    steps = pairs(grid)
    previous: tuple[Tensor, Tensor] | None = None  # (x̂_0, h) of the step before
    for n, (t, s) in enumerate(steps):
        d = denoise(denoiser, x, t, schedule, parameterisation)
        if s <= 0:
            return d.x0_hat
        lam_t, lam_s = _lam(schedule, t), _lam(schedule, s)
        h = 0.5 * (lam_s - lam_t)
        D = d.x0_hat
        if previous is not None and n < len(steps) - 2:
            x0_prev, h_prev = previous
            half_inv_r = expand(h / (2 * h_prev), x)
            D = (1 + half_inv_r) * d.x0_hat - half_inv_r * x0_prev
        x = expand(sigma(lam_s) / sigma(lam_t), x) * x - expand(alpha(lam_s) * torch.expm1(-h), x) * D
        previous = (d.x0_hat, h)
    return x


def ddim_invert(denoiser: Denoiser, x_0: Tensor, grid: Tensor, schedule: Schedule, *, parameterisation: str = "eps",
                fixed_point: int = 0) -> Tensor:
    """x_0 → x_T by DDIM (η = 0) run backwards: x_t = α_t (x_s − σ_s ε̂)/α_s + σ_t ε̂ (Song et al. 2021, eq. 13).

    ε̂ is read at (x_s, s) (at (x_0, t) from the data, where σ_0 = 0), then refined `fixed_point`
    times by ε̂ ← ε̂(x_t, t), which makes the step the exact inverse of `ddim`'s as it converges.
    """
    x = x_0
    for t, s in reversed(pairs(grid)):
        lam_t, lam_s = _lam(schedule, t), _lam(schedule, s)
        a_t, s_t, a_s, s_s = (expand(f(lam), x) for f, lam in
                              ((alpha, lam_t), (sigma, lam_t), (alpha, lam_s), (sigma, lam_s)))
        eps_hat = denoise(denoiser, x, s if s > 0 else t, schedule, parameterisation).eps_hat
        x_t = a_t * (x - s_s * eps_hat) / a_s + s_t * eps_hat
        for _ in range(fixed_point):
            eps_hat = denoise(denoiser, x_t, t, schedule, parameterisation).eps_hat
            x_t = a_t * (x - s_s * eps_hat) / a_s + s_t * eps_hat
        x = x_t
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ancestral": ancestral, "ddim": ddim, "dpm-solver++": dpm_solver_pp}


def run_sampler(name: str, denoiser: Denoiser, x_T: Tensor, grid: Tensor, schedule: Schedule, *,
                parameterisation: str = "eps", variance: str = "small", eta: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Run the sampler called `name` with the options that apply to it."""
    if name == "ancestral":
        return ancestral(denoiser, x_T, grid, schedule, parameterisation=parameterisation, variance=variance, generator=generator)
    if name == "ddim":
        return ddim(denoiser, x_T, grid, schedule, parameterisation=parameterisation, eta=eta, generator=generator)
    if name == "dpm-solver++":
        return dpm_solver_pp(denoiser, x_T, grid, schedule, parameterisation=parameterisation)
    raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
