"""Sample figures against the number of sampling steps: why many small Gaussian steps make sharp samples.

With one step a diffusion sampler returns x̂_0 = E[x_0 | x_T], a single leap to a posterior mean like a
VAE's decoder; with many it commits to detail a little at a time. Each point is a sampler at a
number of network evaluations, with its Fréchet distance and sharpness (bootstrapped) and its time,
so the same points are the speed–quality frontier.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from elbolab.diffusion.samplers import nfe as sampler_nfe
from elbolab.evaluate.features import FeatureExtractor
from elbolab.evaluate.resample import sample_figures
from elbolab.evaluate.run import Measurement
from elbolab.model import GenerativeModel
from elbolab.records import Record, SampleFigures

#: the step counts swept by default (those above a model's T are dropped)
STEPS = (1, 2, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class StepsPoint(Record):
    """One model and sampler at `steps` sampling steps (`nfe` network evaluations): its sample figures and seconds
    per image."""

    model: str
    sampler: str
    steps: int
    seconds_per_image: float
    figures: SampleFigures

    @property
    def nfe(self) -> int:
        """Network evaluations of the sampler over its steps (`samplers.nfe`: Heun's 2k − 1)."""
        return sampler_nfe(self.sampler, self.steps)

    @staticmethod
    def of(m: Measurement) -> StepsPoint:
        """The point a measurement's quality samples already are (a one-pass model's only point)."""
        if m.quality_samples is None or m.samples is None:
            raise ValueError(f"{m.kind}: the measurement holds no quality samples")
        q = m.quality_samples
        return StepsPoint(m.kind, q.sampler, q.steps, q.seconds / q.n, m.samples)


def steps_sweep(
    model: GenerativeModel,
    reference: Tensor,
    levels: int,
    features: FeatureExtractor | None,
    *,
    steps: tuple[int, ...] = STEPS,
    samplers: tuple[str, ...] = ("ancestral", "ddim"),
    n: int = 256,
    replicates: int = 200,
    seed: int = 0,
) -> tuple[StepsPoint, ...]:
    """Each of `samplers` the model offers at each of `steps` it takes (a one-pass model: its decoder, once)."""
    caps = model.capabilities
    chosen = caps.samplers if caps.one_pass else tuple(s for s in samplers if s in caps.samplers)
    points = []
    for sampler in chosen:
        for k in caps.steps_for(steps):
            start = time.perf_counter()
            images = model.sample(
                n, generator=torch.Generator(model.device).manual_seed(seed), sampler=sampler, steps=k
            ).cpu()
            seconds = (time.perf_counter() - start) / n
            points.append(
                StepsPoint(
                    model.kind,
                    sampler,
                    k,
                    seconds,
                    sample_figures(images, reference, levels, features, replicates, seed),
                )
            )
    return tuple(points)
