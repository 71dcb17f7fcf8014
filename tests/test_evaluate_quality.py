"""Fréchet distance, KID and precision/recall: closed forms, identities, and a run on real digits."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from synthetic import CountedFeatures

from elbolab.data import load_data
from elbolab.errors import DataError
from elbolab.evaluate.features import load_or_train_classifier
from elbolab.evaluate.interpolation import path_stats
from elbolab.evaluate.quality import (
    SmallSampleWarning,
    frechet_distance,
    frechet_distance_from_statistics,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
    precision_recall,
)
from elbolab.evaluate.resample import sample_figures


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random well-conditioned symmetric positive-definite matrix."""
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "train"), load_data("digits", "test")


@pytest.fixture(scope="module")
def features(digits, tmp_path_factory):
    """The digits feature net, cached for the whole session (other modules reuse the folder)."""
    return load_or_train_classifier(*digits, tmp_path_factory.getbasetemp() / "digits-features")


# ---- Fréchet distance


def test_fd_matches_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    d = 6
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # shared eigenvectors: Σ1 Σ2 commute
    lam1, lam2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    exact = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(lam1) - np.sqrt(lam2)) ** 2).sum()
    got = frechet_distance_from_statistics(mu1, q @ np.diag(lam1) @ q.T, mu2, q @ np.diag(lam2) @ q.T)
    assert got == pytest.approx(exact, rel=1e-10, abs=1e-12)


def test_fd_matches_sqrtm_route_for_general_covariances():
    rng = np.random.default_rng(1)
    d = 8
    cov1, cov2 = random_spd(rng, d), random_spd(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    root = scipy.linalg.sqrtm(cov1 @ cov2)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2) - 2 * np.trace(root).real
    assert frechet_distance_from_statistics(mu1, cov1, mu2, cov2) == pytest.approx(reference, rel=1e-8)


def test_fd_from_large_samples_approaches_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = np.zeros(3), np.array([1.0, -0.5, 0.25])
    var1, var2 = np.array([1.0, 2.0, 0.5]), np.array([0.25, 2.0, 4.0])
    x1 = mu1 + np.sqrt(var1) * rng.normal(size=(200_000, 3))
    x2 = mu2 + np.sqrt(var2) * rng.normal(size=(200_000, 3))
    exact = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()  # = 2.8125
    assert frechet_distance(x1, x2) == pytest.approx(exact, abs=0.03)


def test_fd_of_a_set_with_itself_is_zero_even_when_rank_deficient():
    rng = np.random.default_rng(3)
    full = rng.normal(size=(500, 64)) * rng.uniform(0.1, 10, 64)
    thin = rng.normal(size=(20, 64))  # 20 points in 64-d: singular covariance
    assert frechet_distance(full, full) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(thin, thin) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(frechet_distance(thin, full)) and frechet_distance(thin, full) > 0


# ---- KID


def test_mmd2_matches_its_definition_as_explicit_sums():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert polynomial_kernel(x, y)[2, 5] == pytest.approx(k(x[2], y[5]))


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    same, same_std = kernel_inception_distance(a, b, subsets=20, subset_size=400)
    shifted, shifted_std = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=400)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 0.05 and shifted > 20 * shifted_std / np.sqrt(20)
    assert shifted > 20 * abs(same)


# ---- precision / recall


def test_precision_recall_of_a_set_against_itself_is_one():
    x = np.random.default_rng(6).normal(size=(400, 8))
    assert precision_recall(x, x) == (1.0, 1.0)


def test_precision_recall_fall_for_shifted_sets_and_separate_mode_dropping():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(600, 8))
    near = precision_recall(real, rng.normal(size=(600, 8)) + 1.0)
    far = precision_recall(real, rng.normal(size=(600, 8)) + 10.0)
    assert far == (0.0, 0.0)
    assert 0.0 < near[0] < 0.95 and 0.0 < near[1] < 0.95
    # two real modes, the fakes cover one: precision stays high, recall halves
    modes = np.concatenate([rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 20.0])
    one_mode = rng.normal(size=(300, 8))
    precision, recall = precision_recall(modes, one_mode)
    assert precision > 0.9 and 0.4 < recall < 0.55


# ---- on real digits through the built-in feature network


def test_sample_figures_on_digits(digits, features):
    train, test = digits
    noise = torch.randint(0, 17, test.images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    sevens = test.images[test.labels == 7].repeat(10, 1, 1, 1)[: len(test)]
    real, fake, one_class, itself = (
        sample_figures(s, test.images, 17, features, replicates=20)
        for s in (train.images[:360], noise, sevens, test.images)
    )
    assert itself.fd.value == pytest.approx(0.0, abs=1e-6) and (itself.precision.value, itself.recall.value) == (1, 1)
    assert itself.laplacian_ratio.value == 1.0 and itself.high_frequency_ratio.value == 1.0
    assert real.fd.value < 0.1 * fake.fd.value and real.kid.value < 0.1 * fake.kid.value
    assert fake.kid.value > 3 * np.std(fake.kid.replicates)
    assert real.precision.value > 0.9 and real.recall.value > 0.6 and fake.recall.value < 0.2
    # one class of ten, drawn over and over: every sample is realistic, a tenth of the test set is covered
    assert one_class.precision.value > 0.9 and one_class.recall.value < 0.2
    assert real.n == 360 and real.n_reference == len(test) and real.feature_net == "elbolab-cnn/digits"
    assert len(real.fd.replicates) == 20
    # KID is the unbiased MMD² of the full sets, the estimator its replicates bootstrap
    f_real, f_test = features(train.images[:360], 17).numpy(), features(test.images, 17).numpy()
    assert real.kid.value == pytest.approx(mmd2_unbiased(f_real, f_test), rel=1e-9)


def test_each_sample_set_is_featurised_once_and_the_reference_once_per_net(digits, features):
    train, test = digits
    counted = CountedFeatures(features)
    sets = [train.images[:360], train.images[360:720], test.images.flip(-1)]
    for s in sets:
        sample_figures(s, test.images, 17, counted, replicates=5)
    assert len(counted.seen) == len(set(counted.seen)) == len(sets) + 1
    assert sample_figures(sets[0], test.images, 17, None).fd is None and len(counted.seen) == 4  # sharpness only
    other = CountedFeatures(features)  # another network: the reference is featurised again, for it
    sample_figures(sets[0], test.images, 17, other, replicates=5)
    assert len(other.seen) == 2


def test_sample_figures_warn_when_samples_are_fewer_than_feature_dims(digits, features):
    test = digits[1]
    with pytest.warns(SmallSampleWarning, match="biased"):
        sample_figures(test.images[:100], test.images, 17, features, replicates=5)


def test_sample_figures_reject_values_beyond_the_levels(digits, features):
    test = digits[1]
    with pytest.raises(DataError, match="levels"):
        sample_figures(test.images, test.images, 16, features)


# ---- interpolation smoothness (a feature-space metric too)


def blend(a: torch.Tensor, b: torch.Tensor, frames: int, levels: int) -> torch.Tensor:
    """A pixel-space linear path from a to b, rounded to levels, [T, C, H, W]."""
    w = torch.linspace(0, 1, frames)[:, None, None, None]
    return torch.round((1 - w) * a.float() + w * b.float()).clamp(0, levels - 1).to(torch.uint8)


def test_path_stats_separate_even_paths_from_jumps(digits, features):
    test = digits[1]
    a, b = test.images[0], test.images[1]
    even = path_stats(blend(a, b, 9, 17)[None], 17, features)
    jump = path_stats(torch.stack([a] * 4 + [b] * 5)[None], 17, features)
    still = path_stats(torch.stack([a] * 5)[None], 17, features)
    assert even.step_cv[0] < 0.5 * jump.step_cv[0] and jump.max_step_ratio[0] == pytest.approx(8.0, rel=1e-4)
    assert still.step_mean[0] < 1e-5 * even.step_mean[0]  # batched convolutions round differently per row
    paths = torch.stack([blend(a, b, 9, 17), blend(test.images[2], test.images[3], 9, 17)])
    both = path_stats(paths, 17, features)
    assert len(both.step_mean) == 2 and both.frames == 9 and both.feature_net == features.name
    # the ends are test images, the classifier's confidence on them high
    assert min(both.end_confidence) > 0.5
