"""Less noise from ε in the discrete chain's Monte-Carlo bound: Latin-hypercube ε within a replicate, and a
per-coordinate control variate fitted on the pilot pass.

Once the steps are importance-sampled, most of what is left of the estimate's variance is the noise of one ε
per drawn term, and it is a near-constant fraction of each term (on digits, at 240 s of L_simple, the ε-spread
is ≈ 0.24 of every step's mean), so no choice of steps removes it. But a term is a sum over coordinates, and at
the small noise where the bound lives each coordinate's part follows its own ε_j: an additive model
Σ_j h_j(ε_j) explains ≈ 98% of the ε-variance of steps 2–10 (≈ 96% at step 30). Two things use that:

- **Latin-hypercube ε** (McKay et al. 1979): the m draws of one replicate take, in every coordinate, one ε_j
  from each of m equal-probability strata of N(0, 1), paired across coordinates by independent random
  permutations. Each draw is still exactly N(0, I) (so each term stays unbiased), the replicates stay
  independent (so their spread is still an honest standard error), and an additive part's variance falls
  (for one integrand over m ≥ 2 points, Latin-hypercube sampling is never worse than m/(m − 1) times iid,
  Owen 1997; here the m points of a set feed different steps' terms, so that bound is a guide, not a guarantee).
- **A control variate** Σ_j c_{k(j)} · φ(ε_j) with φ(ε) = (ε, ε₊² − ½, ε₋² − ½), each of mean zero under
  N(0, 1), and k(j) the class of coordinate j of x_0: the lowest level, an interior one, or the highest (x̂_0
  is clipped at both ends, so a background pixel's term is one-sided in ε_j). The slopes c, one set per bin of
  the importance proposal, come from the pilot pass over training images: two draws of ε at one step per image
  and bin, regressed difference on difference (the step's mean cancels), kept only for bins where they lower
  the spread of images they were not fitted on. Subtracting it changes no expectation whatever the slopes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elbolab.likelihoods import level_of

#: coordinate classes: the lowest level, interior levels, the highest level (all interior for continuous data)
CLASSES = 3
#: features per class: ε, ε₊² − ½, ε₋² − ½
FEATURES = 3 * CLASSES
#: ridge on the slopes' normal equations, relative to the mean square of the features
RIDGE = 1e-3


def latin_normal(
    sets: int,
    draws: int,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """ε [sets, draws, *shape] float64: within each set every coordinate takes one value from each of `draws`
    equal-probability strata of N(0, 1), in an order drawn independently per coordinate; every ε[s, k] is
    N(0, I), and the sets are independent."""
    size = (sets, draws, *shape)
    order = torch.rand(size, generator=generator, dtype=torch.float64, device=device).argsort(1)
    u = (order + torch.rand(size, generator=generator, dtype=torch.float64, device=device)) / draws
    return torch.special.ndtri(u.clamp(1e-300, 1 - 2**-53))


def coordinate_classes(x_0: Tensor, levels: int | None) -> Tensor:
    """Class of each coordinate of x_0, [B, D] long: 0 the lowest level, 2 the highest, 1 any other (or all 1
    for continuous data, levels=None)."""
    flat = x_0.flatten(1)
    if levels is None:
        return torch.ones(flat.shape, dtype=torch.long, device=flat.device)
    k = level_of(flat.double(), levels)
    return torch.where(k == 0, 0, torch.where(k == levels - 1, 2, 1))


def control_features(eps: Tensor, classes: Tensor) -> Tensor:
    """φ summed over each class's coordinates, [N, FEATURES]; every feature has mean zero for ε ~ N(0, I)."""
    e = eps.flatten(1).double()
    phi = torch.stack([e, e.clamp(min=0) ** 2 - 0.5, e.clamp(max=0) ** 2 - 0.5], -1)  # [N, D, 3]
    out = torch.zeros(e.shape[0], CLASSES, 3, dtype=torch.float64, device=e.device)
    out.scatter_add_(1, classes[:, :, None].expand(-1, -1, 3), phi)
    return out.flatten(1)


def control_value(eps: Tensor, classes: Tensor, slopes: Tensor) -> Tensor:
    """The control variate of each pair n, Σ_f slopes[n, f] φ_f(ε_n), [N] (mean zero)."""
    return (control_features(eps, classes) * slopes).sum(1)


def _solve(df: Tensor, dy: Tensor) -> Tensor:
    """Ridge least squares per bin: df [bins, n, F], dy [bins, n] → slopes [bins, F]."""
    gram = df.transpose(1, 2) @ df
    scale = df.pow(2).sum(1).mean(1).clamp_min(1e-300)  # [bins]
    eye = torch.eye(df.shape[-1], dtype=df.dtype, device=df.device)
    return torch.linalg.solve(gram + RIDGE * scale[:, None, None] * eye, (df.transpose(1, 2) @ dy[..., None]))[..., 0]


def fit_slopes(terms: Tensor, features: Tensor) -> Tensor:
    """Slopes per bin from pairs of draws at one step: terms [images, bins, 2], features [images, bins, 2, F]
    → [bins, F]. Fitted on the differences of each pair (the step's mean cancels); a bin's slopes are kept only
    where, fitted on either half of the images, they lower the spread of the differences of the other half."""
    dy = (terms[..., 0] - terms[..., 1]).transpose(0, 1)  # [bins, images]
    df = (features[..., 0, :] - features[..., 1, :]).transpose(0, 1)  # [bins, images, F]
    n = dy.shape[1]
    if n < 4:
        return _solve(df, dy)
    halves = (slice(0, n // 2), slice(n // 2, n))
    raw = dy.pow(2).sum(1)
    held_out = torch.zeros_like(raw)
    for fit, test in (halves, halves[::-1]):
        slopes = _solve(df[:, fit], dy[:, fit])
        held_out += (dy[:, test] - (df[:, test] * slopes[:, None]).sum(-1)).pow(2).sum(1)
    return _solve(df, dy) * (held_out < raw)[:, None]
