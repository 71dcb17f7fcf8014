"""Model-independent evaluation: sample quality, sharpness, speed and interpolation paths."""

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
from elbolab.evaluate.interpolation import PathStats, path_stats
from elbolab.evaluate.quality import (
    SmallSampleWarning,
    frechet_distance,
    frechet_distance_from_statistics,
    kernel_inception_distance,
    precision_recall,
)
from elbolab.evaluate.resample import features_of, sample_figures
from elbolab.evaluate.sharpness import high_frequency_share, laplacian_variance, radial_power_spectrum
from elbolab.evaluate.speed import time_sampling, time_training

__all__ = [
    "ClassifierFeatures",
    "FeatureExtractor",
    "FeatureNetUnavailable",
    "InceptionFeatures",
    "PathStats",
    "SmallSampleWarning",
    "builtin_features",
    "features_of",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "high_frequency_share",
    "inception_features",
    "kernel_inception_distance",
    "laplacian_variance",
    "load_or_train_classifier",
    "path_stats",
    "precision_recall",
    "radial_power_spectrum",
    "sample_figures",
    "select_features",
    "time_sampling",
    "time_training",
]
