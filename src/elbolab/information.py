"""Mutual information between an image and its latent, for the empirical data distribution, by Monte Carlo.

With x_0 uniform over N images, I(x_0; y) = log N − E_y[H(p(i | y))], and the posterior over the
images given the latent y is a softmax over their likelihoods q(y | x_i). For diffusion's forward
process q(x_t | x_0) = N(α_t x_0, σ_t² I) this needs no model (the curve along t belongs to the
process itself, `diffusion.information.forward_information`); for a VAE's code, q(z | x_i) is its encoder's
Gaussian. Each draw of (i, y) gives one entropy; the mean over draws estimates the expectation and their
spread its standard error. Models return these curves from their `information_curve` hook, so this module sits
below them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from elbolab.records import Record


@dataclass(frozen=True)
class InformationCurve(Record):
    """I(x; latent) in nats at each point (a forward-process step, or 1 for a one-step code), with the
    Monte-Carlo standard error; at most `max_nats` = log N for N equally likely images."""

    name: str
    steps: tuple[int, ...]
    t: tuple[float, ...]
    nats: tuple[float, ...]
    stderr_nats: tuple[float, ...]
    max_nats: float
    n_images: int
    draws: int


def posterior_entropy(log_weights: Tensor) -> Tensor:
    """H(softmax(log_weights)) along the last axis, in nats."""
    log_p = torch.log_softmax(log_weights, -1)
    return -(log_p.exp() * log_p).sum(-1)


def information_estimate(log_weights: Tensor) -> tuple[float, float]:
    """(log N − mean H, standard error) from [M, N] log-likelihoods of M draws under each of N images."""
    h = posterior_entropy(log_weights.double())
    se = h.std(unbiased=True).item() / math.sqrt(len(h)) if len(h) > 1 else math.nan
    return math.log(log_weights.shape[-1]) - h.mean().item(), se


def code_information(
    mean: Tensor, logvar: Tensor, draws: int = 256, seed: int = 0, name: str = "VAE code q(z|x)"
) -> InformationCurve:
    """I(x; z) for x uniform over N images with Gaussian codes q(z|x_i) = N(mean_i, exp(logvar_i)), [N, d]."""
    mean, var = mean.flatten(1).double(), logvar.flatten(1).double().exp()
    generator = torch.Generator().manual_seed(seed)
    i = torch.randint(0, len(mean), (draws,), generator=generator)
    z = mean[i] + var[i].sqrt() * torch.randn((draws, mean.shape[1]), generator=generator, dtype=mean.dtype)
    log_q = -0.5 * (((z[:, None] - mean[None]) ** 2 / var[None]) + var[None].log()).sum(-1)
    value, se = information_estimate(log_q)
    return InformationCurve(name, (1,), (float("nan"),), (value,), (se,), math.log(len(mean)), len(mean), draws)
