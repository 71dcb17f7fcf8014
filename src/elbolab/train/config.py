"""The training configuration, saved into every run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from elbolab.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule, EMA, evaluation and checkpoint cadence."""

    steps: int = 2000
    max_seconds: float = 0.0       # stop early once this much wall-clock training time is spent (0 = no limit)
    batch_size: int = 128
    lr: float = 2e-3
    min_lr_ratio: float = 0.1      # cosine decay ends at lr × this
    warmup_steps: int = 100        # linear learning-rate warm-up
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    grad_clip: float = 1.0         # max global gradient norm, 0 = off
    ema_decay: float = 0.999
    eval_every: int = 500          # steps between test evaluations (0 = only at the end)
    eval_n: int = 256              # test images in each periodic evaluation
    checkpoint_every: int = 500    # steps between checkpoints
    seed: int = 0
    threads: int = 0               # torch CPU threads, 0 = torch's default
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype of the forward pass (fp16 with a grad scaler)
    grad_accum: int = 1            # micro-batches per process per optimiser step (batch_size is the global batch)
    compile: bool = False          # torch.compile the networks (opt-in: pays on GPUs, rarely on a CPU)
    channels_last: bool = False    # model and batches in channels_last (opt-in: 0.5-1.3x on a 2-core CPU, load-dependent)

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "eval_n": self.eval_n,
                    "checkpoint_every": self.checkpoint_every, "grad_accum": self.grad_accum}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {value}")
        if self.lr <= 0 or self.max_seconds < 0 or self.eval_every < 0 or self.warmup_steps < 0:
            raise ConfigError("train.lr must be positive; max_seconds, eval_every and warmup_steps not negative")
        if not 0 <= self.ema_decay < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("train.ema_decay must be in [0, 1) and train.min_lr_ratio in [0, 1]")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"train.precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ConfigError(f"train.device must be auto, cpu or cuda[:N], got {self.device!r}")
