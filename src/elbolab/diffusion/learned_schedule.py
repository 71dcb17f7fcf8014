"""Continuous-time schedules with finite, optionally learned, end points (VDM, Kingma et al. 2021, §3.4–3.5).

γ(t) = −λ(t) is the negative log-SNR, increasing from γ_min = γ(0) to γ_max = γ(1). Between the end points
the shape is fixed: "linear" in γ (VDM's linear schedule) or "cosine", γ(t) = 2 log tan(u(t)) with u moving
linearly between the end points' angles (the cosine schedule of Nichol & Dhariwal, truncated at both ends).
The end points are parameters trained on the bound (VDM, §3.5): with a fixed shape the continuous-time
bound depends on the schedule only through them (VDM, eq. 20).

This schedule offers what the samplers and bounds use of `schedule.Schedule` (`log_snr`, `times`, `T`,
`alpha_bar`), plus `gamma_prime`. Nothing is cached: λ changes as the end points learn.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from elbolab.diffusion.schedule import alpha_bar
from elbolab.errors import ConfigError

SHAPES = ("linear", "cosine")
#: VDM's end points for 8-bit images (Kingma et al. 2021, App. B)
VDM_GAMMA_MIN, VDM_GAMMA_MAX = -13.3, 5.0


def level_gamma_min(levels: int, bin_fraction: float) -> float:
    """γ_min = logit(σ_0²) with σ_0 = `bin_fraction` × the bin width 2/(K − 1): z_0 resolves the K levels."""
    sigma2 = (bin_fraction * 2.0 / (levels - 1)) ** 2
    return math.log(sigma2 / (1.0 - sigma2))


class LearnedSchedule(nn.Module):
    """γ(t) on t ∈ [0, 1] between end points γ_min < γ_max (learned if `learn_endpoints`), of a fixed shape.

    `T` is the grid t_i = i/T the model samples on by default and its discrete-time bound uses.
    """

    def __init__(self, shape: str, T: int, gamma_min: float, gamma_max: float, learn_endpoints: bool = True) -> None:
        super().__init__()
        if shape not in SHAPES:
            raise ConfigError(f"unknown continuous-time schedule shape {shape!r}; choose one of {', '.join(SHAPES)}")
        if not gamma_min < gamma_max:
            raise ConfigError(f"the schedule needs γ_min < γ_max, got {gamma_min} and {gamma_max}")
        self.shape, self.T, self.learn_endpoints = shape, int(T), learn_endpoints
        ends = torch.tensor([gamma_min, gamma_max], dtype=torch.float64)
        if learn_endpoints:
            self.ends = nn.Parameter(ends)
        else:
            self.register_buffer("ends", ends)

    @property
    def gamma_min(self) -> Tensor:
        return self.ends[0]

    @property
    def gamma_max(self) -> Tensor:
        return self.ends[1]

    def _t(self, t: Tensor | float) -> Tensor:
        return torch.as_tensor(t, dtype=torch.float64, device=self.ends.device)

    def _angles(self) -> tuple[Tensor, Tensor]:
        """The cosine shape's u(0), u(1): tan u = σ/α = exp(γ/2)."""
        return torch.atan(torch.exp(0.5 * self.gamma_min)), torch.atan(torch.exp(0.5 * self.gamma_max))

    def gamma(self, t: Tensor | float) -> Tensor:
        """γ(t) = −λ(t), float64."""
        t = self._t(t)
        if self.shape == "linear":
            return self.gamma_min + (self.gamma_max - self.gamma_min) * t
        u0, u1 = self._angles()
        return 2 * torch.log(torch.tan(u0 + (u1 - u0) * t))

    def gamma_prime(self, t: Tensor | float) -> Tensor:
        """dγ/dt: γ_max − γ_min (linear); 2(u_1 − u_0)/(sin u cos u) = 4(u_1 − u_0)/sin 2u (cosine)."""
        t = self._t(t)
        if self.shape == "linear":
            return (self.gamma_max - self.gamma_min).expand(t.shape)
        u0, u1 = self._angles()
        return 4 * (u1 - u0) / torch.sin(2 * (u0 + (u1 - u0) * t))

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = −γ(t), float64, finite at both ends."""
        return -self.gamma(t)

    def times(self, i: Tensor | int) -> Tensor:
        """t_i = i/T, float64."""
        return self._t(i) / self.T

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """α²(t) = sigmoid(λ(t))."""
        return alpha_bar(self.log_snr(t))

    def extra_repr(self) -> str:
        lo, hi = self.ends.tolist()
        return f"shape={self.shape}, T={self.T}, gamma_min={lo:.3f}, gamma_max={hi:.3f}, learned={self.learn_endpoints}"


#: the longest grid a continuous-time model samples on (its grid is held in memory)
MAX_GRID_STEPS = 10 ** 6


def uniform_grid(steps: int) -> Tensor:
    """The sampling times 1 = t_K > … > t_1 = 1/K > t_0 = 0, uniform in t (float64), for any 1 ≤ K ≤ 10⁶."""
    if not 1 <= steps <= MAX_GRID_STEPS:
        raise ConfigError(f"continuous time samples with 1 to {MAX_GRID_STEPS} steps, got {steps}")
    return torch.linspace(1, 0, steps + 1, dtype=torch.float64)
