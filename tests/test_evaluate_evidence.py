"""The measurements behind the verdicts: information of the forward process and of a code, floors, bootstrap."""

import math

import numpy as np
import pytest
import torch

from elbolab.diffusion.schedule import Schedule
from elbolab.evaluate.floors import gaussian_blur
from elbolab.evaluate.information import code_information, forward_information, information_estimate
from elbolab.evaluate.quality import frechet_distance, mmd2_unbiased, precision_recall
from elbolab.evaluate.resample import (
    bootstrap_indices,
    resample_counts,
    resampled_precision_recall,
    resampled_quality,
    resampled_sharpness,
)
from elbolab.evaluate.sharpness import laplacian_variance
from elbolab.evaluate.speed import paired_timing


def test_information_of_a_known_posterior():
    # N = 4 images; a latent that names its image exactly carries log 4, one that says nothing carries 0
    exact = torch.full((3, 4), -1e9)
    exact[:, 0] = 0.0
    assert information_estimate(exact)[0] == pytest.approx(math.log(4))
    assert information_estimate(torch.zeros(3, 4))[0] == pytest.approx(0.0, abs=1e-12)


def test_forward_information_falls_from_log_n_to_zero():
    x = torch.rand(50, 1, 4, 4) * 2 - 1
    c = forward_information(x, Schedule("cosine", 100), points=20, draws=64, seed=0)
    assert c.nats[0] == pytest.approx(math.log(50), abs=1e-3) and c.max_nats == math.log(50)
    assert c.nats[-1] < 0.05 and all(se >= 0 for se in c.stderr_nats)
    smoothed = np.convolve(c.nats, np.ones(3) / 3, "valid")
    assert (np.diff(smoothed) < 0.2).all()  # it falls, up to Monte-Carlo noise


def test_code_information_between_zero_and_log_n():
    mean = torch.randn(40, 8) * 3
    sharp = code_information(mean, torch.full((40, 8), -10.0), draws=64)
    vague = code_information(mean, torch.full((40, 8), 8.0), draws=64)
    assert sharp.nats[0] == pytest.approx(math.log(40), abs=1e-3)
    assert vague.nats[0] < 0.05


def test_blur_lowers_sharpness_by_more_for_more_blur():
    images = torch.randint(0, 17, (32, 1, 8, 8), dtype=torch.uint8)
    lap = [laplacian_variance(gaussian_blur(images, 17, s), 17).mean().item() for s in (0.5, 1.0, 2.0)]
    assert laplacian_variance(images, 17).mean().item() > lap[0] > lap[1] > lap[2]
    assert gaussian_blur(images, 17, 1.0).dtype == torch.uint8


def test_bootstrap_of_a_figure_brackets_it_and_pairs_by_seed():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((300, 4)), rng.standard_normal((200, 4)) + 0.5
    fd = resampled_quality(fake, real, replicates=100, seed=3)["fd"]
    low, high = fd.interval()
    assert low < fd.value < high and fd.value == pytest.approx(4 * 0.25, rel=0.5)
    again = resampled_quality(fake, real, replicates=100, seed=3)["fd"]
    assert again.replicates == fd.replicates
    images = torch.randint(0, 17, (64, 1, 8, 8), dtype=torch.uint8)
    same = resampled_sharpness(images, images, 17, replicates=50)["laplacian_ratio"]
    assert same.value == pytest.approx(1.0) and min(same.replicates) < 1 < max(same.replicates)


def test_bootstrap_shortcuts_give_the_figures_of_each_resample():
    # reference statistics remembered across calls and KID gathered from full kernel matrices: the same replicates
    # as computing FD and MMD² on each resample afresh
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((60, 5)), rng.standard_normal((40, 5)) + 0.3
    for replicates in (20, 10):  # the second call reads the first one's reference statistics
        found = resampled_quality(fake, real, replicates=replicates, seed=7)
        ref_idx, fake_idx = bootstrap_indices(60, replicates, 7), bootstrap_indices(40, replicates, 8)
        fd = [frechet_distance(fake[i], real[j]) for i, j in zip(fake_idx, ref_idx)]
        kid = [mmd2_unbiased(fake[i], real[j[:40]]) for i, j in zip(fake_idx, ref_idx)]
        assert np.allclose(found["fd"].replicates, fd, rtol=1e-9, atol=1e-12)
        assert np.allclose(found["kid"].replicates, kid, rtol=1e-9, atol=1e-12)
    assert resampled_quality(fake, real[::-1], replicates=5, seed=7)["fd"].replicates != found["fd"].replicates[:5]


def test_resample_counts_count_every_draw():
    idx = np.array([[0, 0, 2], [1, 2, 2]])
    assert resample_counts(idx, 4).tolist() == [[2, 0, 1, 0], [0, 1, 2, 0]]


def _precision_recall_draw(rng, n_fake, n_real=300):
    """Fakes off the data by 0.7 in each of 4 dimensions: precision and recall both well inside (0, 1)."""
    return rng.standard_normal((n_fake, 4)) + 0.7, rng.standard_normal((n_real, 4))


def _resampled_pr(fake, real, seed, replicates=100):
    """Precision and recall bootstrapped with the indices `resampled_quality` draws from `seed`."""
    return resampled_precision_recall(
        fake, real, bootstrap_indices(len(fake), replicates, seed + 1), bootstrap_indices(len(real), replicates, seed)
    )


def test_precision_recall_bootstrap_is_the_figure_and_covers_its_expectation():
    rng = np.random.default_rng(1)
    fake, real = _precision_recall_draw(rng, 200)
    found = resampled_quality(fake, real, replicates=100, seed=2)
    assert (found["precision"].value, found["recall"].value) == precision_recall(real, fake)
    assert found["precision"].replicates == _resampled_pr(fake, real, 2)["precision"].replicates
    assert all(0 <= r <= 1 for r in found["precision"].replicates + found["recall"].replicates)
    # the expectation of each figure at these set sizes, from independent draws of both sets
    truth = np.mean([precision_recall(*_precision_recall_draw(rng, 200)[::-1]) for _ in range(100)], axis=0)
    covered = np.zeros(2)
    for seed in range(40):
        found = _resampled_pr(*_precision_recall_draw(rng, 200), seed)
        covered += [
            low <= t <= high
            for t, (low, high) in zip(truth, (found["precision"].interval(), found["recall"].interval()))
        ]
    assert (covered >= 32).all(), covered  # nominal 38 of 40; without recentring 17 and 8


def test_precision_recall_intervals_shrink_with_more_samples():
    rng = np.random.default_rng(3)
    widths = []
    for n in (50, 800):
        found = _resampled_pr(*_precision_recall_draw(rng, n, n), seed=0)
        widths.append([np.subtract(*found[key].interval()[::-1]) for key in ("precision", "recall")])
    assert (np.array(widths[1]) < 0.5 * np.array(widths[0])).all(), widths


def test_paired_timing_alternates_and_pairs():
    calls = []
    t = paired_timing("a", lambda: calls.append("a"), "b", lambda: calls.append("b"), repeats=3)
    assert calls == ["a", "b"] * 4 and len(t.ratios()) == 3 and all(r > 0 for r in t.ratios())
