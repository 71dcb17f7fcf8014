"""Sample quality in a feature space: Fréchet distance, KID, and k-NN precision/recall.

All arithmetic is float64. Features are [N, d] arrays or tensors; `resample.sample_figures` goes from
uint8 level images to features through any `FeatureExtractor` (see `features.py`), once per sample set.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from elbolab.evaluate.features import FeatureExtractor

ArrayLike = np.ndarray | Tensor


class SmallSampleWarning(UserWarning):
    """A sample-quality figure computed from too few samples to be unbiased."""


def _as_f64(features: ArrayLike) -> np.ndarray:
    """Features as a float64 numpy array of shape [N, d]."""
    if isinstance(features, Tensor):
        features = features.detach().cpu().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be [N, d], got shape {array.shape}")
    return array


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean μ and unbiased covariance Σ of features [N, d] (float64)."""
    x = _as_f64(features)
    if x.shape[0] < 2:
        raise ValueError("a covariance needs at least two feature vectors")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix by eigen-decomposition (negative round-off clipped)."""
    eigval, eigvec = np.linalg.eigh((cov + cov.T) / 2)
    return (eigvec * np.sqrt(np.clip(eigval, 0.0, None))) @ eigvec.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray, root1: np.ndarray | None = None) -> float:
    """Tr((Σ1 Σ2)^½) = Σ √eig(Σ1^½ Σ2 Σ1^½): a symmetric PSD route, so no complex round-off arises;
    `root1`: Σ1^½ where the caller already has it."""
    root1 = _sqrt_psd(cov1) if root1 is None else root1
    middle = root1 @ cov2 @ root1
    eigval = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigval, 0.0, None)).sum())


def frechet_distance_from_statistics(
    mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike, root1: np.ndarray | None = None
) -> float:
    """Fréchet (2-Wasserstein²) distance of two Gaussians: ‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) (`root1`: Σ1^½,
    where known)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: μ {mu1.shape}/{mu2.shape}, Σ {cov1.shape}/{cov2.shape}")
    distance = float(
        ((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt_product(cov1, cov2, root1)
    )
    return max(distance, 0.0)  # only round-off can make it negative


def frechet_distance(features1: ArrayLike, features2: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the features are Inception's)."""
    return frechet_distance_from_statistics(*feature_statistics(features1), *feature_statistics(features2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's cubic kernel k(x, y) = (x·y / d + 1)³."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_from_kernels(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) of two equal-size sets from their kernel matrices."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-size sets under the cubic kernel."""
    return mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def effective_subset_size(n1: int, n2: int, subset_size: int = 1000) -> int:
    """Subset size for KID: `subset_size`, capped at half the smaller set so that subsets differ."""
    return max(2, min(subset_size, n1 // 2, n2 // 2))


def kernel_inception_distance(
    features1: ArrayLike, features2: ArrayLike, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std of unbiased MMD² over random equal-size subsets."""
    x, y = _as_f64(features1), _as_f64(features2)
    if min(x.shape[0], y.shape[0]) < 4:
        raise ValueError("KID needs at least four feature vectors in each set")
    m = effective_subset_size(x.shape[0], y.shape[0], subset_size)
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            mmd2_unbiased(x[rng.choice(x.shape[0], m, replace=False)], y[rng.choice(y.shape[0], m, replace=False)])
            for _ in range(subsets)
        ]
    )
    return float(values.mean()), float(values.std(ddof=1) if subsets > 1 else 0.0)


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """‖a_i − b_j‖² for all pairs, [len(a), len(b)], clamped at 0."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * a @ b.T).clamp_min(0.0)


def knn_radii(features: Tensor, k: int = 3, chunk: int = 1024) -> Tensor:
    """Squared distance of each point to its k-th nearest neighbour in its own set (itself excluded)."""
    if features.shape[0] <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} points, got {features.shape[0]}")
    return torch.cat(
        [
            torch.kthvalue(_squared_distances(features[i : i + chunk], features), k + 1, dim=1).values
            for i in range(0, features.shape[0], chunk)
        ]
    )


def in_balls(points: Tensor, manifold: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """[len(points), len(manifold)] booleans: point i lies in the k-NN ball of manifold point j
    (Kynkäänniemi et al. 2019, eq. 1)."""
    # slack for the round-off of ‖a‖² + ‖b‖² − 2a·b, so that a point always lies in its own ball
    scale = 1e-9 * (points.pow(2).sum(1).mean() + manifold.pow(2).sum(1).mean())
    return torch.cat(
        [_squared_distances(points[i : i + chunk], manifold) <= radii + scale for i in range(0, points.shape[0], chunk)]
    )


def manifold_coverage(points: Tensor, manifold: Tensor, radii: Tensor, chunk: int = 1024) -> float:
    """Fraction of `points` inside at least one k-NN ball of `manifold` (Kynkäänniemi et al. 2019, eq. 1–2)."""
    return float(in_balls(points, manifold, radii, chunk).any(1).double().mean())


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> tuple[float, float]:
    """Improved precision (fakes on the real manifold) and recall (reals on the fake manifold), k-NN balls."""
    real_t, fake_t = torch.from_numpy(_as_f64(real)), torch.from_numpy(_as_f64(fake))
    precision = manifold_coverage(fake_t, real_t, knn_radii(real_t, k))
    recall = manifold_coverage(real_t, fake_t, knn_radii(fake_t, k))
    return precision, recall


def warn_if_small(n: int, features: FeatureExtractor, min_samples: int | None = None) -> None:
    """Warn that FD/KID/precision–recall are biased when n is below the feature network's threshold."""
    threshold = max(features.dim, features.min_samples) if min_samples is None else min_samples
    if n < threshold:
        warnings.warn(
            f"sample quality from {n} samples with {features.name} ({features.dim}-d features) is "
            f"biased; use at least {threshold} and compare figures only at equal n",
            SmallSampleWarning,
            stacklevel=3,
        )
