"""Interpolation paths: how evenly a path of frames moves through a feature space, and how recognisable its
midpoints are."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from elbolab.evaluate.features import FeatureExtractor, check_levels
from elbolab.records import Record


def step_distances(frames: Tensor, levels: int, features: FeatureExtractor) -> Tensor:
    """Feature-space distance between neighbouring frames, [P, T-1], for paths [P, T, C, H, W] or [T, C, H, W]."""
    paths = frames[None] if frames.ndim == 4 else frames
    if paths.ndim != 5 or paths.shape[1] < 2:
        raise ValueError(f"frames must be [T, C, H, W] or [P, T, C, H, W] with T ≥ 2, got {list(frames.shape)}")
    check_levels(paths.flatten(0, 1), levels)
    f = features(paths.flatten(0, 1), levels).reshape(paths.shape[0], paths.shape[1], -1)
    return torch.linalg.vector_norm(f[:, 1:] - f[:, :-1], dim=-1)


@dataclass(frozen=True)
class PathStats(Record):
    """Per interpolation path: mean neighbour distance in feature space, the largest step over that mean,
    the unevenness std/mean of its steps (0 for an evenly paced path, large when it jumps), and the built-in
    classifier's mean top-class probability on the interior frames and on the two ends (NaN where the feature
    network has no classifier head)."""

    step_mean: tuple[float, ...]
    max_step_ratio: tuple[float, ...]
    interior_confidence: tuple[float, ...]
    end_confidence: tuple[float, ...]
    frames: int
    step_cv: tuple[float, ...] = ()
    feature_net: str = ""


def path_stats(frames: Tensor, levels: int, features: FeatureExtractor) -> PathStats:
    """`PathStats` of paths [P, T, C, H, W]: are the paths even, and are their midpoints recognisable?"""
    d = step_distances(frames, levels, features).double()
    mean = d.mean(1)
    ratio = torch.where(mean > 0, d.max(1).values / mean.clamp_min(1e-300), torch.zeros_like(mean))
    cv = torch.where(mean > 0, d.std(1, unbiased=False) / mean.clamp_min(1e-300), torch.zeros_like(mean))
    p, t = frames.shape[:2]
    if hasattr(features, "class_probabilities"):
        confidence = features.class_probabilities(frames.flatten(0, 1), levels).max(1).values.reshape(p, t)
    else:
        confidence = torch.full((p, t), float("nan"), dtype=torch.float64)
    return PathStats(
        tuple(mean.tolist()),
        tuple(ratio.tolist()),
        tuple(confidence[:, 1:-1].mean(1).tolist()),
        tuple(confidence[:, [0, -1]].mean(1).tolist()),
        t,
        tuple(cv.tolist()),
        features.name,
    )
