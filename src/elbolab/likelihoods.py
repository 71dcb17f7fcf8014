"""Gaussian KL and per-pixel likelihoods over a data set's discrete levels.

Every function here is elementwise: it returns a tensor shaped like its input and
leaves the reduction to the caller. Data live in the model's range [-1, 1], where
level k of K sits at x_k = 2k/(K-1) - 1 and owns the bin [x_k - h, x_k + h],
h = 1/(K-1); the first and last bins extend to -inf and +inf.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
# Below this standardised bin width the midpoint rule is exact to ~1e-12 and the
# CDF difference would lose all its digits.
_NARROW_BIN = 1e-5


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor | float = 0.0, logvar2: Tensor | float = 0.0) -> Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)), elementwise, in nats."""
    mean2 = torch.as_tensor(mean2, dtype=mean1.dtype, device=mean1.device)
    logvar2 = torch.as_tensor(logvar2, dtype=mean1.dtype, device=mean1.device)
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def normal_log_prob(x: Tensor, mean: Tensor | float, logvar: Tensor | float) -> Tensor:
    """log N(x; mean, e^logvar), a density, elementwise."""
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def level_of(x: Tensor, levels: int) -> Tensor:
    """The integer level k ∈ {0..K-1} nearest to x in [-1, 1]."""
    return torch.round((x.clamp(-1, 1) + 1) * (levels - 1) / 2).long()


def quantize(x: Tensor, levels: int) -> Tensor:
    """Snap x to the nearest of the K level values in [-1, 1]."""
    return level_of(x, levels).to(x.dtype) * (2.0 / (levels - 1)) - 1.0


def _log1mexp(a: Tensor) -> Tensor:
    """log(1 - e^a) for a < 0 (Mächler 2012: expm1 near 0, log1p far from it)."""
    a = a.clamp(max=-1e-300)
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def _log_bin_mass(
    lo: Tensor, hi: Tensor, log_cdf: Callable[[Tensor], Tensor], log_pdf: Callable[[Tensor], Tensor]
) -> Tensor:
    """log(F(hi) - F(lo)) for a distribution symmetric about 0, stable in both tails.

    Bins right of the centre are mirrored, so both ends sit in the left tail where
    log F is accurate; very narrow bins use the midpoint rule.
    """
    flip = (lo + hi) > 0
    lo, hi = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    log_hi = log_cdf(hi)
    exact = log_hi + _log1mexp(log_cdf(lo) - log_hi)
    width = hi - lo
    narrow = torch.isfinite(width) & (width < _NARROW_BIN)
    mid = torch.where(narrow, (lo + hi) / 2, torch.zeros_like(lo))
    safe_width = torch.where(narrow, width, torch.ones_like(width))
    midpoint = log_pdf(mid) + torch.log(safe_width)
    return torch.where(narrow, midpoint, exact)


def _standardised_bin(x: Tensor, mean: Tensor, log_scale: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """The bin of x's level in standardised units, with open edge bins."""
    broadcast = torch.broadcast_tensors(x, mean, log_scale)  # type: ignore[no-untyped-call]  # untyped in torch
    x, mean, log_scale = (t.double() for t in broadcast)
    h = 1.0 / (levels - 1)
    inv_scale = torch.exp(-log_scale)
    k = level_of(x, levels)
    lo = torch.where(k == 0, torch.full_like(x, -math.inf), (x - h - mean) * inv_scale)
    hi = torch.where(k == levels - 1, torch.full_like(x, math.inf), (x + h - mean) * inv_scale)
    return lo, hi


def _std_normal_log_pdf(z: Tensor) -> Tensor:
    return -0.5 * (z * z + LOG_2PI)


def _std_logistic_log_cdf(z: Tensor) -> Tensor:
    return -F.softplus(-z)


def _std_logistic_log_pdf(z: Tensor) -> Tensor:
    return -z - 2.0 * F.softplus(-z)


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, levels: int) -> Tensor:
    """log P(level of x) under N(mean, e^{2 log_scale}) binned over K levels (Ho et al. 2020, eq. 13)."""
    lo, hi = _standardised_bin(x, mean, log_scale, levels)
    out = _log_bin_mass(lo, hi, torch.special.log_ndtr, _std_normal_log_pdf)
    return out.to(torch.promote_types(x.dtype, mean.dtype))


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, levels: int) -> Tensor:
    """log P(level of x) under Logistic(mean, e^log_scale) binned over K levels (Salimans et al. 2017)."""
    lo, hi = _standardised_bin(x, mean, log_scale, levels)
    out = _log_bin_mass(lo, hi, _std_logistic_log_cdf, _std_logistic_log_pdf)
    return out.to(torch.promote_types(x.dtype, mean.dtype))


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """log Bernoulli(x; sigmoid(logits)) for binary x given as -1/1 (or 0/1 mapped from [-1, 1])."""
    target = (x > 0).to(logits.dtype)
    return -F.binary_cross_entropy_with_logits(logits, target, reduction="none")


# ---------------------------------------------------------------- pixel decoders


@dataclass(frozen=True)
class PixelLikelihood:
    """A per-pixel observation model p(x | params) over a data set's K levels.

    `params` is a tensor [B, P*C, H, W] split into P chunks along channels; P is
    `params_per_channel`. Subclasses implement `log_prob`, `mean` and `sample`.
    """

    levels: int
    params_per_channel: int = 2

    def split(self, params: Tensor) -> tuple[Tensor, ...]:
        """`params` [B, P·C, H, W] → its P chunks along channels, each [B, C, H, W]."""
        return params.chunk(self.params_per_channel, dim=1)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:  # pragma: no cover - abstract
        """log p(x | params) per pixel value, [B, C, H, W], x on the levels in [−1, 1]."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """The location of each pixel's distribution, snapped to the levels."""
        return quantize(self.split(params)[0].clamp(-1, 1), self.levels)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        """A draw x ~ p(x | params), snapped to the levels in [−1, 1]."""
        raise NotImplementedError


@dataclass(frozen=True)
class DiscretizedLogistic(PixelLikelihood):
    """Binned logistic per pixel; params = (mean, log_scale)."""

    min_log_scale: float = -7.0

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log P(level of x) of the binned logistic (Salimans et al. 2017), per pixel value."""
        mean, log_scale = self.split(params)
        return discretized_logistic_log_prob(x, mean, log_scale.clamp(min=self.min_log_scale), self.levels)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """mean + s·log(u / (1 − u)), u ~ U(0, 1) (the logistic's inverse CDF), snapped to the levels."""
        mean, log_scale = self.split(params)
        u = torch.rand(mean.shape, generator=generator, device=mean.device).clamp(1e-6, 1 - 1e-6)
        z = mean + torch.exp(log_scale.clamp(min=self.min_log_scale)) * (torch.log(u) - torch.log1p(-u))
        return quantize(z, self.levels)


@dataclass(frozen=True)
class DiscretizedGaussian(PixelLikelihood):
    """Binned Gaussian per pixel; params = (mean, log_scale)."""

    min_log_scale: float = -7.0

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log P(level of x) of the binned Gaussian, per pixel value."""
        mean, log_scale = self.split(params)
        return discretized_gaussian_log_prob(x, mean, log_scale.clamp(min=self.min_log_scale), self.levels)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """mean + σ·ε, ε ~ N(0, 1), snapped to the levels."""
        mean, log_scale = self.split(params)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        return quantize(mean + torch.exp(log_scale.clamp(min=self.min_log_scale)) * noise, self.levels)


@dataclass(frozen=True)
class Bernoulli(PixelLikelihood):
    """Binary pixels (K = 2); params = logits."""

    params_per_channel: int = 1

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log Bernoulli(x; sigmoid(logits)) per pixel, x given as −1/1."""
        return bernoulli_log_prob(x, params)

    def mean(self, params: Tensor) -> Tensor:
        """E[x] in [−1, 1]: 2·sigmoid(logits) − 1."""
        return torch.sigmoid(params) * 2 - 1

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x = 1 with probability sigmoid(logits), else −1."""
        u = torch.rand(params.shape, generator=generator, device=params.device)
        return (u < torch.sigmoid(params)).to(params.dtype) * 2 - 1


PIXEL_LIKELIHOODS = {"logistic": DiscretizedLogistic, "gaussian": DiscretizedGaussian, "bernoulli": Bernoulli}


def pixel_likelihood(name: str, levels: int) -> PixelLikelihood:
    """Build a pixel decoder likelihood by name for data with `levels` levels."""
    if name not in PIXEL_LIKELIHOODS:
        from elbolab.errors import ConfigError

        raise ConfigError(f"unknown likelihood {name!r}; choose one of {sorted(PIXEL_LIKELIHOODS)}")
    if name == "bernoulli" and levels != 2:
        from elbolab.errors import ConfigError

        raise ConfigError(f"the Bernoulli likelihood needs binary data (2 levels), this data has {levels}")
    return PIXEL_LIKELIHOODS[name](levels=levels)
