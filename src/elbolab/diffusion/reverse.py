"""The reverse process p_θ(x_s | x_t): a denoiser's output as (x̂_0, ε̂), and the step's variance.

A `Denoiser` is one object: a callable `net(x_t, t)`, t a float64 [B] tensor of times in [0, 1],
returning the output named by its `parameterisation` (ε̂, x̂_0 or v̂; EDM's preconditioned D as x̂_0)
shaped like x_t, or a pair (output, var_interp) where var_interp ∈ [0, 1] is the learned-variance
interpolation (Nichol & Dhariwal 2021, eq. 15; their v, renamed here so it is not mistaken for
v-prediction). The network, an analytic oracle in the tests, or a model with clipping all fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from elbolab.diffusion.forward import expand, posterior_log_variance
from elbolab.diffusion.parameterisation import PARAMETERISATIONS, x0_and_eps
from elbolab.diffusion.schedule import NoiseSchedule, alpha, log_beta, log_sigma2, sigma
from elbolab.errors import ConfigError

#: a network or oracle net(x_t, t): its prediction, or (prediction, var_interp) for a learned variance
NetFn = Callable[[Tensor, Tensor], Tensor | tuple[Tensor, Tensor]]
Variance = Literal["small", "large", "learned"]
VARIANCES = ("small", "large", "learned")


@dataclass(frozen=True)
class Denoised:
    """A denoiser's answer at (x_t, t): the data and noise predictions, and var_interp if it learns the variance."""

    x0_hat: Tensor
    eps_hat: Tensor
    var_interp: Tensor | None = None


def batch_times(t: Tensor | float, x: Tensor) -> Tensor:
    """t as a float64 [B] tensor on x's device."""
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


@dataclass(frozen=True)
class Denoiser:
    """net(x_t, t) with what it predicts, ε, x_0 or v (EDM's one denoiser D(x; σ), Karras et al. 2022, §2): the
    single thing samplers and bounds are given, asked for (x̂_0, ε̂) at (x_t, t)."""

    net: NetFn
    parameterisation: str = "eps"

    def __post_init__(self) -> None:
        if self.parameterisation not in PARAMETERISATIONS:
            raise ConfigError(
                f"unknown parameterisation {self.parameterisation!r}; choose one of {', '.join(PARAMETERISATIONS)}"
            )

    def denoise(self, x_t: Tensor, t: Tensor | float, schedule: NoiseSchedule) -> Denoised:
        """(x̂_0, ε̂, var_interp) at (x_t, t): the prediction converted by `x0_and_eps` (Salimans & Ho 2022, §4)."""
        out = self.net(x_t, batch_times(t, x_t))
        output, var_interp = out if isinstance(out, tuple) else (out, None)
        log_snr = schedule.log_snr(torch.as_tensor(t, dtype=torch.float64))  # a scalar, or [B]
        x0_hat, eps_hat = x0_and_eps(
            output.to(x_t.dtype), self.parameterisation, x_t, expand(alpha(log_snr), x_t), expand(sigma(log_snr), x_t)
        )
        return Denoised(x0_hat, eps_hat, None if var_interp is None else var_interp.to(x_t.dtype))

    def x0_hat(self, x_t: Tensor, t: Tensor | float, schedule: NoiseSchedule) -> Tensor:
        """x̂_0(x_t, t) (Ho et al. 2020, eq. 15 for an ε-network)."""
        return self.denoise(x_t, t, schedule).x0_hat

    def eps_hat(self, x_t: Tensor, t: Tensor | float, schedule: NoiseSchedule) -> Tensor:
        """ε̂(x_t, t) = (x_t − α_t x̂_0)/σ_t for an x_0-network."""
        return self.denoise(x_t, t, schedule).eps_hat

    def clipped(self, schedule: NoiseSchedule) -> Denoiser:
        """The x_0-denoiser whose x̂_0 is this one's clipped to [−1, 1] (var_interp passed through)."""

        def net(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            d = self.denoise(x_t, t, schedule)
            x0_hat = d.x0_hat.clamp(-1, 1)
            return x0_hat if d.var_interp is None else (x0_hat, d.var_interp)

        return Denoiser(net, "x0")


def small_log_variance(schedule: NoiseSchedule, t: Tensor, s: Tensor) -> Tensor:
    """log β̃(t, s), with the step into s = 0 given β̃(2t, t) instead of 0 (Nichol & Dhariwal 2021, §3.1's clipping);
    where no step 2t ≤ 1 follows (the one-step chain, t = 1), β(t, 0) = σ_t², the posterior variance of x_0 for
    N(0, I) data (Ho et al. 2020, §3.2), the only non-zero choice one step offers."""
    into_data = s <= 0
    alone = into_data & (2 * t > 1)
    t_hi = torch.where(into_data, (2 * t).clamp(max=1.0), t)
    s_lo = torch.where(into_data, torch.where(alone, t / 2, t), s)  # finite on both branches (gradients too)
    clipped = posterior_log_variance(schedule.log_snr(t_hi), schedule.log_snr(s_lo))
    return torch.where(alone, log_sigma2(schedule.log_snr(t)), clipped)


def reverse_log_variance(
    schedule: NoiseSchedule,
    t: Tensor | float,
    s: Tensor | float,
    variance: str,
    like: Tensor,
    var_interp: Tensor | None = None,
) -> Tensor:
    """log σ² of p_θ(x_s|x_t), shaped to broadcast with `like`: β̃ ("small"), β ("large") or
    w log β + (1 − w) log β̃ with w = var_interp ("learned"; Nichol & Dhariwal 2021, eq. 15)."""
    t, s = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    if variance == "small":
        return expand(small_log_variance(schedule, t, s), like)
    large = expand(log_beta(schedule.log_snr(t), schedule.log_snr(s)), like)
    if variance == "large":
        return large
    if variance == "learned":
        if var_interp is None:
            raise ConfigError("variance 'learned' needs a denoiser that returns (output, var_interp)")
        return var_interp * large + (1 - var_interp) * expand(small_log_variance(schedule, t, s), like)
    raise ConfigError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
