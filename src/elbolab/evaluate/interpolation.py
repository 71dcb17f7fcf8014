"""Interpolation smoothness: how evenly a path of frames moves through a feature space."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from elbolab.evaluate.features import FeatureExtractor, check_levels


def step_distances(frames: Tensor, levels: int, features: FeatureExtractor) -> Tensor:
    """Feature-space distance between neighbouring frames, [P, T-1], for paths [P, T, C, H, W] or [T, C, H, W]."""
    paths = frames[None] if frames.ndim == 4 else frames
    if paths.ndim != 5 or paths.shape[1] < 2:
        raise ValueError(f"frames must be [T, C, H, W] or [P, T, C, H, W] with T ≥ 2, got {list(frames.shape)}")
    check_levels(paths.flatten(0, 1), levels)
    f = features(paths.flatten(0, 1), levels).reshape(paths.shape[0], paths.shape[1], -1)
    return torch.linalg.vector_norm(f[:, 1:] - f[:, :-1], dim=-1)


def interpolation_smoothness(frames: Tensor, levels: int, features: FeatureExtractor) -> dict[str, Any]:
    """Mean and spread of neighbouring-frame feature distances.

    cv is each path's std/mean of its steps, averaged over paths: 0 for an evenly paced path,
    large when a path jumps; max_step_ratio is the largest step over the mean step.
    """
    d = step_distances(frames, levels, features).double()
    path_mean = d.mean(1)
    path_cv = torch.where(path_mean > 0, d.std(1, unbiased=False) / path_mean.clamp_min(1e-300), 0.0)
    mean = d.mean().item()
    return {"step_mean": mean, "step_std": d.std(unbiased=False).item(), "cv": path_cv.mean().item(),
            "max_step_ratio": d.max().item() / mean if mean > 0 else 0.0,
            "n_paths": d.shape[0], "n_frames": d.shape[1] + 1, "feature_net": features.name}
