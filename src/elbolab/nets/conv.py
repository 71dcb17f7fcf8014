"""Convolutional encoder and decoder for 8×8, 28×28 and 32×32 images, grey or colour."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from elbolab.errors import ConfigError


@dataclass(frozen=True)
class ConvPreset:
    """Width of the first stage, per-stage multipliers, residual blocks per stage."""

    channels: int
    mult: tuple[int, ...]
    blocks: int


CONV_PRESETS = {
    "tiny": ConvPreset(16, (1, 2, 2), 1),
    "small": ConvPreset(32, (1, 2, 2), 1),
    "base": ConvPreset(64, (1, 2, 2), 2),
}


def conv_preset(name: str) -> ConvPreset:
    """Look up a size preset by name."""
    if name not in CONV_PRESETS:
        raise ConfigError(f"unknown network size {name!r}; choose one of {', '.join(CONV_PRESETS)}")
    return CONV_PRESETS[name]


def downsamples_for(size: int) -> int:
    """Halvings from image to bottleneck: 8→4, 28→7, 32→8 (one for ≤16 pixels, two above)."""
    if size % 2:
        raise ConfigError(f"image side {size} must be even for the convolutional networks")
    downs = 1 if size <= 16 else 2
    if size % (2**downs):
        raise ConfigError(f"image side {size} is not divisible by {2**downs}")
    return downs


def full_latent_channels(channels: int, size: int) -> int:
    """Channels of a latent at the bottleneck resolution S/2^d with as many values as the image: C·4^d."""
    return channels * 4 ** downsamples_for(size)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """x + conv(SiLU(norm(conv(SiLU(norm(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ConvEncoder(nn.Module):
    """Image [B, C, S, S] → feature map [B, out_channels, S/2^d, S/2^d]."""

    def __init__(self, in_channels: int, size: int, out_channels: int, preset: str = "small") -> None:
        super().__init__()
        p = conv_preset(preset)
        downs = downsamples_for(size)
        widths = [p.channels * m for m in p.mult[: downs + 1]]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for i, width in enumerate(widths):
            layers += [ResBlock(width) for _ in range(p.blocks)]
            if i < downs:
                layers.append(nn.Conv2d(width, widths[i + 1], 3, stride=2, padding=1))
        layers += [_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], out_channels, 1)]
        self.net = nn.Sequential(*layers)
        self.resolution = size // 2**downs

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Feature map [B, in_channels, S/2^d, S/2^d] → per-pixel parameters [B, out_channels, S, S]."""

    def __init__(self, in_channels: int, size: int, out_channels: int, preset: str = "small") -> None:
        super().__init__()
        p = conv_preset(preset)
        downs = downsamples_for(size)
        widths = [p.channels * m for m in p.mult[: downs + 1]][::-1]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for i, width in enumerate(widths):
            layers += [ResBlock(width) for _ in range(p.blocks)]
            if i < downs:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, widths[i + 1], 3, padding=1)]
        layers += [_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.resolution = size // 2**downs

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class ClassMap(nn.Module):
    """A learned map per class, y [B] → [B, *shape], zero at initialisation (so a conditional net starts as its
    unconditional twin): the class embedding a conditional VAE adds to its encoder's and decoder's inputs."""

    def __init__(self, classes: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.embedding = nn.Embedding(classes, math.prod(shape))
        nn.init.zeros_(self.embedding.weight)

    def forward(self, y: Tensor) -> Tensor:
        return self.embedding(y).view(y.shape[0], *self.shape)
