"""Continuous-time schedules with finite, optionally learned, end points (VDM, Kingma et al. 2021, §3.4–3.5).

γ(t) = −λ(t) is the negative log-SNR, increasing from γ_min = γ(0) to γ_max = γ(1). Between the end points
the shape is "linear" in γ (VDM's linear schedule), "cosine", γ(t) = 2 log tan(u(t)) with u moving linearly
between the end points' angles (the cosine schedule of Nichol & Dhariwal, truncated at both ends), or
"learned": VDM's monotone network (App. H), γ̃(t) = a t + (1/F) Σ_j c_j φ(d_j (2t − 1) + e_j) with a, c, d ≥ 0
and φ(x) = 2 sigmoid(x) − 1, rescaled to run from γ_min to γ_max. The end points are parameters trained on
the bound (VDM, §3.5). With a network conditioned on λ the continuous-time bound would depend on the
schedule only through them (VDM, eq. 20); elbolab's networks are conditioned on t, so a learned shape also
changes which noise level the network sees at each t, and the bound trains it like the end points.

This schedule offers what the samplers and bounds use of `schedule.Schedule` (`log_snr`, `times`, `T`,
`alpha_bar`), plus `gamma_prime`. Nothing is cached: λ changes as the schedule learns.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from elbolab.diffusion.schedule import alpha_bar
from elbolab.errors import ConfigError

SHAPES = ("linear", "cosine", "learned")
#: hidden units of the learned shape's monotone network (VDM uses 1024)
SHAPE_FEATURES = 256
#: times per chunk when the learned shape is evaluated on a long grid
RAW_CHUNK = 2**14
#: VDM's end points for 8-bit images (Kingma et al. 2021, App. B)
VDM_GAMMA_MIN, VDM_GAMMA_MAX = -13.3, 5.0


def level_gamma_min(levels: int, bin_fraction: float) -> float:
    """γ_min = logit(σ_0²) with σ_0 = `bin_fraction` × the bin width 2/(K − 1): z_0 resolves the K levels."""
    sigma2 = (bin_fraction * 2.0 / (levels - 1)) ** 2
    return math.log(sigma2 / (1.0 - sigma2))


class LearnedSchedule(nn.Module):
    """γ(t) on t ∈ [0, 1] between end points γ_min < γ_max (learned if `learn_endpoints`), of a fixed shape
    (linear, cosine) or a learned one (`MonotoneShape`).

    `T` is the grid t_i = i/T the model samples on by default and its discrete-time bound uses.
    """

    #: (γ_min, γ_max), float64: a parameter if `learn_endpoints`, else a buffer
    ends: Tensor

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
        if shape == "learned":
            self.shape_net = MonotoneShape(SHAPE_FEATURES)

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
        if self.shape == "learned":
            return self.gamma_min + (self.gamma_max - self.gamma_min) * self.shape_net.fraction(t)
        u0, u1 = self._angles()
        return 2 * torch.log(torch.tan(u0 + (u1 - u0) * t))

    def gamma_prime(self, t: Tensor | float) -> Tensor:
        """dγ/dt: γ_max − γ_min (linear); 2(u_1 − u_0)/(sin u cos u) = 4(u_1 − u_0)/sin 2u (cosine);
        (γ_max − γ_min) times the learned shape's slope (learned)."""
        t = self._t(t)
        if self.shape == "linear":
            return (self.gamma_max - self.gamma_min).expand(t.shape)
        if self.shape == "learned":
            return (self.gamma_max - self.gamma_min) * self.shape_net.fraction_prime(t)
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


class MonotoneShape(nn.Module):
    """s(t) ∈ [0, 1], increasing, s(0) = 0, s(1) = 1: γ̃(t) = a t + (1/F) Σ_j c_j φ(d_j (2t − 1) + e_j) rescaled,
    with a, c, d ≥ 0 (absolute values of the parameters) and φ(x) = 2 sigmoid(x) − 1 (VDM, App. H). It starts
    close to linear (small c), float64."""

    def __init__(self, features: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)  # the same start for every run: the shape is part of the model
        self.a = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.c = nn.Parameter(0.1 * torch.rand(features, generator=g, dtype=torch.float64))
        self.d = nn.Parameter(1 + 3 * torch.rand(features, generator=g, dtype=torch.float64))
        self.e = nn.Parameter(2 * torch.randn(features, generator=g, dtype=torch.float64))

    def _raw(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(γ̃(t), γ̃′(t)) elementwise; a long grid in chunks, so its [len, F] intermediates stay small."""
        if t.numel() > RAW_CHUNK:
            flat = t.flatten()
            parts = [self._raw(flat[i : i + RAW_CHUNK]) for i in range(0, flat.numel(), RAW_CHUNK)]
            return torch.cat([v for v, _ in parts]).view(t.shape), torch.cat([d for _, d in parts]).view(t.shape)
        x = self.d.abs() * (2 * t.unsqueeze(-1) - 1) + self.e  # [..., F]
        s = torch.sigmoid(x)
        c = self.c.abs() / self.c.numel()
        value = self.a.abs() * t + ((2 * s - 1) * c).sum(-1)
        slope = self.a.abs() + (2 * s * (1 - s) * 2 * self.d.abs() * c).sum(-1)
        return value, slope

    def _ends(self, device: torch.device) -> tuple[Tensor, Tensor]:
        both, _ = self._raw(torch.tensor([0.0, 1.0], dtype=torch.float64, device=device))
        return both[0], both[1]

    def fraction(self, t: Tensor) -> Tensor:
        """s(t) = (γ̃(t) − γ̃(0)) / (γ̃(1) − γ̃(0))."""
        lo, hi = self._ends(t.device)
        return (self._raw(t)[0] - lo) / (hi - lo)

    def fraction_prime(self, t: Tensor) -> Tensor:
        """s′(t) = γ̃′(t) / (γ̃(1) − γ̃(0)) > 0."""
        lo, hi = self._ends(t.device)
        return self._raw(t)[1] / (hi - lo)


class OneStepSchedule(nn.Module):
    """The one-step chain's schedule (discrete time, T = 1): q(x_1|x_0) = N(α_1 x_0, σ_1² I) with one log-SNR
    λ_1 = −γ_1, learned on the bound if `learn`; x_0 is the data (λ = +∞ at t = 0). Between, λ(t) = −γ_1 − 2 log t
    (σ/α ∝ t), which only a sampler's grid time other than 0 and 1 would read."""

    T = 1
    #: γ_1 = −λ_1, float64: a parameter if learned, else a buffer
    gamma_1: Tensor

    def __init__(self, gamma_1: float, learn: bool = True) -> None:
        super().__init__()
        value = torch.tensor(float(gamma_1), dtype=torch.float64)
        if learn:
            self.gamma_1 = nn.Parameter(value)
        else:
            self.register_buffer("gamma_1", value)

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = −γ_1 − 2 log t, float64: +∞ at t = 0, −γ_1 at t = 1."""
        t = torch.as_tensor(t, dtype=torch.float64, device=self.gamma_1.device)
        return -self.gamma_1 - 2 * torch.log(t)

    def times(self, i: Tensor | int) -> Tensor:
        """t_i = i/T = i, float64."""
        return torch.as_tensor(i, dtype=torch.float64, device=self.gamma_1.device) / self.T

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """α²(t) = sigmoid(λ(t))."""
        return alpha_bar(self.log_snr(t))

    def betas(self) -> Tensor:
        """β_1 = σ_1² = sigmoid(γ_1), [1]."""
        return torch.sigmoid(self.gamma_1).reshape(1)

    def extra_repr(self) -> str:
        return f"gamma_1={self.gamma_1.item():.3f}, learned={isinstance(self.gamma_1, nn.Parameter)}"


#: the longest grid a continuous-time model samples on (its grid is held in memory)
MAX_GRID_STEPS = 10**6


def uniform_grid(steps: int) -> Tensor:
    """The sampling times 1 = t_K > … > t_1 = 1/K > t_0 = 0, uniform in t (float64), for any 1 ≤ K ≤ 10⁶."""
    if not 1 <= steps <= MAX_GRID_STEPS:
        raise ConfigError(f"continuous time samples with 1 to {MAX_GRID_STEPS} steps, got {steps}")
    return torch.linspace(1, 0, steps + 1, dtype=torch.float64)
