"""Training budgets: optimiser steps, counted FLOPs or wall-clock seconds, and the FLOPs of one training step.

A compute budget (steps or FLOPs) gives every machine, idle or loaded, the same number of steps; a wall-clock
budget does not, and says so (`machine_dependent`).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from elbolab.errors import ConfigError
from elbolab.model import GenerativeModel, label_keywords
from elbolab.train.config import TrainConfig

Unit = Literal["steps", "flop", "s"]
#: how each unit is written after its number on the command line (`1200steps`, `2.5e13flop`, `60s`)
SPELLINGS: dict[str, Unit] = {"steps": "steps", "step": "steps", "flop": "flop", "flops": "flop", "s": "s"}
#: the step limit of a run whose budget is FLOPs or seconds: never the one that stops it
STEP_CAP = 10_000_000
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A training budget per model: `amount` optimiser steps, counted FLOPs or wall-clock seconds."""

    amount: float
    unit: Unit
    machine_dependent: bool = field(init=False)  # seconds: how many steps they buy depends on the machine and load

    def __post_init__(self) -> None:
        if self.unit not in ("steps", "flop", "s"):
            raise ConfigError(f"budget unit {self.unit!r} is not one of steps, flop, s")
        if not (math.isfinite(self.amount) and self.amount > 0):
            raise ConfigError(f"budget {self.amount!r} {self.unit} must be a positive number")
        if self.unit == "steps" and self.amount != int(self.amount):
            raise ConfigError(f"budget {self.amount!r} steps must be a whole number of steps")
        object.__setattr__(self, "machine_dependent", self.unit == "s")

    @staticmethod
    def parse(text: str) -> Budget:
        """`1200steps`, `2.5e13flop` or `60s` (a bare number is seconds, as before compute budgets)."""
        match = _BUDGET.match(text)
        unit = SPELLINGS.get(match.group(2).lower() if match and match.group(2) else "s") if match else None
        if match is None or unit is None:
            raise ConfigError(
                f"--budget {text!r}: write a number with its unit: optimiser steps (1200steps), "
                "counted FLOPs (2.5e13flop) or seconds (60s)"
            )
        return Budget(float(match.group(1)), unit)

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Budget:
        """The record `dataclasses.asdict` wrote (`machine_dependent` is derived, not read)."""
        return Budget(float(obj["amount"]), obj["unit"])

    @staticmethod
    def of(train: TrainConfig) -> Budget:
        """The budget a `TrainConfig` imposes: its FLOP limit, else its wall-clock limit, else its steps."""
        if train.max_flops > 0:
            return Budget(train.max_flops, "flop")
        if train.max_seconds > 0:
            return Budget(train.max_seconds, "s")
        return Budget(train.steps, "steps")

    def scaled(self, fraction: float) -> Budget:
        """`fraction` of this budget (whole steps, at least one)."""
        if self.unit == "steps":
            return Budget(max(1, round(self.amount * fraction)), "steps")
        return Budget(self.amount * fraction, self.unit)

    def train_keys(self) -> dict[str, Any]:
        """The `TrainConfig` fields that impose this budget: `steps`, `max_flops`, `max_seconds`."""
        if self.unit == "steps":
            return {"steps": int(self.amount), "max_flops": 0.0, "max_seconds": 0.0}
        if self.unit == "flop":
            return {"steps": STEP_CAP, "max_flops": self.amount, "max_seconds": 0.0}
        return {"steps": STEP_CAP, "max_flops": 0.0, "max_seconds": self.amount}

    def __str__(self) -> str:
        return {"steps": f"{self.amount:.0f} steps", "flop": f"{self.amount:.3g} FLOPs", "s": f"{self.amount:g} s"}[
            self.unit
        ]


def step_flops(model: GenerativeModel, x: Tensor, total_steps: int | None = None, y: Tensor | None = None) -> int:
    """FLOPs of one training step on the batch `x`: the forward and backward pass of `loss(x).mean()` at step 0
    of `total_steps`, counted
    by torch's FlopCounterMode (matrix products and convolutions) on a copy of the model, so that neither its
    weights, buffers and gradients nor the random streams move. The count depends on shapes alone, so a loss
    that draws random t or noise costs the same at every step. A conditional model's labels `y` go to its loss."""
    twin = copy.deepcopy(model).train()
    devices = [x.device] if x.device.type == "cuda" else []
    counter = FlopCounterMode(display=False)
    with torch.random.fork_rng(devices=devices), torch.compiler.set_stance("force_eager"), counter:
        loss = twin.loss(x, 0, total_steps, **label_keywords(twin, y)).mean()
        if loss.requires_grad:  # (a loss with nothing to train costs its forward pass)
            loss.backward()
    return int(counter.get_total_flops())


def steps_in_budget(steps: int, max_flops: float, flops_per_step: int) -> int:
    """The steps a run trains: `steps`, or fewer where `max_flops` (0: no limit) buys fewer whole steps (≥ 1)."""
    if max_flops <= 0 or flops_per_step <= 0:
        return steps
    return min(steps, max(1, math.floor(max_flops / flops_per_step)))
