"""DiffEnc's learned forward mean (Nielsen et al., ICLR 2024): q(z_t|x) = N(α_t x_φ(x, t), σ_t² I).

    x_φ(x, t) = x + σ_t² (y_φ(x, t) − x),   y_φ(x, t) = x + NN_φ(x, t),   so x_φ = x + σ_t² NN_φ(x, t),

with NN_φ's output layer zero at initialisation: x_φ = x exactly there, and the model is VDM's (the paper's
"trainable" encoder takes y_φ = NN_φ, whose start x_φ = α_t² x differs from VDM's). NN_φ is small: two
convolutions over x, their features scaled per channel by a + W f(t) (f Fourier features of t), then a 1×1
convolution without bias. Time enters linearly after the features, so ∂x_φ/∂t is closed form, with no
second pass and no forward-mode autograd:

    ∂x_φ/∂t = (dσ_t²/dt) NN_φ + σ_t² ∂NN_φ/∂t,   dσ_t²/dt = σ_t² α_t² γ′(t),   ∂NN_φ/∂t = out(h ⊙ W f′(t)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from elbolab.diffusion.forward import expand
from elbolab.diffusion.schedule import ContinuousSchedule

#: Fourier frequencies 2πk, k = 1..FREQUENCIES, of the encoder's time features
FREQUENCIES = 4


def time_features(t: Tensor) -> tuple[Tensor, Tensor]:
    """(f(t), f′(t)), f(t) = (sin 2πk t, cos 2πk t)_{k=1..K}, [B, 2K] each."""
    w = 2 * math.pi * torch.arange(1, FREQUENCIES + 1, dtype=t.dtype, device=t.device)
    arg = t[:, None] * w
    return torch.cat([arg.sin(), arg.cos()], 1), torch.cat([w * arg.cos(), -w * arg.sin()], 1)


class MeanEncoder(nn.Module):
    """x ↦ (x_φ(x, t), ∂x_φ/∂t) for images [B, C, H, W] and times t [B] (float64 out, like the bound)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
        )
        self.scale = nn.Linear(2 * FREQUENCIES, width)  # a + W f(t): the features' per-channel scale at t
        self.out = nn.Conv2d(width, channels, 1, bias=False)
        nn.init.zeros_(self.out.weight)  # x_φ = x at initialisation

    def residual(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(NN_φ(x, t), ∂NN_φ/∂t), float64."""
        dtype = self.out.weight.dtype
        h = self.features(x.to(dtype))
        f, df = time_features(t.to(dtype))
        value = self.out(h * self.scale(f)[:, :, None, None])
        slope = self.out(h * (df @ self.scale.weight.T)[:, :, None, None])
        return value.double(), slope.double()

    def forward(self, x: Tensor, t: Tensor, schedule: ContinuousSchedule) -> tuple[Tensor, Tensor]:
        """(x_φ(x, t), ∂x_φ/∂t) = (x + σ_t² NN, σ_t² α_t² γ′ NN + σ_t² ∂NN/∂t) (module docstring)."""
        x = x.double()
        value, slope = self.residual(x, t)
        sigma2 = expand(torch.sigmoid(schedule.gamma(t)), x)
        d_sigma2 = sigma2 * (1 - sigma2) * expand(schedule.gamma_prime(t), x)
        return x + sigma2 * value, d_sigma2 * value + sigma2 * slope

    def learned_parameters(self) -> int:
        """φ's size."""
        return sum(p.numel() for p in self.parameters())
