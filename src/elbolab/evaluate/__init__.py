"""Model-independent evaluation: sample quality, sharpness, speed and interpolation smoothness."""

from elbolab.evaluate.features import (
    ClassifierFeatures,
    FeatureExtractor,
    FeatureNetUnavailable,
    InceptionFeatures,
    builtin_features,
    inception_features,
    load_or_train_classifier,
    select_features,
)
from elbolab.evaluate.interpolation import interpolation_smoothness
from elbolab.evaluate.quality import (
    SmallSampleWarning,
    frechet_distance,
    frechet_distance_from_statistics,
    kernel_inception_distance,
    precision_recall,
    quality_from_features,
    sample_quality,
)
from elbolab.evaluate.sharpness import high_frequency_share, laplacian_variance, radial_power_spectrum, sharpness
from elbolab.evaluate.speed import time_sampling, time_training

__all__ = [
    "ClassifierFeatures",
    "FeatureExtractor",
    "FeatureNetUnavailable",
    "InceptionFeatures",
    "SmallSampleWarning",
    "builtin_features",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "high_frequency_share",
    "inception_features",
    "interpolation_smoothness",
    "kernel_inception_distance",
    "laplacian_variance",
    "load_or_train_classifier",
    "precision_recall",
    "quality_from_features",
    "radial_power_spectrum",
    "sample_quality",
    "select_features",
    "sharpness",
    "time_sampling",
    "time_training",
]
