"""The settings of the Trainer's unit tests: a few steps of a tiny model on digits."""

from __future__ import annotations

from typing import Any

from elbolab.train.config import TrainConfig


def short_training(steps: int, batch_size: int, checkpoint_every: int, seed: int, **changes: Any) -> TrainConfig:
    """`steps` steps of `batch_size` images, a checkpoint every `checkpoint_every`, a 2-step warm-up and no periodic
    test bound (the tests read the log and the checkpoints), then `changes`."""
    return TrainConfig(
        **{
            "steps": steps,
            "batch_size": batch_size,
            "checkpoint_every": checkpoint_every,
            "seed": seed,
            "eval_every": 0,
            "warmup_steps": 2,
            **changes,
        }
    )
