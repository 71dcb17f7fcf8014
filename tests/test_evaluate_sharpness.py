"""Sharpness: analytic patterns, the identity ratio on real digits, and monotone decay under blur."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from elbolab.data import load_data
from elbolab.evaluate.resample import sample_figures
from elbolab.evaluate.sharpness import high_frequency_share, laplacian_variance, radial_power_spectrum


def checkerboard(size: int = 8) -> torch.Tensor:
    """A 0/1 checkerboard, [1, 1, size, size] levels of a binary image."""
    i = torch.arange(size)
    return ((i[:, None] + i[None, :]) % 2).to(torch.uint8)[None, None]


def cosine(size: int, cycles: int, levels: int = 256) -> torch.Tensor:
    """A horizontal cosine grating with `cycles` periods across the image, as levels [1, 1, size, size]."""
    x = torch.arange(size, dtype=torch.float64)
    row = 0.5 + 0.5 * torch.cos(2 * torch.pi * cycles * x / size)
    return torch.round(row.expand(size, size) * (levels - 1)).to(torch.uint8)[None, None]


def blurred(images: torch.Tensor, sigma: float, levels: int) -> torch.Tensor:
    """Gaussian-blurred level images, rounded back to levels."""
    out = gaussian_filter(images.double().numpy(), sigma=(0, 0, sigma, sigma), mode="nearest")
    return torch.from_numpy(np.clip(np.round(out), 0, levels - 1).astype(np.uint8))


def test_analytic_patterns():
    board = checkerboard()
    assert laplacian_variance(board, 2).item() == pytest.approx(16.0)  # response ±4 everywhere
    assert high_frequency_share(board, 2).item() == pytest.approx(1.0)  # all power at the Nyquist corner
    assert high_frequency_share(cosine(32, 2), 256).item() == pytest.approx(0.0, abs=1e-4)
    assert high_frequency_share(torch.full((1, 1, 8, 8), 3, dtype=torch.uint8), 4).item() == 0.0
    radius, power = radial_power_spectrum(cosine(32, 5), 256)
    assert radius[power.argmax()].item() == pytest.approx(5 / 32)


def test_ratio_is_one_against_itself_and_falls_monotonically_with_blur():
    test = load_data("digits", "test")
    same = sample_figures(test.images, test.images, 17, None, replicates=0)
    assert same.laplacian_ratio.value == 1.0 and same.high_frequency_ratio.value == 1.0 and same.fd is None
    ratios = [sample_figures(blurred(test.images, s, 17), test.images, 17, None, 0) for s in (0.5, 1.0, 2.0)]
    for name in ("laplacian_ratio", "high_frequency_ratio"):
        series = [1.0] + [getattr(r, name).value for r in ratios]
        assert all(a > b for a, b in itertools.pairwise(series)), (name, series)
    assert ratios[-1].laplacian_ratio.value < 0.2


def test_colour_images_are_averaged_to_grey():
    grey = checkerboard()
    colour = grey.expand(-1, 3, -1, -1).contiguous()
    assert laplacian_variance(colour, 2).item() == pytest.approx(laplacian_variance(grey, 2).item())


def test_chunked_measures_equal_the_whole_set_at_once(monkeypatch):
    """A large set is measured in chunks (bounded memory) with the same per-image values and spectrum."""
    import importlib

    sh = importlib.import_module(
        "elbolab.evaluate.sharpness"
    )  # the module (the package exports a function of its name)

    images = load_data("digits", "test").images[:300]
    whole = (laplacian_variance(images, 17), high_frequency_share(images, 17), radial_power_spectrum(images, 17))
    monkeypatch.setattr(sh, "CHUNK", 64)  # 300 images in 5 chunks, the last one short
    calls = []
    real = sh.power_spectrum
    monkeypatch.setattr(sh, "power_spectrum", lambda x, levels: calls.append(len(x)) or real(x, levels))
    chunked = (laplacian_variance(images, 17), high_frequency_share(images, 17), radial_power_spectrum(images, 17))
    assert calls == [64, 64, 64, 64, 44] * 2
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked[1], whole[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked[2][0], whole[2][0])
    torch.testing.assert_close(chunked[2][1], whole[2][1], rtol=1e-12, atol=1e-12)
