"""Which training steps i ∈ {1..T} to draw: uniformly, or by importance (Nichol & Dhariwal 2021, §3.3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def draw_steps(n: int, probs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """n steps i ∈ {1..T} with i ~ probs (a [T] vector), and p_i of each draw."""
    i = torch.multinomial(probs.float(), n, replacement=True, generator=generator)
    return i + 1, probs[i]


class LossSecondMomentResampler(nn.Module):
    """p_i ∝ sqrt(E[ℓ_i²]) over the last `history` losses of each step, uniform until every step has them
    (Nichol & Dhariwal 2021, eq. 18), mixed with `uniform_mix` of the uniform distribution.

    The history lives in buffers, so it is saved and restored with the model's state_dict.
    """

    losses: Tensor
    seen: Tensor

    def __init__(self, T: int, history: int = 10, uniform_mix: float = 0.001) -> None:
        super().__init__()
        self.T, self.history, self.uniform_mix = T, history, uniform_mix
        self.register_buffer("losses", torch.zeros(T, history, dtype=torch.float64))
        self.register_buffer("seen", torch.zeros(T, dtype=torch.long))

    def ready(self) -> bool:
        """Whether every step has a full history."""
        return bool((self.seen >= self.history).all())

    def probabilities(self) -> Tensor:
        """[T] float64: p_i ∝ sqrt(mean of the stored ℓ_i²) once ready, else uniform."""
        uniform = torch.full((self.T,), 1.0 / self.T, dtype=torch.float64, device=self.seen.device)
        if not self.ready():
            return uniform
        weights = self.losses.pow(2).mean(1).sqrt()
        if not torch.isfinite(weights).all() or weights.sum() <= 0:
            return uniform
        return (1 - self.uniform_mix) * weights / weights.sum() + self.uniform_mix * uniform

    @torch.no_grad()
    def update(self, i: Tensor, losses: Tensor) -> None:
        """Append the losses ℓ observed at steps i (1-based) to each step's ring buffer."""
        step = (i - 1).to(self.seen.device)
        losses = losses.detach().to(self.losses)
        order = torch.argsort(step, stable=True)
        step, losses = step[order], losses[order]
        counts = torch.bincount(step, minlength=self.T)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(step.numel(), device=step.device) - first[step]
        keep = rank >= counts[step] - self.history  # only the newest `history` of one step in this batch
        step, losses, rank = step[keep], losses[keep], rank[keep]
        self.losses[step, (self.seen[step] + rank) % self.history] = losses
        self.seen += counts
