"""The hierarchical bound as functions of one top-down pass over L stochastic levels.

    −ELBO = E_q[−log p(x | z_1:L)] + Σ_l E_q(z_>l|x)[KL(q(z_l | z_>l, x) ‖ p(z_l | z_>l))]

(Sønderby et al. 2016, eq. 12; Child 2021, eq. 2): each level's KL is the closed form between two diagonal
Gaussians, given the levels above drawn from q. The pass runs over anything with a level's three maps, so the
linear-Gaussian oracle in the tests checks the very code the model runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from elbolab.bounds import sum_per_example
from elbolab.likelihoods import normal_kl, normal_log_prob
from elbolab.vae.bound import reparameterize

Gaussian = tuple[Tensor, Tensor]  # mean and log-variance of a diagonal Gaussian


class Level(Protocol):
    """One stochastic level of a top-down path: its prior, its posterior and the state update."""

    def prior(self, h: Tensor) -> tuple[Gaussian, Tensor]:
        """p(z_l | z_>l) from the top-down state h, and the state's own share of the update."""
        ...

    def posterior(self, h: Tensor, features: Tensor, prior: Gaussian) -> Gaussian:
        """q(z_l | z_>l, x) from the state h and the bottom-up features of x."""
        ...

    def update(self, h: Tensor, feature: Tensor, z: Tensor) -> Tensor:
        """The state passed to the level below, given z_l."""
        ...


@dataclass(frozen=True)
class LevelDraw:
    """One level of a top-down pass: the z_l it took, its prior and (given x) its posterior."""

    z: Tensor
    prior: Gaussian
    posterior: Gaussian | None


#: how a pass picks z_l: (level index from the top, q or None, p) → z_l
Pick = Callable[[int, Gaussian | None, Gaussian], Tensor]


def top_down(levels: Sequence[Level], h: Tensor, features: Tensor | None, pick: Pick) -> tuple[Tensor, list[LevelDraw]]:
    """The path h → z_L → … → z_1, each z_l picked from q(z_l | z_>l, x) or p(z_l | z_>l) (Child 2021, Fig. 3);
    the final state and each level's draw, top first. Without `features` (no x) only priors are formed."""
    draws = []
    for i, level in enumerate(levels):
        prior, feature = level.prior(h)
        posterior = None if features is None else level.posterior(h, features, prior)
        z = pick(i, posterior, prior)
        draws.append(LevelDraw(z, prior, posterior))
        h = level.update(h, feature, z)
    return h, draws


def posterior_draw(generator: torch.Generator | None = None) -> Pick:
    """z_l ~ q(z_l | z_>l, x) at every level, reparameterised (the bound's and the loss's pass)."""
    return lambda i, q, p: reparameterize(*_given(q), generator)


def posterior_mean(i: int, q: Gaussian | None, p: Gaussian) -> Tensor:
    """z_l = E_q[z_l | z_>l, x] at every level (a deterministic pass over x)."""
    return _given(q)[0]


def prior_draw(generator: torch.Generator | None = None) -> Pick:
    """z_l ~ p(z_l | z_>l) at every level: ancestral sampling."""
    return lambda i, q, p: reparameterize(*p, generator)


def top_given(z_top: Tensor) -> Pick:
    """z_L given, every lower level at its prior mean (decoding a top-level code)."""
    return lambda i, q, p: z_top if i == 0 else p[0]


def _given(q: Gaussian | None) -> Gaussian:
    if q is None:
        raise ValueError("a posterior pick needs the bottom-up features of x")
    return q


def level_kl(draw: LevelDraw) -> Tensor:
    """KL(q(z_l | z_>l, x) ‖ p(z_l | z_>l)) per latent dimension, [B, ...]."""
    (mq, lq), (mp, lp) = _given(draw.posterior), draw.prior
    return normal_kl(mq, lq, mp, lp)


def log_prior_over_posterior(draws: Sequence[LevelDraw]) -> Tensor:
    """Σ_l log p(z_l | z_>l) − log q(z_l | z_>l, x) at the drawn z, [B]: with log p(x|z), the log-weight of an
    importance-weighted bound (Burda et al. 2016, eq. 8)."""
    terms = [
        sum_per_example(normal_log_prob(d.z, *d.prior) - normal_log_prob(d.z, *_given(d.posterior))) for d in draws
    ]
    return torch.stack(terms).sum(0)
