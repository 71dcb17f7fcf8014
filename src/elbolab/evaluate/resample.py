"""Bootstrap over samples: sample-quality and sharpness figures with the spread a finite sample leaves.

Every function draws its resampling indices from the seed it is given, the reference set's from
`seed` and the samples' from `seed + 1`; two figures measured with the same seed and equal set
sizes therefore share their indices, and the differences of their replicates bootstrap the difference.
`sample_figures` is the one entry point: it extracts a sample set's features once and gives every figure
(`SampleFigures`), against a reference whose features are extracted once per feature network in a process.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from elbolab.evaluate.features import FeatureExtractor, check_levels
from elbolab.evaluate.quality import (
    _as_f64,
    _sqrt_psd,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    in_balls,
    knn_radii,
    mmd2_from_kernels,
    mmd2_unbiased,
    polynomial_kernel,
    warn_if_small,
)
from elbolab.evaluate.sharpness import high_frequency_share, laplacian_variance
from elbolab.records import Resampled, SampleFigures


def bootstrap_indices(n: int, replicates: int, seed: int) -> np.ndarray:
    """[replicates, n] indices drawn with replacement from 0..n−1 (numpy's PCG64 seeded with `seed`)."""
    return np.random.default_rng(seed).integers(0, n, size=(replicates, n))


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """[replicates, n]: how many times each of n items is drawn in each row of bootstrap `indices`."""
    rows = len(indices)
    return np.bincount((indices + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)


def _coverage(inside: np.ndarray, point_counts: np.ndarray, ball_counts: np.ndarray) -> np.ndarray:
    """Per replicate: the share of its drawn points (`point_counts` [B, P]) inside a ball of one of its drawn
    ball centres (`ball_counts` [B, M]), from `inside` [P, M]."""
    covered = (inside @ ball_counts.T.astype(np.float64)) > 0
    return (point_counts * covered.T).sum(1) / point_counts.sum(1)


def _recentred(inside: np.ndarray, point_counts: np.ndarray, ball_counts: np.ndarray) -> Resampled:
    """The share of points inside a ball, and its replicates shifted to centre on it: a resample holds only
    ≈ 1 − 1/e of the distinct ball centres, which shrinks every replicate's manifold alike (an artefact of
    resampling, not of the samples); the spread is kept, within [0, 1]."""
    value = float(inside.any(1).mean())
    if len(point_counts) == 0:  # no resamples asked for
        return Resampled(value, ())
    replicates = _coverage(inside, point_counts, ball_counts)
    return Resampled(value, tuple(np.clip(replicates - replicates.mean() + value, 0.0, 1.0).tolist()))


def resampled_precision_recall(
    fake: np.ndarray, real: np.ndarray, fake_idx: np.ndarray, ref_idx: np.ndarray, k: int = 3
) -> dict[str, Resampled]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eq. 1–2) and their bootstrap replicates: each
    replicate draws the points and the ball centres afresh; the k-NN radii stay the full sets' (in a
    resample a drawn-twice point would be its own neighbour, shrinking its ball to nothing)."""
    real_t, fake_t = torch.from_numpy(np.ascontiguousarray(real)), torch.from_numpy(np.ascontiguousarray(fake))
    on_real = in_balls(fake_t, real_t, knn_radii(real_t, k)).double().numpy()  # [fakes, reals]
    on_fake = in_balls(real_t, fake_t, knn_radii(fake_t, k)).double().numpy()  # [reals, fakes]
    fake_n, ref_n = resample_counts(fake_idx, len(fake)), resample_counts(ref_idx, len(real))
    return {"precision": _recentred(on_real, fake_n, ref_n), "recall": _recentred(on_fake, ref_n, fake_n)}


#: (μ, Σ, Σ^½) of reference resamples, keyed by the reference features and the resample's indices; every figure
#: a comparison bootstraps against one reference set with one seed draws the same resamples of it
_REFERENCE_STATISTICS: OrderedDict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
REFERENCE_CACHE_ROWS = 256


def reference_statistics(real: np.ndarray, ref_idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(μ, Σ, Σ^½) of real[j] for each row j of `ref_idx`, remembered for the last REFERENCE_CACHE_ROWS rows."""
    digest = hashlib.blake2b(f"{real.shape}".encode() + real.tobytes()).digest()
    found = []
    for j in ref_idx:
        key = digest + hashlib.blake2b(j.tobytes()).digest()
        if key not in _REFERENCE_STATISTICS:
            mu, cov = feature_statistics(real[j])
            _REFERENCE_STATISTICS[key] = (mu, cov, _sqrt_psd(cov))
            if len(_REFERENCE_STATISTICS) > REFERENCE_CACHE_ROWS:
                _REFERENCE_STATISTICS.popitem(last=False)
        _REFERENCE_STATISTICS.move_to_end(key)
        found.append(_REFERENCE_STATISTICS[key])
    return found


def resampled_quality(
    sample_features: Tensor | np.ndarray, reference_features: Tensor | np.ndarray, replicates: int = 200, seed: int = 0
) -> dict[str, Resampled]:
    """Fréchet distance, KID (one full-size unbiased MMD² per replicate), precision and recall, on the samples
    and on `replicates` bootstrap resamples of samples and reference. Each replicate's FD takes the reference
    side's statistics and square root from `reference_statistics`, and its KID gathers from the kernel
    matrices of the full sets: the same figures as computing each resample afresh."""
    fake, real = _as_f64(sample_features), _as_f64(reference_features)
    m = min(len(fake), len(real))
    ref_idx, fake_idx = (
        bootstrap_indices(len(real), replicates, seed),
        bootstrap_indices(len(fake), replicates, seed + 1),
    )
    with threadpool_limits(1, user_api="blas"):  # d×d matrices: threads gain nothing, and spin against torch's
        fd = [
            frechet_distance_from_statistics(*ref[:2], *feature_statistics(fake[i]), ref[2])
            for i, ref in zip(fake_idx, reference_statistics(real, ref_idx))
        ]
        k_xx, k_yy, k_xy = (polynomial_kernel(fake, fake), polynomial_kernel(real, real), polynomial_kernel(fake, real))
        kid = [
            mmd2_from_kernels(k_xx[np.ix_(i[:m], i[:m])], k_yy[np.ix_(j[:m], j[:m])], k_xy[np.ix_(i[:m], j[:m])])
            for i, j in zip(fake_idx, ref_idx)
        ]
    return {
        "fd": Resampled(frechet_distance(fake, real), tuple(fd)),
        "kid": Resampled(mmd2_unbiased(fake[:m], real[:m]), tuple(kid)),
        **resampled_precision_recall(fake, real, fake_idx, ref_idx),
    }


def _ratio_of_means(a: Tensor, b: Tensor, a_idx: np.ndarray, b_idx: np.ndarray) -> Resampled:
    """mean(a) / mean(b) and its bootstrap replicates."""
    a_rep = a[torch.from_numpy(a_idx)].mean(1)
    b_rep = b[torch.from_numpy(b_idx)].mean(1)
    return Resampled((a.mean() / b.mean()).item(), tuple((a_rep / b_rep).tolist()))


def resampled_sharpness(
    samples: Tensor, reference: Tensor, levels: int, replicates: int = 200, seed: int = 0
) -> dict[str, Resampled]:
    """Laplacian-variance and high-frequency-share ratios (samples over reference, 1 = as sharp as the
    reference), with bootstrap replicates over both sets."""
    ref_idx, idx = (
        bootstrap_indices(len(reference), replicates, seed),
        bootstrap_indices(len(samples), replicates, seed + 1),
    )
    return {
        "laplacian_ratio": _ratio_of_means(
            laplacian_variance(samples, levels), laplacian_variance(reference, levels), idx, ref_idx
        ),
        "high_frequency_ratio": _ratio_of_means(
            high_frequency_share(samples, levels), high_frequency_share(reference, levels), idx, ref_idx
        ),
    }


#: features of image sets, keyed by the feature network's identity and name and the images' digest; each entry
#: holds its network, so that an identity is never reused while its entry lives
_FEATURES: OrderedDict[tuple[int, str, bytes], tuple[Any, Tensor]] = OrderedDict()
FEATURE_CACHE_SETS = 8


def images_digest(images: Tensor, levels: int) -> bytes:
    """A digest of level images (shape, levels and values): the identity of a reference set."""
    array = np.ascontiguousarray(images.cpu().numpy())
    return hashlib.blake2b(f"{tuple(images.shape)}/{levels}/{array.dtype}".encode() + array.tobytes()).digest()


def features_of(features: FeatureExtractor, images: Tensor, levels: int) -> Tensor:
    """features(images), extracted once per feature network and image set in a process: a reference set measured
    against again and again, or two samplers' identical samples (the newest FEATURE_CACHE_SETS sets kept)."""
    key = (id(features), features.name, images_digest(images, levels))
    if key not in _FEATURES:
        _FEATURES[key] = (features, features(images, levels))
        if len(_FEATURES) > FEATURE_CACHE_SETS:
            _FEATURES.popitem(last=False)
    _FEATURES.move_to_end(key)
    return _FEATURES[key][1]


def sample_figures(
    samples: Tensor,
    reference: Tensor,
    levels: int,
    features: FeatureExtractor | None,
    replicates: int = 200,
    seed: int = 0,
) -> SampleFigures:
    """Every figure of level images `samples` against `reference`: `resampled_sharpness` and, where there is a
    feature network, `resampled_quality` on the features of both (`features_of`: each set featurised once)."""
    check_levels(samples, levels)
    check_levels(reference, levels)
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"samples {list(samples.shape[1:])} and reference {list(reference.shape[1:])} differ in shape")
    sharp = resampled_sharpness(samples, reference, levels, replicates, seed)
    found = SampleFigures(len(samples), len(reference), sharp["laplacian_ratio"], sharp["high_frequency_ratio"])
    if features is None:
        return found
    warn_if_small(len(samples), features)
    q = resampled_quality(
        features_of(features, samples, levels), features_of(features, reference, levels), replicates, seed
    )
    return replace(
        found, fd=q["fd"], kid=q["kid"], precision=q["precision"], recall=q["recall"], feature_net=features.name
    )
