"""Sinusoidal embeddings of a scalar per example (a diffusion time), and the MLP that lifts them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """[B] → [B, dim]: (cos t·ω_k, sin t·ω_k), ω_k = max_period^{−k/(dim/2)} (Vaswani et al. 2017, §3.5)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """t ∈ [0, 1] → sinusoidal(scale·t) → Linear → SiLU → Linear (Ho et al. 2020, App. B)."""

    def __init__(self, dim: int, out_dim: int, scale: float = 1000.0) -> None:
        super().__init__()
        self.dim, self.scale = dim, scale
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        emb = sinusoidal_embedding(t * self.scale, self.dim)
        return self.mlp(emb.to(next(self.mlp.parameters()).dtype))
