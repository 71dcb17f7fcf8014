"""Sharpness of images without a feature network: Laplacian variance and high-frequency power share.

Both work on uint8 levels, scaled to [0, 1] and averaged over channels (grey), and are reported
as ratios to the reference (test) set's own value (`resample.sample_figures`): 1.0 means as sharp as real images.
On coarsely quantised images the high-frequency share bottoms out where blur has removed more
detail than rounding to the levels adds back (17-level digits: beyond a blur σ of about 2 pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from elbolab.evaluate.features import check_levels

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
#: images per chunk of the per-image measures: a 28×28 set of 10,000 would hold ~1.4 GB of spectra at once
CHUNK = 1024


def per_image(fn: Callable[..., Tensor], images: Tensor, *args: Any) -> Tensor:
    """fn(images, *args) → [N], computed `CHUNK` images at a time."""
    if len(images) <= CHUNK:
        return fn(images, *args)
    return torch.cat([fn(images[i : i + CHUNK], *args) for i in range(0, len(images), CHUNK)])


def grey(images: Tensor, levels: int) -> Tensor:
    """Level images [N, C, H, W] → float64 grey images [N, H, W] in [0, 1] (channel mean)."""
    check_levels(images, levels)
    return images.double().mean(1) / (levels - 1)


def laplacian_variance(images: Tensor, levels: int) -> Tensor:
    """Per-image variance of the 3×3 Laplacian response over the valid (unpadded) interior, [N]."""
    return per_image(_laplacian_variance, images, levels)


def _laplacian_variance(images: Tensor, levels: int) -> Tensor:
    response = F.conv2d(grey(images, levels)[:, None], LAPLACIAN[None, None])
    return response.flatten(1).var(1, unbiased=False)


def radial_frequency(height: int, width: int) -> Tensor:
    """|f| in cycles per pixel at each 2-D FFT bin, [H, W]; the Nyquist radius is 0.5."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    return torch.sqrt(fy**2 + fx**2)


def mirror(x: Tensor) -> Tensor:
    """Half-sample symmetric extension [N, H, W] → [N, 2H, 2W]: no wrap-around edge, as in the DCT-II."""
    x = torch.cat([x, x.flip(1)], 1)
    return torch.cat([x, x.flip(2)], 2)


def power_spectrum(images: Tensor, levels: int) -> Tensor:
    """|FFT|² of each mean-subtracted, mirror-extended grey image, [N, 2H, 2W], less the rounding-noise floor.

    Mirroring removes the broadband leakage of the periodic edge; the expected power of rounding
    to `levels` levels (Δ²/12 per pixel, white) is subtracted from every bin so quantisation does not
    count as detail. DC is removed, so brightness does not count either.
    """
    x = grey(images, levels)
    x = mirror(x - x.mean((1, 2), keepdim=True))
    floor = x.shape[1] * x.shape[2] / (12.0 * (levels - 1) ** 2)
    power = (torch.fft.fft2(x).abs() ** 2 - floor).clamp_min(0.0)
    power[:, 0, 0] = 0.0
    return power


def high_frequency_share(images: Tensor, levels: int, cutoff: float = 0.5) -> Tensor:
    """Per-image fraction of spectral power at |f| > cutoff × Nyquist, [N]; 0 for a flat image."""
    return per_image(_high_frequency_share, images, levels, cutoff)


def _high_frequency_share(images: Tensor, levels: int, cutoff: float) -> Tensor:
    power = power_spectrum(images, levels)
    high = radial_frequency(*power.shape[1:]) > cutoff * 0.5
    total = power.sum((1, 2))
    return torch.where(total > 0, power[:, high].sum(1) / total.clamp_min(1e-300), torch.zeros_like(total))


def radial_power_spectrum(images: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectrum over images: ring radii (cycles/pixel) and mean power per ring."""
    if len(images) <= CHUNK:
        power = power_spectrum(images, levels).mean(0)
    else:
        power = sum(power_spectrum(images[i : i + CHUNK], levels).sum(0) for i in range(0, len(images), CHUNK))
        power = power / len(images)
    h, w = power.shape
    step = 1.0 / max(h, w)
    ring = torch.round(radial_frequency(h, w) / step).long().flatten()
    counts = torch.bincount(ring).double()
    sums = torch.bincount(ring, weights=power.flatten())
    keep = counts > 0
    return torch.arange(len(counts), dtype=torch.float64)[keep] * step, sums[keep] / counts[keep]
