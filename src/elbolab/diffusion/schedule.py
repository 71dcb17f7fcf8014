"""The noise schedule: one log-SNR function λ(t) on t ∈ [0, 1]; everything else derives from it.

Variance preserving (VDM, Kingma et al. 2021): α_t² = sigmoid(λ_t), σ_t² = sigmoid(−λ_t),
SNR_t = e^{λ_t}, ᾱ_t = α_t². The discrete-time model with T steps lives on the grid
t_i = i/T, so ᾱ_i = α²(t_i) and β_i = 1 − ᾱ_i/ᾱ_{i−1}. All of it is computed in float64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from elbolab.errors import ConfigError

#: Nichol & Dhariwal (2021) clip every β_i at this value (§3.2); the last cosine step is the only one it reaches.
MAX_BETA = 0.999
#: the cosine schedule's offset s (Nichol & Dhariwal 2021, eq. 17)
COSINE_S = 0.008


def _as_time(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


def log_snr_from_log_alpha_bar(log_alpha_bar: Tensor) -> Tensor:
    """λ = log(ᾱ / (1 − ᾱ)), stable for ᾱ near 0 and 1."""
    return log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar))


def linear_log_alpha_bar(t: Tensor, T: int) -> Tensor:
    """log ᾱ(t) = Σ_{j ≤ tT} log(1 − β_j), β_j linear from 1e-4·1000/T to 0.02·1000/T (Ho et al. 2020, §4).

    Exact on the grid t_i = i/T (the schedule is defined by its discrete β's) and linear in t between.
    """
    beta_1, beta_T = 1e-4 * 1000 / T, 0.02 * 1000 / T
    if beta_T >= MAX_BETA:
        raise ConfigError(
            f"the linear schedule needs T ≥ 21 (its last β is 20/T = {beta_T:.3g}); use the cosine schedule for T = {T}"
        )
    betas = torch.linspace(beta_1, beta_T, T, dtype=torch.float64, device=t.device)
    table = torch.cat([betas.new_zeros(1), torch.cumsum(torch.log1p(-betas), 0)])
    n = (t * T).clamp(0, T)
    i = n.floor().long().clamp(max=T - 1)
    return table[i] + (n - i) * (table[i + 1] - table[i])


def cosine_log_alpha_bar(t: Tensor, T: int) -> Tensor:
    """log ᾱ(t) = log f(t)/f(0), f(t) = cos²((t+s)/(1+s)·π/2), with β_i ≤ 0.999 (Nichol & Dhariwal 2021, eq. 17).

    Only the last step ever reaches the clip, so one step of look-back reproduces it:
    log ᾱ(t) = max(log f(t)/f(0), log ᾱ(t − 1/T) + log(1 − 0.999)).
    """

    def log_f(u: Tensor) -> Tensor:
        return 2 * torch.log(torch.cos((u + COSINE_S) / (1 + COSINE_S) * (math.pi / 2)).clamp_min(1e-300))

    log_f0 = log_f(torch.zeros((), dtype=torch.float64))
    unclipped = log_f(t) - log_f0
    previous = log_f((t - 1.0 / T).clamp_min(0)) - log_f0 + math.log1p(-MAX_BETA)
    return torch.where(t >= 1.0 / T, torch.maximum(unclipped, previous), unclipped)


LOG_ALPHA_BAR = {"linear": linear_log_alpha_bar, "cosine": cosine_log_alpha_bar}


@runtime_checkable
class NoiseSchedule(Protocol):
    """What the samplers and bounds read of a schedule: λ(t) on t ∈ [0, 1] and the grid t_i = i/T of its T steps.

    `Schedule`, `tabulated.TabulatedSchedule`, `learned_schedule.LearnedSchedule` and `OneStepSchedule` are ones."""

    @property
    def T(self) -> int: ...

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log SNR(t), float64."""
        ...

    def times(self, i: Tensor | int) -> Tensor:
        """t_i = i/T, float64."""
        ...


@runtime_checkable
class DiscreteSchedule(NoiseSchedule, Protocol):
    """A schedule of the T-step chain that gives its β_1..β_T (what a DDPM scheduler takes)."""

    def betas(self) -> Tensor:
        """β_1..β_T, β_i = 1 − ᾱ_i/ᾱ_{i−1} (Ho et al. 2020, eq. 4)."""
        ...


@runtime_checkable
class ContinuousSchedule(NoiseSchedule, Protocol):
    """A schedule with γ(t) = −λ(t) and dγ/dt, what the continuous-time bound integrates (VDM, eq. 17)."""

    def gamma(self, t: Tensor | float) -> Tensor:
        """γ(t) = −λ(t), float64."""
        ...

    def gamma_prime(self, t: Tensor | float) -> Tensor:
        """dγ/dt, float64."""
        ...


def grid_times(i: Tensor | int, T: int) -> Tensor:
    """t_i = i/T, float64."""
    return _as_time(i) / T


def grid_betas(schedule: NoiseSchedule) -> Tensor:
    """β_1..β_T of the discrete chain, β_i = 1 − ᾱ_i/ᾱ_{i−1} (Ho et al. 2020, eq. 4)."""
    i = torch.arange(1, schedule.T + 1, dtype=torch.float64)
    return beta(schedule.log_snr(schedule.times(i)), schedule.log_snr(schedule.times(i - 1)))


@functools.lru_cache(maxsize=1 << 16)
def _scalar_log_snr(name: str, T: int, t: float) -> float:
    """λ at one time, cached: samplers ask for the same grid times at every step."""
    return log_snr_from_log_alpha_bar(LOG_ALPHA_BAR[name](torch.tensor(t, dtype=torch.float64), T)).item()


@dataclass(frozen=True)
class Schedule:
    """A named variance-preserving schedule for a T-step model: λ(t), and what derives from it."""

    name: str
    T: int

    def __post_init__(self) -> None:
        if self.name not in LOG_ALPHA_BAR:
            raise ConfigError(f"unknown schedule {self.name!r}; choose one of {', '.join(LOG_ALPHA_BAR)}")
        if self.T < 1:
            raise ConfigError(f"T must be ≥ 1 (model.T), got {self.T}")
        self.log_snr(torch.ones(()))  # raises for a schedule that T does not support

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log SNR(t), float64; +∞ at t = 0 (VDM's −γ(t))."""
        t = _as_time(t)
        if t.ndim == 0 and t.device.type == "cpu":  # a sampler's grid time: remembered
            return torch.tensor(_scalar_log_snr(self.name, self.T, t.item()), dtype=torch.float64)
        return log_snr_from_log_alpha_bar(LOG_ALPHA_BAR[self.name](t, self.T))

    def times(self, i: Tensor | int) -> Tensor:
        """t_i = i/T, float64."""
        return grid_times(i, self.T)

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """ᾱ(t) = sigmoid(λ(t))."""
        return alpha_bar(self.log_snr(t))

    def betas(self) -> Tensor:
        """β_1..β_T of the discrete chain (`grid_betas`)."""
        return grid_betas(self)


# ---------------------------------------------------------------- quantities of λ


def alpha_bar(log_snr: Tensor) -> Tensor:
    """ᾱ = α² = sigmoid(λ)."""
    return torch.sigmoid(log_snr)


def alpha(log_snr: Tensor) -> Tensor:
    """α = sqrt(sigmoid(λ))."""
    return torch.sigmoid(log_snr).sqrt()


def sigma(log_snr: Tensor) -> Tensor:
    """σ = sqrt(sigmoid(−λ))."""
    return torch.sigmoid(-log_snr).sqrt()


def log_sigma2(log_snr: Tensor) -> Tensor:
    """log σ² = −softplus(λ)."""
    return -F.softplus(log_snr)


def log_beta(log_snr_t: Tensor, log_snr_s: Tensor) -> Tensor:
    """log σ²_{t|s} = log(1 − ᾱ_t/ᾱ_s), s < t: the forward step's variance (VDM, eq. 5)."""
    return torch.log(-torch.expm1(F.softplus(-log_snr_s) - F.softplus(-log_snr_t)))


def beta(log_snr_t: Tensor, log_snr_s: Tensor) -> Tensor:
    """σ²_{t|s} = 1 − ᾱ_t/ᾱ_s; on the grid (t_i, t_{i−1}) this is β_i."""
    return -torch.expm1(F.softplus(-log_snr_s) - F.softplus(-log_snr_t))


# ---------------------------------------------------------------- sampling grids


def step_grid(T: int, steps: int | None = None) -> Tensor:
    """Step indices T = i_K > … > i_1 = 1 > 0, spaced uniformly in the T steps (Nichol & Dhariwal 2021, §4).

    `steps` = K is the number of network evaluations (NFE); None uses all T steps.
    """
    K = T if steps is None else int(steps)
    if not 1 <= K <= T:
        raise ConfigError(f"steps must be between 1 and T = {T}, got {steps}")
    if K == 1:
        return torch.tensor([T, 0])
    k = torch.arange(K - 1, -1, -1)
    i = 1 + ((T - 1) * k * 2 + (K - 1)) // (2 * (K - 1))  # round(1 + (T−1)k/(K−1)), half up
    return torch.cat([i, torch.zeros(1, dtype=i.dtype)])


def time_grid(T: int, steps: int | None = None) -> Tensor:
    """The sampling times 1 = t_K > … > t_1 = 1/T > 0 (float64) on the training grid."""
    return step_grid(T, steps).to(torch.float64) / T
