"""The training configuration, saved into every run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from elbolab.config import require

#: the most CPU threads a run may ask for (one bound on every machine, so that a saved config loads anywhere)
MAX_THREADS = 256


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule, EMA, evaluation and checkpoint cadence."""

    steps: int = 2000
    max_seconds: float = 0.0  # stop early once this much wall-clock training time is spent (0 = no limit)
    max_flops: float = 0.0  # stop once this many counted FLOPs are trained (whole steps; 0 = no limit)
    batch_size: int = 128
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay ends at lr × this
    warmup_steps: int = 100  # linear learning-rate warm-up
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    grad_clip: float = 1.0  # max global gradient norm, 0 = off
    ema_decay: float = 0.999
    eval_every: int = 500  # steps between test evaluations (0 = only at the end; with keep_best: only at the end)
    eval_n: int = 256  # test images in each periodic evaluation
    checkpoint_every: int = 500  # steps between checkpoints
    seed: int = 0
    threads: int = 1  # torch CPU threads, the same on every machine (0 = torch's default, one per core)
    validation_fraction: float = 0.0  # of the training images, held out (seeded) to validate on; never the test split
    validate_every: int = 100  # steps between bounds on the validation split (with validation_fraction > 0)
    #: at most this many validation images: the split's bound is compared only with itself (the same images and
    #: draws at every call), and on 60,000 Fashion-MNIST images a tenth cost diffusion several times its training
    validation_max: int = 512
    keep_best: bool = (
        False  # keep the EMA weights of the best validation bound, not the last (needs a validation split)
    )
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype of the forward pass (fp16 with a grad scaler)
    grad_accum: int = 1  # micro-batches per process per optimiser step (batch_size is the global batch)
    compile: bool = False  # torch.compile the networks (opt-in: pays on GPUs, rarely on a CPU)
    channels_last: bool = False  # model and batches in channels_last (opt-in: 0.5-1.3x on a 2-core CPU, load-dependent)
    keep_checkpoints: int = 3  # the newest K checkpoints are kept in checkpoints/
    nonfinite_patience: int = 3  # non-finite steps in a row before rolling back to the last good checkpoint
    max_rollbacks: int = 3  # rollbacks (each halving the learning rate) before the run stops
    deterministic: bool = False  # deterministic algorithms (cuDNN/cuBLAS) on the GPU; the CPU always is
    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard (pip install 'elbolab[tensorboard]')
    log_every: int = 1  # steps between host reads of the loss (> 1: no host sync in the other steps; see Trainer)
    #: fractions of the budget (steps, FLOPs or seconds) at which the weights the run would hand over if it stopped
    #: there (the best on validation so far with keep_best, else the EMA's) are kept in snapshots/: effects along
    #: the budget from one run, no retraining
    snapshots: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "eval_n",
            "checkpoint_every",
            "keep_checkpoints",
            "nonfinite_patience",
            "grad_accum",
            "validate_every",
            "validation_max",
            "log_every",
        ):
            require(f"train.{name}", getattr(self, name), getattr(self, name) >= 1, "an integer ≥ 1")
        for name in (
            "max_seconds",
            "max_flops",
            "eval_every",
            "warmup_steps",
            "weight_decay",
            "grad_clip",
            "threads",
            "max_rollbacks",
            "seed",
        ):
            require(f"train.{name}", getattr(self, name), getattr(self, name) >= 0, "a number ≥ 0")
        require(
            "train.validation_fraction",
            self.validation_fraction,
            0 <= self.validation_fraction < 1,
            "a number in [0, 1)",
        )
        require(
            "train.keep_best",
            self.keep_best,
            not self.keep_best or self.validation_fraction > 0,
            "false without a validation split (set train.validation_fraction, e.g. 0.1)",
        )
        require(
            "train.snapshots",
            self.snapshots,
            all(0 < f < 1 for f in self.snapshots) and len(set(self.snapshots)) == len(self.snapshots),
            "distinct fractions of the budget, each in (0, 1)",
        )
        require("train.lr", self.lr, self.lr > 0, "a number > 0")
        require("train.ema_decay", self.ema_decay, 0 <= self.ema_decay < 1, "a number in [0, 1)")
        require("train.min_lr_ratio", self.min_lr_ratio, 0 <= self.min_lr_ratio <= 1, "a number in [0, 1]")
        for name in ("adam_beta1", "adam_beta2"):
            require(f"train.{name}", getattr(self, name), 0 <= getattr(self, name) < 1, "a number in [0, 1)")
        require("train.precision", self.precision, self.precision in ("fp32", "bf16", "fp16"), "fp32, bf16 or fp16")
        kind, _, index = self.device.partition(":")
        require(
            "train.device",
            self.device,
            self.device in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()),
            "auto, cpu, cuda or cuda:N (N a device number)",
        )
        require("train.threads", self.threads, self.threads <= MAX_THREADS, f"0 (torch's default) to {MAX_THREADS}")
