"""diffusers' `UNet2DModel` as an elbolab network net(x_t, t), t ∈ [0, 1].

diffusers (an optional extra) indexes the T-step chain by k = 0 … T−1, where its `alphas_cumprod[k]`
is elbolab's ᾱ at step i = k + 1, time t_i = i/T. `diffusers_timestep` is the one place that converts:
the UNet is always called with k = tT − 1, whether it was loaded from a diffusers folder, trained
here (`model.net=diffusers-unet2d`) or exported for `DDPMPipeline`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from elbolab.errors import ConfigError, ElbolabError
from elbolab.nets.unet import UNetSpec

#: the one-line hint when diffusers is missing
DIFFUSERS_HINT = "diffusers is not installed; install the optional extra: pip install 'elbolab[diffusers]'"


def require_diffusers() -> Any:
    """The diffusers module, or an ElbolabError with the one-line install hint."""
    try:
        import diffusers
    except ImportError:
        raise ElbolabError(DIFFUSERS_HINT) from None
    return diffusers


def diffusers_timestep(t: Tensor, T: int) -> Tensor:
    """diffusers' timestep k = tT − 1 for elbolab's time t (step i = tT is diffusers' index i − 1).

    On the grid t_i = i/T, k is the integer i − 1 (a float32 t is snapped to it); between grid
    points k is fractional, as the sinusoidal embedding allows.
    """
    k = t.double() * T - 1
    nearest = k.round()
    return torch.where((k - nearest).abs() < 1e-3, nearest, k)


def unet2d_layout(spec: UNetSpec, in_channels: int, out_channels: int, size: int) -> dict[str, Any]:
    """UNet2DModel's arguments for elbolab's UNet `spec`: widths, blocks a level, attention where the side is
    ≤ spec.attention_resolution (and in the middle block), heads, GroupNorm groups, dropout."""
    widths = tuple(spec.channels * m for m in spec.channel_mult)
    if size % 2 ** (len(widths) - 1):
        raise ConfigError(
            f"diffusers' UNet2DModel halves the image {len(widths) - 1} times, so its side must be a "
            f"multiple of {2 ** (len(widths) - 1)}; got {size} (change model.unet.channel_mult)"
        )
    sides = [size // 2**level for level in range(len(widths))]
    attend = [side <= spec.attention_resolution for side in sides]
    return {
        "sample_size": size,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "block_out_channels": widths,
        "layers_per_block": spec.num_res_blocks,
        "norm_num_groups": math.gcd(spec.groups, *widths),
        "attention_head_dim": widths[-1] // spec.heads,
        "dropout": spec.dropout,
        "down_block_types": tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attend),
        "up_block_types": tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attend)),
    }


class DiffusersUNet(nn.Module):
    """net(x_t, t) = unet(x_t, k = tT − 1).sample for a `UNet2DModel` of a T-step chain."""

    def __init__(self, unet: nn.Module, T: int) -> None:
        super().__init__()
        self.unet = unet
        self.T = int(T)

    @classmethod
    def like(cls, spec: UNetSpec, in_channels: int, out_channels: int, size: int, T: int) -> DiffusersUNet:
        """A freshly initialised UNet2DModel laid out like elbolab's UNet `spec` (see `unet2d_layout`)."""
        diffusers = require_diffusers()
        return cls(diffusers.UNet2DModel(**unet2d_layout(spec, in_channels, out_channels, size)), T)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        k = diffusers_timestep(t, self.T).to(x_t.dtype)
        return self.unet(x_t, k).sample
