"""The UNet denoiser (Ho et al. 2020, App. B; after PixelCNN++'s backbone): residual blocks with
GroupNorm and a time embedding, self-attention at low resolution, skip connections.

Any image size works: downsampling is a stride-2 convolution (28 → 14 → 7 → 4) and each
upsampling returns exactly to the size of the skip it meets (4 → 7 → 14 → 28).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elbolab.errors import ConfigError
from elbolab.nets.embeddings import TimeEmbedding


@dataclass(frozen=True)
class UNetSpec:
    """A concrete UNet architecture."""

    channels: int  # width at full resolution
    channel_mult: tuple[int, ...]  # width multiplier per resolution level
    num_res_blocks: int  # residual blocks per level (down path)
    attention_resolution: int  # self-attention where the feature map's side is ≤ this
    heads: int = 1
    groups: int = 32  # GroupNorm groups (fewer where the width is not divisible)
    dropout: float = 0.0
    level_blocks: tuple[int, ...] = ()  # residual blocks per level (down path), overriding num_res_blocks; () = uniform

    def blocks(self, level: int) -> int:
        """Residual blocks of the down path at `level` (the up path has one more)."""
        return self.level_blocks[level] if self.level_blocks else self.num_res_blocks


UNET_PRESETS: dict[str, UNetSpec] = {
    # fast on a CPU for 8×8 images (the tests)
    "tiny": UNetSpec(channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolution=4, groups=8),
    # 28×28 on a CPU: tiny's widths with a third level (28, 14 and 7 px; 32×32: 32, 16, 8), self-attention there
    # and in the middle block: on Fashion-MNIST at 7.5e12 counted FLOPs it learned better samples than tiny
    # (FD 45.3 against 50.8) at 2% fewer FLOPs a step (benchmarks/results/quality_budget-fashion-mnist.json)
    "compact": UNetSpec(channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolution=8, groups=8),
    # 8×8 digits and 28×28 MNIST-like data
    "small": UNetSpec(
        channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolution=7, heads=2, groups=16
    ),
    # 28×28 at small's parameter count (1.65M vs 1.62M) with half its FLOPs per image: 16 channels at full
    # resolution and one block per level there, the width and depth at 7×7 and 4×4 where a pass is cheap
    "lean": UNetSpec(
        channels=16,
        channel_mult=(1, 4, 4, 4),
        num_res_blocks=1,
        attention_resolution=7,
        heads=2,
        groups=16,
        level_blocks=(1, 1, 1, 2),
    ),
    # 32×32 (Ho et al. 2020's CIFAR-10 model)
    "base": UNetSpec(
        channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attention_resolution=16, heads=4, dropout=0.1
    ),
}


#: the names of `UNET_PRESETS`
UNetPreset = Literal["tiny", "compact", "small", "lean", "base"]


@dataclass(frozen=True)
class UNetConfig:
    """A preset and field-by-field overrides of it (None keeps the preset's value)."""

    preset: UNetPreset = "small"
    channels: int | None = None
    channel_mult: tuple[int, ...] | None = None
    num_res_blocks: int | None = None
    attention_resolution: int | None = None
    heads: int | None = None
    groups: int | None = None
    dropout: float | None = None
    level_blocks: tuple[int, ...] | None = None

    def spec(self) -> UNetSpec:
        """The preset with the overrides applied, checked."""
        if self.preset not in UNET_PRESETS:
            raise ConfigError(f"unknown UNet preset {self.preset!r}; choose one of {', '.join(UNET_PRESETS)}")
        changes = {f.name: getattr(self, f.name) for f in fields(UNetSpec) if getattr(self, f.name) is not None}
        spec = replace(UNET_PRESETS[self.preset], **changes)
        if spec.channels < 1 or not spec.channel_mult or min(spec.channel_mult) < 1 or spec.num_res_blocks < 1:
            raise ConfigError(f"the UNet needs positive channels, channel_mult and num_res_blocks, got {spec}")
        if spec.level_blocks and (len(spec.level_blocks) != len(spec.channel_mult) or min(spec.level_blocks) < 1):
            raise ConfigError(
                f"level_blocks needs one positive count per level of channel_mult, got {spec.level_blocks}"
            )
        if any((spec.channels * m) % spec.heads for m in spec.channel_mult):
            raise ConfigError(f"the UNet's widths must be divisible by heads = {spec.heads}")
        if not 0.0 <= spec.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {spec.dropout}")
        return spec


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def _zero(module: nn.Module) -> nn.Module:
    """Initialise a layer's weights and bias to zero, so the block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, + time embedding, GroupNorm → SiLU → dropout → conv, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions, residual (Vaswani et al. 2017)."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C/heads]
        return x + self.proj(out.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    """Stride-2 3×3 convolution: side n → ceil(n/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to the skip's size, then a 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class Level(nn.Module):
    """Residual blocks, each followed by self-attention where the level asks for it."""

    def __init__(self, widths: list[tuple[int, int]], emb_dim: int, spec: UNetSpec, attend: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(a, b, emb_dim, spec.groups, spec.dropout) for a, b in widths)
        self.attn = nn.ModuleList(
            SelfAttention(b, spec.heads, spec.groups) if attend else nn.Identity() for _, b in widths
        )


class UNet(nn.Module):
    """ε/x_0/v-predicting UNet: net(x_t [B, C, H, W], t [B] in [0, 1]) → [B, out_channels, H, W].

    `image_size` (the larger side) decides where attention goes. Pass out_channels = 2C to
    also predict the learned variance's interpolation (Nichol & Dhariwal 2021). With `classes` = K it is
    conditional, net(x_t, t, y): a learned embedding of y ∈ 0..K (K the null class, also y = None) added to the
    time embedding (Ho & Salimans 2022; Dhariwal & Nichol 2021, App. A), zero at initialisation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: UNetConfig | None = None,
        image_size: int = 32,
        classes: int | None = None,
    ) -> None:
        super().__init__()
        spec = (config or UNetConfig()).spec()
        self.spec = spec
        ch = spec.channels
        emb_dim = 4 * ch
        self.time_embed = TimeEmbedding(ch, emb_dim)
        self.classes = classes
        if classes is not None:
            self.class_embed = nn.Embedding(classes + 1, emb_dim)
            nn.init.zeros_(self.class_embed.weight)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        sizes = [image_size]
        for _ in spec.channel_mult[1:]:
            sizes.append((sizes[-1] + 1) // 2)
        # down path: remember the width of every skip
        skips, self.down, self.downsample = [ch], nn.ModuleList(), nn.ModuleList()
        for level, mult in enumerate(spec.channel_mult):
            widths = []
            for _ in range(spec.blocks(level)):
                widths.append((ch, spec.channels * mult))
                ch = spec.channels * mult
                skips.append(ch)
            self.down.append(Level(widths, emb_dim, spec, sizes[level] <= spec.attention_resolution))
            if level < len(spec.channel_mult) - 1:
                self.downsample.append(Downsample(ch))
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb_dim, spec.groups, spec.dropout)
        self.mid_attn = SelfAttention(ch, spec.heads, spec.groups)
        self.mid2 = ResBlock(ch, ch, emb_dim, spec.groups, spec.dropout)
        # up path: one more block per level, each eating one skip
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, mult in reversed(list(enumerate(spec.channel_mult))):
            widths = []
            for _ in range(spec.blocks(level) + 1):
                widths.append((ch + skips.pop(), spec.channels * mult))
                ch = spec.channels * mult
            self.up.append(Level(widths, emb_dim, spec, sizes[level] <= spec.attention_resolution))
            if level > 0:
                self.upsample.append(Upsample(ch))
        self.out = nn.Sequential(_norm(ch, spec.groups), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1)))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.time_embed(t.to(x.dtype))
        if self.classes is not None:
            y = torch.full((x.shape[0],), self.classes, device=x.device) if y is None else y
            emb = emb + self.class_embed(y).to(emb.dtype)
        h = self.conv_in(x)
        hs = [h]
        for level, stage in enumerate(cast("list[Level]", list(self.down))):
            for block, attn in zip(stage.blocks, stage.attn):
                h = attn(block(h, emb))
                hs.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, stage in enumerate(cast("list[Level]", list(self.up))):
            for block, attn in zip(stage.blocks, stage.attn):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if level < len(self.upsample):
                h = self.upsample[level](h, hs[-1].shape[-2:])
        return self.out(h)
