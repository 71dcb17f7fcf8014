"""The records `compare`, `eval` and `report` hand on: a trained run as measured, and a whole comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from elbolab.evaluate.run import Measurement
from elbolab.records import Contrast, DataInfo, Record, SweepPoint


@dataclass(frozen=True)
class RunResult(Record):
    """A trained run: its measurement, how long and how fast it trained, and its resolved model config."""

    measurement: Measurement
    train_steps: int
    train_images_per_s: float
    train_seconds: float
    model_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CompareResults(Record):
    """Everything a comparison found: per model, the β-sweep, and a verdict per contrast."""

    config: dict[str, Any]
    machine: dict[str, Any]
    data: DataInfo
    feature_net: dict[str, Any]
    models: dict[str, RunResult]
    beta_sweep: tuple[SweepPoint, ...]
    contrasts: tuple[Contrast, ...]

    def measured(self) -> dict[str, Measurement]:
        """Each model's measurement by kind."""
        return {kind: r.measurement for kind, r in self.models.items()}
