"""Samplers: pure functions over an explicit time grid 1 = t_K > … > t_1 > t_0 = 0, stepping in (t, s) pairs.

Each takes a `reverse.Denoiser` (the network with its parameterisation), the state x_T, the grid
(`schedule.time_grid`) and the schedule, and returns x_0. No step reads hidden state: whatever a multistep method carries
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

from elbolab.diffusion.edm import rho_grid, time_of
from elbolab.diffusion.forward import posterior_coefficients, posterior_log_variance
from elbolab.diffusion.reverse import VARIANCES, Denoiser, reverse_log_variance
from elbolab.diffusion.schedule import NoiseSchedule, alpha, log_beta, sigma
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


def grid_steps(grid: Tensor, schedule: NoiseSchedule) -> list[Step]:
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
    schedule: NoiseSchedule,
    *,
    variance: str = "small",
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s = μ̃(x_t, x̂_0) + σ z with σ² = β̃, β or the learned interpolation (Ho et al. 2020, Alg. 2)."""
    if variance not in VARIANCES:
        raise ConfigError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    x = x_T
    for step in grid_steps(grid, schedule):
        d = denoiser.denoise(x, step.t, schedule)
        if step.s <= 0:
            return d.x0_hat
        std: Tensor | float
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
    schedule: NoiseSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s = α_s x̂_0 + sqrt(σ_s² − σ_η²) ε̂ + σ_η z, σ_η² = η² β̃(t, s) (Song et al. 2021, eq. 12)."""
    x = x_T
    for step in grid_steps(grid, schedule):
        d = denoiser.denoise(x, step.t, schedule)
        if step.s <= 0:
            return d.x0_hat
        var_eta = eta**2 * math.exp(step.log_var)
        x = step.alpha_s * d.x0_hat + math.sqrt(max(step.sigma_s**2 - var_eta, 0.0)) * d.eps_hat
        if eta > 0:
            x = x + math.sqrt(var_eta) * _noise(x, generator)
    return x


def dpm_solver_pp(
    denoiser: Denoiser,
    x_T: Tensor,
    grid: Tensor,
    schedule: NoiseSchedule,
    *,
    order: int = 2,
) -> Tensor:
    """DPM-Solver++(2M) or (3M): x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D, h = λ'_s − λ'_t, λ' = log(α/σ) = λ/2
    (Lu et al. 2022, Alg. 2), D = (1 + 1/2r) x̂_0 − (1/2r) x̂_0,prev, r = h_prev/h, for 2M; 3M adds the second
    divided difference of the last three x̂_0 (`_third_order`).

    The order is lowered to what the history allows on the first steps and, Lu et al.'s "lower order final",
    on the last ones: first order (D = x̂_0, i.e. DDIM) into the smallest positive time, whose h dwarfs the
    step before it, at most second order the step before.
    """
    if order not in (2, 3):
        raise ConfigError(f"DPM-Solver++ has orders 2 and 3 (2M, 3M), got {order}")
    x = x_T
    steps = grid_steps(grid, schedule)
    history: list[tuple[Tensor, float]] = []  # (x̂_0, h) of the steps before, most recent last
    for n, step in enumerate(steps):
        d = denoiser.denoise(x, step.t, schedule)
        if step.s <= 0:
            return d.x0_hat
        k = min(order, n + 1, len(steps) - 1 - n)
        if k == 3:
            x = _third_order(x, d.x0_hat, history[-1], history[-2], step)
        else:
            D = d.x0_hat
            if k == 2:
                x0_prev, h_prev = history[-1]
                half_inv_r = step.h / (2 * h_prev)
                D = (1 + half_inv_r) * d.x0_hat - half_inv_r * x0_prev
            x = (step.sigma_s / step.sigma_t) * x - (step.alpha_s * math.expm1(-step.h)) * D
        history = [*history[-1:], (d.x0_hat, step.h)]
    return x


def _third_order(x: Tensor, m0: Tensor, prev: tuple[Tensor, float], prev2: tuple[Tensor, float], step: Step) -> Tensor:
    """x_s = (σ_s/σ_t) x_t − α_s φ_1 m_0 + α_s φ_2 D_1 − 2 α_s φ_3 D_2, φ_1 = e^{−h} − 1, φ_2 = φ_1/h + 1,
    φ_3 = φ_2/h − ½: the exponential integrator over x̂_0's second-order Taylor expansion in λ', D_1 ≈ h x̂_0′ and
    D_2 ≈ h² x̂_0″/2 from divided differences of the last three x̂_0 (Lu et al. 2022, App. B, 3rd-order multistep)."""
    (m1, h0), (m2, h1) = prev, prev2
    h = step.h
    r0, r1 = h0 / h, h1 / h
    d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
    D1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    D2 = (d1_0 - d1_1) / (r0 + r1)
    phi_1 = math.expm1(-h)
    phi_2 = phi_1 / h + 1
    phi_3 = phi_2 / h - 0.5
    a = step.alpha_s
    return (step.sigma_s / step.sigma_t) * x - (a * phi_1) * m0 + (a * phi_2) * D1 - (2 * a * phi_3) * D2


def euler(denoiser: Denoiser, x_T: Tensor, grid: Tensor, schedule: NoiseSchedule) -> Tensor:
    """x̃_s = x̃_t + (σ̃_s − σ̃_t) ε̂, x̃ = x/α, σ̃ = σ/α: Euler on EDM's probability-flow ODE dx̃/dσ̃ = (x̃ − D)/σ̃ = ε̂
    (Karras et al. 2022, eq. 4 and Alg. 1 without its correction); on the same grid it is DDIM with η = 0."""
    x = x_T
    for step in grid_steps(grid, schedule):
        d = denoiser.denoise(x, step.t, schedule)
        if step.s <= 0:
            return d.x0_hat
        x = step.alpha_s * (x / step.alpha_t + (step.sigma_s / step.alpha_s - step.sigma_t / step.alpha_t) * d.eps_hat)
    return x


def heun_step(
    denoiser: Denoiser,
    x_ve: Tensor,
    t: float,
    sigma_t: float,
    s: float,
    sigma_s: float,
    alpha_s: float,
    schedule: NoiseSchedule,
    eps_t: Tensor,
) -> Tensor:
    """One step σ̃_t → σ̃_s > 0 of Heun's method on dx̃/dσ̃ = ε̂ from x̃_t with ε̂_t known: x̃′ = x̃_t + Δσ̃ ε̂_t, then
    x̃_s = x̃_t + Δσ̃ (ε̂_t + ε̂(α_s x̃′, s))/2 (Karras et al. 2022, Alg. 1, lines 5–8)."""
    delta = sigma_s - sigma_t
    x_euler = x_ve + delta * eps_t
    eps_s = denoiser.denoise(alpha_s * x_euler, s, schedule).eps_hat
    return x_ve + (0.5 * delta) * (eps_t + eps_s)


def heun(denoiser: Denoiser, x_T: Tensor, grid: Tensor, schedule: NoiseSchedule) -> Tensor:
    """EDM's deterministic sampler: Heun's 2nd-order method on dx̃/dσ̃ = ε̂ at every step into s > 0, the step into 0
    returning x̂_0 (Karras et al. 2022, Alg. 1): 2K − 1 network evaluations over K steps."""
    x = x_T
    for step in grid_steps(grid, schedule):
        d = denoiser.denoise(x, step.t, schedule)
        if step.s <= 0:
            return d.x0_hat
        sig_t, sig_s = step.sigma_t / step.alpha_t, step.sigma_s / step.alpha_s
        x_ve = heun_step(
            denoiser,
            x / step.alpha_t,
            step.t,
            sig_t,
            step.s,
            sig_s,
            step.alpha_s,
            schedule,
            d.eps_hat,
        )
        x = step.alpha_s * x_ve
    return x


@dataclass(frozen=True)
class Churn:
    """EDM's stochastic churn (Karras et al. 2022, Alg. 2): at steps with S_min ≤ σ̃_t ≤ S_max, noise raises σ̃_t to
    σ̂ = (1 + γ) σ̃_t, γ = min(S_churn/K, √2 − 1), with noise scaled by S_noise. σ̃ = σ/α is EDM's σ."""

    s_churn: float = 0.0
    s_min: float = 0.0
    s_max: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        if not (self.s_churn >= 0 and 0 <= self.s_min <= self.s_max and self.s_noise >= 0):
            raise ConfigError(
                f"churn needs s_churn ≥ 0, 0 ≤ s_min ≤ s_max and s_noise ≥ 0, got s_churn={self.s_churn}, "
                f"s_min={self.s_min}, s_max={self.s_max}, s_noise={self.s_noise}"
            )

    def gamma(self, sigma_ve: float, K: int) -> float:
        """γ_i = min(S_churn/K, √2 − 1) if S_min ≤ σ̃_i ≤ S_max, else 0 (Karras et al. 2022, Alg. 2, line 4)."""
        return min(self.s_churn / K, math.sqrt(2) - 1) if self.s_min <= sigma_ve <= self.s_max else 0.0


def heun_churn(
    denoiser: Denoiser,
    x_T: Tensor,
    grid: Tensor,
    schedule: NoiseSchedule,
    *,
    churn: Churn = Churn(),
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDM's stochastic sampler: x̃ raised from σ̃_t to σ̂ = (1 + γ)σ̃_t by x̃ += sqrt(σ̂² − σ̃_t²) S_noise z, then a Heun step
    from σ̂ (at t̂ = λ⁻¹(−2 ln σ̂), σ̂ at most the schedule's σ̃(1)) to σ̃_s (Karras et al. 2022, Alg. 2)."""
    x = x_T
    steps = grid_steps(grid, schedule)
    sigma_top = math.exp(-0.5 * float(schedule.log_snr(1.0)))
    for step in steps:
        sig_t = step.sigma_t / step.alpha_t
        x_ve, t_hat, sig_hat = x / step.alpha_t, step.t, sig_t
        gamma = churn.gamma(sig_t, len(steps)) if step.s > 0 else 0.0
        if gamma > 0:
            sig_hat = min((1 + gamma) * sig_t, sigma_top)
            t_hat = float(time_of(schedule, torch.tensor(-2 * math.log(sig_hat), dtype=torch.float64)))
            x_ve = x_ve + (churn.s_noise * math.sqrt(max(sig_hat**2 - sig_t**2, 0.0))) * _noise(x_ve, generator)
        alpha_hat = 1 / math.sqrt(1 + sig_hat**2)  # α = 1/sqrt(1 + σ̃²) on the variance-preserving chain
        d = denoiser.denoise(alpha_hat * x_ve if gamma > 0 else x, t_hat, schedule)
        if step.s <= 0:
            return d.x0_hat
        sig_s = step.sigma_s / step.alpha_s
        x_ve = heun_step(denoiser, x_ve, t_hat, sig_hat, step.s, sig_s, step.alpha_s, schedule, d.eps_hat)
        x = step.alpha_s * x_ve
    return x


def ddim_invert(
    denoiser: Denoiser,
    x_0: Tensor,
    grid: Tensor,
    schedule: NoiseSchedule,
    *,
    fixed_point: int = 0,
) -> Tensor:
    """x_0 → x_T by DDIM (η = 0) run backwards: x_t = α_t (x_s − σ_s ε̂)/α_s + σ_t ε̂ (Song et al. 2021, eq. 13).

    ε̂ is read at (x_s, s) (at (x_0, t) from the data, where σ_0 = 0), then refined `fixed_point`
    times by ε̂ ← ε̂(x_t, t), which makes the step the exact inverse of `ddim`'s as it converges.
    """
    x = x_0
    for step in reversed(grid_steps(grid, schedule)):
        a_s, s_s = (1.0, 0.0) if step.s <= 0 else (step.alpha_s, step.sigma_s)
        eps_hat = denoiser.denoise(x, step.s if step.s > 0 else step.t, schedule).eps_hat
        x_t = (step.alpha_t / a_s) * (x - s_s * eps_hat) + step.sigma_t * eps_hat
        for _ in range(fixed_point):
            eps_hat = denoiser.denoise(x_t, step.t, schedule).eps_hat
            x_t = (step.alpha_t / a_s) * (x - s_s * eps_hat) + step.sigma_t * eps_hat
        x = x_t
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ancestral": ancestral,
    "ddim": ddim,
    "dpm-solver++": dpm_solver_pp,
    "dpm-solver++3m": dpm_solver_pp,
    "euler": euler,
    "heun": heun,
    "heun-churn": heun_churn,
}
#: the samplers that step over EDM's ρ = 7 grid of σ̃ (`edm.rho_grid`) rather than the grid they are given
RHO_GRID_SAMPLERS = ("euler", "heun", "heun-churn")


def nfe(name: str, steps: int) -> int:
    """Network evaluations of `name` over `steps` steps: Heun's 2 per step into s > 0, 1 into 0; every other's 1."""
    return 2 * steps - 1 if name in ("heun", "heun-churn") else steps


def run_sampler(
    name: str,
    denoiser: Denoiser,
    x_T: Tensor,
    grid: Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str = "small",
    eta: float = 0.0,
    churn: Churn = Churn(),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run the sampler called `name` with the options that apply to it; Euler and Heun re-space the grid's steps on
    EDM's ρ grid between its end times (`edm.rho_grid`)."""
    if name in RHO_GRID_SAMPLERS:
        grid = rho_grid(grid, schedule)
    if name == "ancestral":
        return ancestral(denoiser, x_T, grid, schedule, variance=variance, generator=generator)
    if name == "ddim":
        return ddim(denoiser, x_T, grid, schedule, eta=eta, generator=generator)
    if name in ("dpm-solver++", "dpm-solver++3m"):
        return dpm_solver_pp(denoiser, x_T, grid, schedule, order=3 if name.endswith("3m") else 2)
    if name in ("euler", "heun"):
        return SAMPLERS[name](denoiser, x_T, grid, schedule)
    if name == "heun-churn":
        return heun_churn(denoiser, x_T, grid, schedule, churn=churn, generator=generator)
    raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
