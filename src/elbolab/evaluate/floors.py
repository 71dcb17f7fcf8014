"""Reference floors for sample figures: what real held-out images reach, and what known blur looks like.

A Fréchet distance or a sharpness ratio means little alone: beside each model's, `reference_floors`
puts the same figure for real images the reference set does not hold (what a perfect model would
reach at this sample size) and for the test images blurred by a Gaussian of known width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from elbolab.data.base import to_levels, to_model
from elbolab.evaluate.features import FeatureExtractor
from elbolab.evaluate.resample import sample_figures
from elbolab.records import Record, SampleFigures


@dataclass(frozen=True)
class Floors(Record):
    """The sample figures of real held-out images and of blurred test images, each against the reference set."""

    real: SampleFigures
    blurred: SampleFigures
    blur_sigma: float
    n: int
    real_source: str


def gaussian_kernel(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian of standard deviation `sigma` pixels, radius ⌈3σ⌉, float32."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(images: Tensor, levels: int, sigma: float) -> Tensor:
    """Level images [N, C, H, W] blurred by a separable Gaussian (reflected edges), rounded back to levels."""
    x = to_model(images, levels)
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return to_levels(x, levels)


def reference_floors(
    held_out: Tensor,
    test: Tensor,
    reference: Tensor,
    levels: int,
    features: FeatureExtractor | None,
    *,
    blur_sigma: float = 0.5,
    replicates: int = 200,
    seed: int = 0,
    real_source: str = "training images",
) -> Floors:
    """Floors for n = len(held_out) images: held-out real images, and `test` blurred by `blur_sigma` pixels."""
    n = len(held_out)
    blurred = gaussian_blur(test[:n], levels, blur_sigma)
    return Floors(
        real=sample_figures(held_out, reference, levels, features, replicates, seed),
        blurred=sample_figures(blurred, reference, levels, features, replicates, seed),
        blur_sigma=blur_sigma,
        n=n,
        real_source=real_source,
    )
