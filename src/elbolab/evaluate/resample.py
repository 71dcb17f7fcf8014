"""Bootstrap over samples: sample-quality and sharpness figures with the spread a finite sample leaves.

Every function draws its resampling indices from the seed it is given, the reference set's from
`seed` and the samples' from `seed + 1`; two figures measured with the same seed and equal set
sizes therefore share their indices, and the differences of their replicates bootstrap the difference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from elbolab.evaluate.quality import _as_f64, frechet_distance, mmd2_unbiased
from elbolab.evaluate.sharpness import high_frequency_share, laplacian_variance
from elbolab.records import Resampled


def bootstrap_indices(n: int, replicates: int, seed: int) -> np.ndarray:
    """[replicates, n] indices drawn with replacement from 0..n−1 (numpy's PCG64 seeded with `seed`)."""
    return np.random.default_rng(seed).integers(0, n, size=(replicates, n))


def resampled_quality(sample_features: Tensor | np.ndarray, reference_features: Tensor | np.ndarray,
                      replicates: int = 200, seed: int = 0) -> dict[str, Resampled]:
    """Fréchet distance and KID (one full-size unbiased MMD² per replicate), on the samples and on
    `replicates` bootstrap resamples of samples and reference."""
    fake, real = _as_f64(sample_features), _as_f64(reference_features)
    m = min(len(fake), len(real))
    ref_idx, fake_idx = bootstrap_indices(len(real), replicates, seed), bootstrap_indices(len(fake), replicates,
                                                                                          seed + 1)
    fd = [frechet_distance(fake[i], real[j]) for i, j in zip(fake_idx, ref_idx)]
    kid = [mmd2_unbiased(fake[i[:m]], real[j[:m]]) for i, j in zip(fake_idx, ref_idx)]
    return {"fd": Resampled(frechet_distance(fake, real), tuple(fd)),
            "kid": Resampled(mmd2_unbiased(fake[:m], real[:m]), tuple(kid))}


def _ratio_of_means(a: Tensor, b: Tensor, a_idx: np.ndarray, b_idx: np.ndarray) -> Resampled:
    """mean(a) / mean(b) and its bootstrap replicates."""
    a_rep = a[torch.from_numpy(a_idx)].mean(1)
    b_rep = b[torch.from_numpy(b_idx)].mean(1)
    return Resampled((a.mean() / b.mean()).item(), tuple((a_rep / b_rep).tolist()))


def resampled_sharpness(samples: Tensor, reference: Tensor, levels: int, replicates: int = 200,
                        seed: int = 0) -> dict[str, Resampled]:
    """Laplacian-variance and high-frequency-share ratios (samples over reference, 1 = as sharp as the
    reference), with bootstrap replicates over both sets."""
    ref_idx, idx = bootstrap_indices(len(reference), replicates, seed), bootstrap_indices(len(samples), replicates,
                                                                                          seed + 1)
    return {"laplacian_ratio": _ratio_of_means(laplacian_variance(samples, levels),
                                               laplacian_variance(reference, levels), idx, ref_idx),
            "high_frequency_ratio": _ratio_of_means(high_frequency_share(samples, levels),
                                                    high_frequency_share(reference, levels), idx, ref_idx)}


def resampled_figures(samples: Tensor, reference: Tensor, levels: int, features, replicates: int = 200,
                      seed: int = 0) -> dict[str, Resampled]:
    """`resampled_quality` (where there is a feature network) and `resampled_sharpness` of level images."""
    found = resampled_sharpness(samples, reference, levels, replicates, seed)
    if features is not None:
        found.update(resampled_quality(features(samples, levels), features(reference, levels), replicates, seed))
    return found
