"""Class conditioning of a diffusion network: the null class, label dropout, classifier-free guidance, and the
bound taken class by class.

A conditional network net(x_t, t, y) takes labels 0..K−1 and the null class K (no label), to which training
drops each label with probability `label_dropout`, so that one network is both p_θ(x | y) and p_θ(x)
(Ho & Salimans 2022, §3.2). Guidance combines the two predictions of one network into one denoiser, which every
sampler takes as it takes any other (`reverse.Denoiser` around it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from elbolab.bounds import Bound
from elbolab.diffusion.reverse import NetFn


def labels_at(y: Tensor | None, batch: int, null: int, device: torch.device) -> Tensor:
    """The labels of a network call on `batch` examples: the null class K for None, one label repeated, or y [B]."""
    if y is None:
        return torch.full((batch,), null, dtype=torch.long, device=device)
    y = y.to(device=device, dtype=torch.long)
    if y.numel() == 1:
        return y.reshape(1).expand(batch)
    if y.shape != (batch,):
        raise ValueError(f"{y.shape[0]} labels for a network call on {batch} examples")
    return y


def drop_labels(
    y: Tensor | None, batch: int, p: float, null: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Each label replaced by the null class K with probability p (Ho & Salimans 2022, Alg. 1); no draw is taken
    for p = 0 or p = 1, so that label dropout 1.0 trains the unconditional chain on its own random stream."""
    y = labels_at(y, batch, null, device)
    if p <= 0:
        return y
    if p >= 1:
        return torch.full_like(y, null)
    draw_on = generator.device if generator is not None else device
    dropped = torch.rand(batch, generator=generator, device=draw_on).to(device) < p
    return torch.where(dropped, torch.full_like(y, null), y)


def guide(conditional: NetFn, unconditional: NetFn, w: float) -> NetFn:
    """Classifier-free guidance, ε̂ = ε̂(x_t, ∅) + w (ε̂(x_t, y) − ε̂(x_t, ∅)) (Ho & Salimans 2022, eq. 6).

    Combined on the network's own output: ε̂, x̂_0 and v̂ are affine in one another with coefficients of (x_t, t)
    alone, so an affine combination of outputs is the same combination of ε̂. w = 1 is the conditional denoiser
    itself and w = 0 the unconditional one (one network pass, nothing combined). A learned variance keeps the
    conditional prediction's interpolation."""
    if w == 1:
        return conditional
    if w == 0:
        return unconditional

    def guided(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        c, u = conditional(x_t, t), unconditional(x_t, t)
        if isinstance(c, tuple) and isinstance(u, tuple):
            return u[0] + w * (c[0] - u[0]), c[1]
        assert isinstance(c, Tensor) and isinstance(u, Tensor)
        return u + w * (c - u)

    return guided


def by_class(bound_of: Callable[[Tensor, Tensor], Bound], x_0: Tensor, y: Tensor) -> Bound:
    """The bound of each example under its own label, one call per class present (`bound_of(x, k)` with k a
    one-element label tensor), back in the examples' order: the bound's internals repeat and chunk examples
    freely, so each call holds a single label."""
    if bool((y == y[0]).all()):
        return bound_of(x_0, y[:1])
    groups = [torch.nonzero(y == k).squeeze(1) for k in torch.unique(y)]
    parts = [bound_of(x_0[index], y[index[:1]]) for index in groups]
    inverse = torch.empty_like(y)
    inverse[torch.cat(groups)] = torch.arange(y.numel(), device=y.device)
    joined = Bound.cat(parts)
    return Bound(
        {k: v[inverse] for k, v in joined.terms.items()},
        joined.dims,
        None if joined.per_step is None else joined.per_step[inverse],
        joined.discrete,
        {k: v[inverse] for k, v in joined.extras.items()},
    )
