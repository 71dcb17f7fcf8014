"""The forward process q: marginals, single steps and the posterior, as functions of log-SNR.

No learned parameters. Every function takes λ as a scalar or a [B] tensor and works on
x of any shape [B, ...]; coefficients are computed in float64 and cast to x's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from elbolab.diffusion.schedule import alpha, log_beta, log_sigma2, sigma


def expand(v: Tensor, like: Tensor) -> Tensor:
    """A scalar or [B] coefficient shaped to broadcast against `like` [B, ...], in its dtype."""
    v = torch.as_tensor(v, dtype=torch.float64)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim)).to(dtype=like.dtype, device=like.device)


def q_sample(x_0: Tensor, log_snr_t: Tensor, eps: Tensor) -> Tensor:
    """x_t = α_t x_0 + σ_t ε (Ho et al. 2020, eq. 4)."""
    return expand(alpha(log_snr_t), x_0) * x_0 + expand(sigma(log_snr_t), x_0) * eps


def q_marginal(x_0: Tensor, log_snr_t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean α_t x_0 and variance σ_t² of q(x_t | x_0) (Ho et al. 2020, eq. 4)."""
    return expand(alpha(log_snr_t), x_0) * x_0, expand(torch.sigmoid(-log_snr_t), x_0)


def q_step(x_s: Tensor, log_snr_t: Tensor, log_snr_s: Tensor) -> tuple[Tensor, Tensor]:
    """Mean α_{t|s} x_s and variance σ²_{t|s} of q(x_t | x_s), s < t (VDM, eq. 5)."""
    alpha_ts = torch.exp(0.5 * (F.softplus(-log_snr_s) - F.softplus(-log_snr_t)))
    return expand(alpha_ts, x_s) * x_s, expand(torch.exp(log_beta(log_snr_t, log_snr_s)), x_s)


def posterior_coefficients(log_snr_t: Tensor, log_snr_s: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) with E[x_s | x_t, x_0] = a x_t + b x_0: a = α_{t|s} σ_s²/σ_t², b = α_s σ²_{t|s}/σ_t² (VDM, eq. 7).

    With r = σ²_{t|s}/σ_t² = 1 − SNR_t/SNR_s: b = α_s r and a = (1 − r) α_s/α_t.
    """
    r = -torch.expm1(log_snr_t - log_snr_s)
    alpha_s = alpha(log_snr_s)
    return (1 - r) * alpha_s / alpha(log_snr_t), alpha_s * r


def posterior_log_variance(log_snr_t: Tensor, log_snr_s: Tensor) -> Tensor:
    """log β̃ = log(σ²_{t|s} σ_s²/σ_t²) = log(1 − SNR_t/SNR_s) + log σ_s² (Ho et al. 2020, eq. 7); −∞ at s = 0."""
    return torch.log(-torch.expm1(log_snr_t - log_snr_s)) + log_sigma2(log_snr_s)


def q_posterior(x_t: Tensor, x_0: Tensor, log_snr_t: Tensor, log_snr_s: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_s | x_t, x_0), s < t (Ho et al. 2020, eqs. 6–7)."""
    a, b = posterior_coefficients(log_snr_t, log_snr_s)
    mean = expand(a, x_t) * x_t + expand(b, x_0) * x_0
    return mean, expand(torch.exp(posterior_log_variance(log_snr_t, log_snr_s)), x_t)
