"""Where to evaluate a diffusion bound's integrand over t: uniform, stratified, or importance-sampled.

A `TimeProposal` is a piecewise-constant density q(t) on [0, 1] (uniform bins). For a continuous-time bound
∫₀¹ g(t) dt ≈ mean_k g(t_k)/q(t_k); for a T-step bound Σ_i g_i ≈ mean_k g_{i_k}/p_{i_k}, p_i = ∫ q over step
i's interval ((i−1)/T, i/T]. Draws come from the inverse CDF of u: iid uniform u ("uniform"), or u
stratified over K/R strata in R independent replicates ("stratified", "importance"; Kingma et al. 2021's
low-discrepancy sampler, randomised). Every draw is marginally q, so each estimate is unbiased; the
standard error comes from the spread of the R replicate means (of the K draws when iid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

#: independent stratified replicates per estimate; their spread gives the standard error
REPLICATES = 4
#: share of the uniform density mixed into a fitted proposal, so q > 0 everywhere (unbiasedness)
UNIFORM_MIX = 0.05


@dataclass(frozen=True)
class TimeProposal:
    """q(t) ∝ `weights` on bins of [0, 1] (float64): equal bins, or those between `edges` (bins + 1 times, 0 to 1)."""

    weights: Tensor
    edges: Tensor | None = None

    @staticmethod
    def uniform() -> TimeProposal:
        return TimeProposal(torch.ones(1, dtype=torch.float64))

    @staticmethod
    def fit(second_moment: Tensor, uniform_mix: float = UNIFORM_MIX, edges: Tensor | None = None) -> TimeProposal:
        """q ∝ sqrt(E[g(t)²]) per bin, the variance-minimising density (Owen 2013, §9.1), mixed with uniform."""
        root = second_moment.double().clamp_min(0).sqrt()
        if not torch.isfinite(root).all() or root.sum() <= 0:
            return TimeProposal.uniform()
        widths = TimeProposal(root, edges).widths()
        return TimeProposal((1 - uniform_mix) * root / (root * widths).sum() + uniform_mix, edges)

    @property
    def bins(self) -> int:
        return self.weights.numel()

    def bin_edges(self, device: torch.device | str | None = None) -> Tensor:
        """The bins' edges in t, [bins + 1] float64."""
        if self.edges is None:
            return torch.linspace(0, 1, self.bins + 1, dtype=torch.float64, device=device)
        return self.edges.to(device=device, dtype=torch.float64)

    def widths(self) -> Tensor:
        edges = self.bin_edges(self.weights.device)
        return edges[1:] - edges[:-1]

    def density(self) -> Tensor:
        """q on each bin, integrating to 1."""
        return self.weights / (self.weights * self.widths()).sum()

    def _table(self, device: torch.device | str | None) -> tuple[Tensor, Tensor, Tensor]:
        """(edges, Q at the edges, q per bin) on `device`."""
        q = self.density().to(device)
        edges = self.bin_edges(device)
        return edges, torch.cat([q.new_zeros(1), torch.cumsum(q * (edges[1:] - edges[:-1]), 0)]), q

    def cdf(self, t: Tensor) -> Tensor:
        """Q(t) = ∫₀ᵗ q, piecewise linear."""
        edges, Q, q = self._table(t.device)
        t = t.double().clamp(0, 1)
        j = (torch.searchsorted(edges, t.contiguous(), right=True) - 1).clamp(0, self.bins - 1)
        return Q[j] + (t - edges[j]) * q[j]

    def continuous(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(t, q(t)) with t = Q⁻¹(u)."""
        edges, Q, q = self._table(u.device)
        j = (torch.searchsorted(Q, u.double().contiguous(), right=True) - 1).clamp(0, self.bins - 1)
        t = edges[j] + (u - Q[j]) / q[j]
        return t.clamp(0, 1), q[j]

    def steps(self, T: int, device: torch.device | str | None = None) -> Tensor:
        """p_i = Q(i/T) − Q((i−1)/T), i = 1..T, [T] float64."""
        cdf = self.cdf(torch.arange(T + 1, dtype=torch.float64, device=device) / T)
        return (cdf[1:] - cdf[:-1]).clamp_min(0)

    def discrete(self, u: Tensor, T: int) -> tuple[Tensor, Tensor]:
        """(i ∈ {1..T}, p_i) with i the step whose CDF interval holds u."""
        p = self.steps(T, u.device)
        cdf = torch.cumsum(p, 0)
        i = torch.searchsorted(cdf / cdf[-1], u.double().contiguous(), right=False).clamp(max=T - 1)
        return i + 1, p[i] / cdf[-1]


def step_edges(T: int, bins: int) -> Tensor:
    """Edges in t of min(T, bins) bins of whole steps, log-spaced in the step index: the first steps, where a
    discrete chain's terms are largest and change fastest, each a bin of its own; [bins + 1] float64."""
    if bins >= T:
        return torch.arange(T + 1, dtype=torch.float64) / T
    ends = [0]
    for k in range(1, bins + 1):
        ends.append(max(ends[-1] + 1, min(T - bins + k, math.floor(T ** (k / bins)))))
    return torch.tensor(ends, dtype=torch.float64) / T


def bin_ends(edges: Tensor, T: int) -> Tensor:
    """The whole-step ends of bins of steps (`step_edges`), [bins + 1] long: bin k holds steps ends[k] + 1 ..
    ends[k + 1]."""
    return (edges * T).round().long()


def bin_of_step(edges: Tensor, T: int) -> Tensor:
    """The bin (of `step_edges`) of each step 1..T, [T] long."""
    ends = bin_ends(edges, T)
    return torch.searchsorted(ends, torch.arange(1, T + 1, device=ends.device)) - 1


def replicates_for(samples: int) -> int:
    """R: `REPLICATES` stratified sets when each gets at least two strata, else every draw its own (iid)."""
    return REPLICATES if samples % REPLICATES == 0 and samples >= 2 * REPLICATES else samples


def draw_uniforms(
    batch: int,
    samples: int,
    stratified: bool,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """u [batch, samples] in [0, 1): iid, or R replicates of samples/R strata (replicate r in columns r::R)."""
    u = torch.rand(batch, samples, generator=generator, dtype=torch.float64, device=device)
    if not stratified:
        return u
    R = replicates_for(samples)
    m = samples // R
    stratum = torch.arange(samples, device=u.device) // R  # column c is stratum c // R of replicate c % R
    return (stratum + u) / m


def mean_and_stderr(estimates: Tensor, stratified: bool) -> tuple[Tensor, Tensor]:
    """Per-example mean of [B, K] unbiased draws and its standard error (from the R replicate means)."""
    B, K = estimates.shape
    R = replicates_for(K) if stratified else K
    means = estimates.view(B, K // R, R).mean(1)  # column c belongs to replicate c % R
    return estimates.mean(1), means.std(1) / math.sqrt(R)
