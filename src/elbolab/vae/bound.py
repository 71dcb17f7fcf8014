"""The VAE's bounds as functions of q(z|x) and a log-likelihood callable.

Both work on any model with a diagonal Gaussian posterior and an N(0, I) prior,
so the linear-Gaussian oracle in the tests checks the very code the VAE runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from elbolab.bounds import log_mean_exp, sum_per_example
from elbolab.likelihoods import normal_kl, normal_log_prob

LogLikelihood = Callable[[Tensor], Tensor]  # z [B, ...] -> log p(x|z) [B]


def reparameterize(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = μ + σ ε, ε ~ N(0, I) (Kingma & Welling 2014, eq. 10)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


def kl_per_dim(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z_d|x) ‖ N(0, 1)) for every latent dimension, [B, ...]."""
    return normal_kl(mean, logvar)


def reconstruction_draws(
    mean: Tensor, logvar: Tensor, log_likelihood: LogLikelihood, samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """−log p(x|z_k) for `samples` draws z_k ~ q(z|x), [K, B]: the Monte-Carlo draws of the reconstruction term."""
    return torch.stack([-log_likelihood(reparameterize(mean, logvar, generator)) for _ in range(samples)])


def elbo_terms(
    mean: Tensor,
    logvar: Tensor,
    log_likelihood: LogLikelihood,
    samples: int = 1,
    kl: str = "analytic",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(−E_q[log p(x|z)], KL(q‖p)) per example, the two terms of −ELBO (Kingma & Welling 2014, eq. 7).

    The expectation is a mean over `samples` draws of z. `kl="analytic"` uses the closed
    form; `kl="sampled"` uses log q(z|x) − log p(z) at the same draws (the single-sample
    estimator whose total is exactly log p(x) when q is the true posterior).
    """
    recon, kl_hat = [], []
    for _ in range(samples):
        z = reparameterize(mean, logvar, generator)
        recon.append(-log_likelihood(z))
        if kl == "sampled":
            kl_hat.append(sum_per_example(normal_log_prob(z, mean, logvar) - normal_log_prob(z, 0.0, 0.0)))
    reconstruction = torch.stack(recon).mean(0)
    if kl == "analytic":
        return reconstruction, sum_per_example(kl_per_dim(mean, logvar))
    if kl == "sampled":
        return reconstruction, torch.stack(kl_hat).mean(0)
    raise ValueError(f"kl must be 'analytic' or 'sampled', got {kl!r}")


def iwae_bound(
    mean: Tensor, logvar: Tensor, log_likelihood: LogLikelihood, k: int, generator: torch.Generator | None = None
) -> Tensor:
    """−log (1/k) Σ_i p(x, z_i)/q(z_i|x), z_i ~ q (Burda et al. 2016, eq. 8), per example."""
    log_w = []
    for _ in range(k):
        z = reparameterize(mean, logvar, generator)
        log_prior_over_q = normal_log_prob(z, 0.0, 0.0) - normal_log_prob(z, mean, logvar)
        log_w.append(log_likelihood(z) + sum_per_example(log_prior_over_q))
    return -log_mean_exp(torch.stack(log_w), dim=0)


def kl_weight(beta: float, warmup_steps: int, step: int) -> float:
    """β after linear KL warm-up: β·min(1, step / warmup_steps) (Bowman et al. 2016, §3.1; Sønderby et al. 2016)."""
    return beta * (min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0)


def free_bits_kl(kl_dims: Tensor, free_bits: float) -> Tensor:
    """Per-example KL with each dimension's batch-mean KL held at ≥ λ nats (Kingma et al. 2016, eq. 15).

    Dimensions whose batch-mean KL is below λ contribute the constant λ (no gradient).
    """
    if free_bits <= 0:
        return sum_per_example(kl_dims)
    flat = kl_dims.flatten(1)
    below = flat.mean(0, keepdim=True) < free_bits
    return torch.where(below, torch.full_like(flat, free_bits), flat).sum(1)
