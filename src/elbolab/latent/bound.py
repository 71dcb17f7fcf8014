"""The latent diffusion bound on log p(x): a VAE's ELBO with the N(0, I) prior replaced by a diffusion model.

    −log p(x) ≤ E_q(z|x)[−log p(x|z)] − H[q(z|x)] + E_q(z|x)[−log p_ψ(z)]
    −log p_ψ(z) = −log p_u(z/s) + d log s ≤ L_ψ(z/s) + d log s

(Vahdat et al. 2021, eq. 2; the change of variables z = s·u with d latent dimensions). L_ψ is
the diffusion model's own bound on continuous u. The functions take the pieces as tensors and
callables, so the tests' linear-Gaussian oracle checks the very code the model runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from elbolab.bounds import Bound, sum_per_example
from elbolab.likelihoods import LOG_2PI

LatentPrior = Callable[[Tensor], Bound]  # u [B, ...] -> the diffusion's −ELBO on u, in nats


def negative_entropy(logvar: Tensor) -> Tensor:
    """−H[q(z|x)] = −½ Σ_j (1 + log 2π + log σ_j²) for a diagonal Gaussian q, per example [B]."""
    return -0.5 * sum_per_example(1.0 + LOG_2PI + logvar.double())


def latent_bound(
    z: Tensor,
    logvar: Tensor,
    log_likelihood: Callable[[Tensor], Tensor],
    latent_prior: LatentPrior,
    log_scale: float | Tensor,
    dims: int,
    discrete: bool = True,
) -> Bound:
    """−ELBO at one draw z ~ q(z|x) (module docstring's equation): terms `reconstruction` = −log p(x|z),
    `neg_entropy` = −H[q(z|x)] and `latent_prior` = L_ψ(z/s) + d log s, each [B] nats, over `dims` data dimensions.

    `extras` holds the latent prior's own terms as `latent_prior.<name>` and its Jacobian term
    `latent_prior.log_scale`; `per_step` is the latent chain's, where it has one.
    """
    log_scale = torch.as_tensor(log_scale, dtype=torch.float64, device=z.device)
    u = z / torch.exp(log_scale).to(z.dtype)
    prior = latent_prior(u)
    jacobian = torch.full((z.shape[0],), z[0].numel() * log_scale.item(), dtype=torch.float64, device=z.device)
    extras = {f"latent_prior.{k}": v.double() for k, v in {**prior.terms, **prior.extras}.items()}
    extras["latent_prior.log_scale"] = jacobian
    terms = {
        "reconstruction": -log_likelihood(z).double(),
        "neg_entropy": negative_entropy(logvar),
        "latent_prior": prior.total.double() + jacobian,
    }
    return Bound(terms, dims, prior.per_step, discrete, extras)


def total_std(mean_sum: float, square_sum: float, var_sum: float, count: int) -> float:
    """s = sqrt(Var[μ] + E[σ²]): the standard deviation of z ~ q(z|x) over the data (law of total variance),
    from Σμ, Σμ², Σσ² over `count` latent values."""
    mean = mean_sum / count
    return math.sqrt(max(square_sum / count - mean * mean, 0.0) + var_sum / count)
