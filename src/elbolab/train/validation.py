"""The validation split and the best state kept on it.

A seeded fraction of the training images is held out of training; the bound of the EMA weights on it, at a
cadence, is the validation curve, and with `keep_best` the weights of its lowest point are the run's weights.
The test split is never read to choose: it measures what was kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from elbolab.data.base import ImageData
from elbolab.model import GenerativeModel, dataset_bound

#: the seed of the validation bound's own draws (t, noise): the same draws at every point of the curve
VALIDATION_DRAWS_SEED = 20_240_601


def split_validation(
    data: ImageData, fraction: float, seed: int, most: int | None = None
) -> tuple[ImageData, ImageData | None]:
    """(training images, validation images): ⌈fraction·N⌉ images (at most `most`) drawn by a permutation seeded
    with `seed`, the rest kept in their order; (data, None) for fraction 0."""
    if fraction <= 0:
        return data, None
    n_val = min(len(data) - 1, max(1, math.ceil(fraction * len(data))), most or len(data))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    held = order[:n_val].sort().values
    kept = order[n_val:].sort().values
    return _take(data, kept, "train"), _take(data, held, "validation")


def _take(data: ImageData, index: Tensor, part: str) -> ImageData:
    """The images (and labels) of `data` at `index`, named as its `part`."""
    labels = None if data.labels is None else data.labels[index]
    return ImageData(f"{data.name} ({part})", data.images[index], data.levels, labels)


def validation_bpd(model: GenerativeModel, data: ImageData, batch_size: int) -> float:
    """Mean bits/dim of the bound on every validation image, with the same random draws at every call."""
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(VALIDATION_DRAWS_SEED)
        bound = dataset_bound(model, data, None, batch_size)
    return float(bound.bits_per_dim().mean().item())


@dataclass(frozen=True)
class ValidationCurve:
    """The validation bound along training and the step whose weights were kept (None: the last step's)."""

    images: int  # validation images
    steps: tuple[int, ...] = ()
    bpd: tuple[float, ...] = ()
    kept_step: int | None = None
    kept_bpd: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "steps": list(self.steps),
            "bpd": list(self.bpd),
            "kept_step": self.kept_step,
            "kept_bpd": self.kept_bpd,
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> ValidationCurve:
        return ValidationCurve(
            int(obj["images"]),
            tuple(int(s) for s in obj["steps"]),
            tuple(float(b) for b in obj["bpd"]),
            None if obj.get("kept_step") is None else int(obj["kept_step"]),
            None if obj.get("kept_bpd") is None else float(obj["kept_bpd"]),
        )


@dataclass
class BestState:
    """The lowest validation bound seen so far and a copy of the EMA weights that had it."""

    step: int | None = None
    bpd: float = math.inf
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def offer(self, step: int, bpd: float, shadow: dict[str, Tensor]) -> bool:
        """Keep `shadow` if its bound beats the best so far (ties keep the earlier); returns whether it did."""
        if not bpd < self.bpd:
            return False
        self.step, self.bpd = step, bpd
        self.tensors = {k: v.detach().clone() for k, v in shadow.items()}
        return True

    def state_tensors(self) -> dict[str, Tensor]:
        """The kept weights as checkpoint tensors (`best.` names), none before a first validation."""
        return {f"best.{k}": v for k, v in self.tensors.items()}

    def load(self, tensors: dict[str, Tensor], step: int | None, bpd: float | None) -> None:
        """Put back what `state_tensors` and the checkpoint's state held."""
        self.step, self.bpd = step, math.inf if bpd is None else bpd
        self.tensors = {k[5:]: v.clone() for k, v in tensors.items() if k.startswith("best.")}
