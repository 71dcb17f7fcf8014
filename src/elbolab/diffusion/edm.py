"""EDM (Karras et al. 2022) on the one log-SNR schedule: preconditioning, its σ grid and its training draw of σ.

EDM writes the chain in its variance-exploding form x̃ = x_0 + σ̃ n; the variance-preserving latent
z_t = α x_0 + σ ε is that form scaled by α, x̃ = z_t/α, with σ̃ = σ/α = exp(−λ/2). Every EDM σ below is this
σ̃, and every function maps it back to times t of the schedule, so that the samplers and the bound keep one
interface: a denoiser of (z_t, t) whose x̂_0 is EDM's D(x̃; σ̃) and whose ε̂ = (z_t − α x̂_0)/σ follows from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from elbolab.diffusion.forward import expand

#: EDM's defaults (Karras et al. 2022, Table 1): ln σ̃ ~ N(P_mean, P_std²) in training, σ_data, ρ of the grid and
#: its top σ̃_max (a chain whose σ̃(1) is larger starts its grid at σ̃ = 80, x_T ~ N(0, I) read there)
P_MEAN, P_STD, SIGMA_DATA, RHO, SIGMA_MAX = -1.2, 1.2, 0.5, 7.0, 80.0
#: bisection halvings that place a time to float64 resolution on [0, 1]
BISECTIONS = 60


def ve_sigma(log_snr: Tensor) -> Tensor:
    """σ̃ = σ/α = exp(−λ/2), the noise level of x̃ = z_t/α."""
    return torch.exp(-0.5 * log_snr)


def c_skip(sigma_ve: Tensor, sigma_data: float) -> Tensor:
    """c_skip(σ̃) = σ_data²/(σ̃² + σ_data²) (Karras et al. 2022, Table 1)."""
    return sigma_data**2 / (sigma_ve**2 + sigma_data**2)


def c_out(sigma_ve: Tensor, sigma_data: float) -> Tensor:
    """c_out(σ̃) = σ̃ σ_data/sqrt(σ̃² + σ_data²) (Karras et al. 2022, Table 1)."""
    return sigma_ve * sigma_data / torch.sqrt(sigma_ve**2 + sigma_data**2)


def c_in(sigma_ve: Tensor, sigma_data: float) -> Tensor:
    """c_in(σ̃) = 1/sqrt(σ̃² + σ_data²) (Karras et al. 2022, Table 1)."""
    return 1 / torch.sqrt(sigma_ve**2 + sigma_data**2)


def c_noise(sigma_ve: Tensor) -> Tensor:
    """c_noise(σ̃) = ¼ ln σ̃ (Karras et al. 2022, Table 1)."""
    return 0.25 * torch.log(sigma_ve)


def loss_weight(sigma_ve: Tensor, sigma_data: float) -> Tensor:
    """λ(σ̃)·σ̃² = (σ̃² + σ_data²)/σ_data²: EDM's weight λ(σ̃) = (σ̃² + σ_data²)/(σ̃ σ_data)² on ‖D − x_0‖² (Karras et
    al. 2022, Table 1), moved onto ‖ε̂ − ε‖² = ‖D − x_0‖²/σ̃²."""
    return (sigma_ve**2 + sigma_data**2) / sigma_data**2


def preconditioned(
    net: Callable[[Tensor, Tensor], Any], schedule: Any, sigma_data: float = SIGMA_DATA
) -> Callable[[Tensor, Tensor], Tensor]:
    """The x̂_0-denoiser D = c_skip x̃ + c_out F(c_in x̃, c_noise) at x̃ = z_t/α, σ̃ = exp(−λ_t/2) (Karras et al. 2022,
    eq. 7), F the network `net(input, c_noise)`; the coefficients in float64, F in the network's precision. At
    σ̃ = 0 (t = 0 of the discrete chain) D = x̃, c_noise taken at the smallest positive float64 so F stays finite."""

    def denoiser(z_t: Tensor, t: Tensor) -> Tensor:
        log_snr = schedule.log_snr(t).to(torch.float64)
        s = ve_sigma(log_snr)
        inv_alpha = torch.sqrt(1 + torch.exp(-log_snr))  # 1/α = sqrt(1 + e^{−λ})
        x_ve = expand(inv_alpha, z_t).to(torch.float64) * z_t.to(torch.float64)
        noise = c_noise(s.clamp_min(torch.finfo(torch.float64).tiny))
        F = net((expand(c_in(s, sigma_data), z_t) * x_ve).to(z_t.dtype), noise.to(z_t.dtype))
        D = expand(c_skip(s, sigma_data), z_t) * x_ve + expand(c_out(s, sigma_data), z_t) * F.to(torch.float64)
        return D.to(z_t.dtype)

    return denoiser


@torch.no_grad()
def time_of(schedule: Any, log_snr: Tensor) -> Tensor:
    """The times t ∈ [0, 1] with λ(t) = log_snr, λ decreasing in t, by bisection (clamped to the schedule's ends)."""
    target = log_snr.to(torch.float64)
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        above = schedule.log_snr(mid).to(target) > target  # λ(mid) too high: t lies later
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return 0.5 * (lo + hi)


@torch.no_grad()
def rho_grid(grid: Tensor, schedule: Any, rho: float = RHO, sigma_max: float = SIGMA_MAX) -> Tensor:
    """The grid's K steps re-spaced so σ̃_i = (σ̃_max^{1/ρ} + i/(K−1)(σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ, i < K, from
    σ̃_max = min(σ̃(t_K), `sigma_max`) to σ̃_min = σ̃(t_1), then t_0 = 0 (Karras et al. 2022, eq. 5)."""
    K = grid.numel() - 1
    if K < 2:
        return grid
    ends = ve_sigma(schedule.log_snr(grid[[0, -2]].to(torch.float64)).to(torch.float64)).cpu()
    top, bottom = min(float(ends[0]), sigma_max), float(ends[1])
    i = torch.arange(K, dtype=torch.float64) / (K - 1)
    sigmas = (top ** (1 / rho) + i * (bottom ** (1 / rho) - top ** (1 / rho))) ** rho
    t = time_of(schedule, (-2 * torch.log(sigmas)).to(grid.device)).to(grid.dtype)
    if top == float(ends[0]):
        t[0] = grid[0]
    t[-1] = grid[-2]
    return torch.cat([t, grid.new_zeros(1)])


def lognormal_times(
    u: Tensor, schedule: Any, p_mean: float = P_MEAN, p_std: float = P_STD
) -> tuple[Tensor, Tensor, Tensor]:
    """(t, λ_t, Z): ln σ̃ ~ N(P_mean, P_std²), i.e. λ ~ N(−2P_mean, 4P_std²) (Karras et al. 2022, Table 1), truncated
    to the schedule's [λ(1), λ(0)] of mass Z, drawn by the inverse CDF of the uniforms u; t = λ⁻¹(λ)."""
    normal = torch.distributions.Normal(torch.tensor(-2 * p_mean, dtype=torch.float64), 2 * p_std)
    with torch.no_grad():
        ends = schedule.log_snr(torch.tensor([1.0, 0.0], dtype=torch.float64, device=u.device))
        ends = ends.to(torch.float64).cpu()
    cdf_lo, cdf_hi = normal.cdf(ends[0]), normal.cdf(ends[1].clamp(max=1e300))
    mass = cdf_hi - cdf_lo
    log_snr = normal.icdf((cdf_lo + u.cpu().to(torch.float64) * mass).clamp(1e-300, 1 - 1e-16))
    t = time_of(schedule, log_snr.to(u.device)).clamp(0, 1)
    return t, schedule.log_snr(t), mass.to(u.device)


def lognormal_density(log_snr: Tensor, p_mean: float = P_MEAN, p_std: float = P_STD) -> Tensor:
    """p(λ) = N(λ; −2P_mean, 4P_std²), the density EDM's training draw puts on λ (untruncated)."""
    z = (log_snr + 2 * p_mean) / (2 * p_std)
    return torch.exp(-0.5 * z**2) / (2 * p_std * math.sqrt(2 * math.pi))
