"""The NFE every figure records is the network evaluations its sampler made: k for one-call samplers, 2k − 1 for
Heun over k steps (the steps sweep, the quality samples and the speed rows alike)."""

from __future__ import annotations

import pytest
import torch

from elbolab.data import load_data
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.model import DiffusionModel
from elbolab.evaluate.run import EvalConfig, QualitySamples, speed_table
from elbolab.evaluate.speed import PassCounter
from elbolab.evaluate.steps import steps_sweep
from elbolab.nets.unet import UNetConfig


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(DiffusionConfig(T=20, unet=UNetConfig(preset="tiny")), (1, 8, 8), 17).eval()


def _passes(model: DiffusionModel, sampler: str, steps: int) -> int:
    """Network calls of one batch sampled with `sampler` over `steps` steps, counted by a forward hook."""
    counter = PassCounter(model.diffusion.net)
    model.sample(2, torch.Generator().manual_seed(0), sampler=sampler, steps=steps)
    counter.remove()
    return counter.calls


@pytest.mark.parametrize(("sampler", "k", "expected"), [("heun", 3, 5), ("heun", 1, 1), ("ddim", 3, 3)])
def test_the_recorded_nfe_is_the_network_calls_made(model, sampler, k, expected):
    assert _passes(model, sampler, k) == expected
    reference = load_data("digits", "test").subset(8).images
    (point,) = steps_sweep(model, reference, 17, None, steps=(k,), samplers=(sampler,), n=4, replicates=2)
    assert (point.steps, point.nfe) == (k, expected)
    assert QualitySamples(4, 0.1, sampler, k).nfe == expected
    rows = [r for r in speed_table(model, EvalConfig(nfe=(k,), speed_n=2)) if r.sampler == sampler]
    assert [r.nfe for r in rows] == [expected]
