"""TensorBoard logging for training (`--set train.tensorboard=true`): a trainer callback writing, into
`RUN/tensorboard`, the loss, learning rate, gradient norm and throughput at every step and, at evaluation
steps, the test bits/dim with its terms and a grid of samples from the EMA weights.

TensorBoard is an optional extra (`pip install 'elbolab[tensorboard]'`); without it, asking for this
log is a one-line configuration error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from elbolab.errors import ConfigError
from elbolab.model import GenerativeModel

#: folder inside the run that holds the event files
TENSORBOARD_DIR = "tensorboard"
#: trainer record key → TensorBoard tag, written at every step
STEP_TAGS = {
    "loss": "train/loss",
    "lr": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "images_per_s": "train/images_per_s",
}
SAMPLE_STEPS = 20  # network evaluations per sample grid (a one-pass model: 1)


def summary_writer(log_dir: Path) -> Any:
    """A SummaryWriter into `log_dir`, or a one-line hint where TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "train.tensorboard needs the tensorboard package: pip install 'elbolab[tensorboard]'"
        ) from None
    return SummaryWriter(str(log_dir))


class TensorBoardLog:
    """A trainer callback: scalars at every step, test bits/dim and its terms and a sample grid at evaluations."""

    def __init__(self, run_dir: Path, levels: int, n_samples: int = 16, seed: int = 0) -> None:
        self.writer = summary_writer(Path(run_dir) / TENSORBOARD_DIR)
        self.levels, self.n_samples, self.seed = levels, n_samples, seed
        self.model: GenerativeModel | None = None

    def watch(self, model: GenerativeModel) -> None:
        """Sample the grids from `model` (the trainer's evaluation copy, holding the EMA weights at evaluations)."""
        self.model = model

    def __call__(self, step: int, record: dict[str, Any]) -> None:
        for key, tag in STEP_TAGS.items():
            if key in record:
                self.writer.add_scalar(tag, record[key], step)
        if "test_bpd" in record:
            self.writer.add_scalar("test/bpd", record["test_bpd"], step)
            for name, value in record.get("test_bpd_terms", {}).items():
                self.writer.add_scalar(f"test/bpd_{name}", value, step)
            if self.model is not None and self.n_samples > 0:
                self.writer.add_images("samples", self.samples(), step, dataformats="NCHW")
        self.writer.flush()

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        """`n_samples` images in [0, 1] from a fixed seed, with the model's default sampler at few steps."""
        model = self.model
        if model is None:
            raise RuntimeError("TensorBoardLog.samples before watch(model)")
        caps = model.capabilities
        steps = caps.steps_for((SAMPLE_STEPS,)) or (caps.max_steps,)
        generator = torch.Generator(model.device).manual_seed(self.seed)
        images = model.sample(self.n_samples, generator=generator, sampler=caps.samplers[0], steps=steps[0])
        return images.cpu().float() / (self.levels - 1)

    def close(self) -> None:
        """Close the event file (every call has already flushed it)."""
        self.writer.close()
