"""Timing helpers: warm-up excluded, per-image and per-step figures, NFE passed through."""

from __future__ import annotations

import time

import pytest
import torch

from elbolab.data import load_data
from elbolab.evaluate.speed import time_sampling, time_training, timed_calls


def test_warmup_calls_are_made_but_not_timed():
    calls = []
    seconds = timed_calls(lambda: calls.append(time.sleep(0.3 if not calls else 0.001)), calls=3, warmup=1)
    assert len(calls) == 4 and len(seconds) == 3 and max(seconds) < 0.2


def test_sampling_speed_per_image_and_nfe():
    result = time_sampling(lambda n: time.sleep(0.002 * n), 10, nfe=50, repeats=3)
    assert 0.002 <= result["seconds_per_image"] < 0.01
    assert result["images_per_second"] == pytest.approx(1 / result["seconds_per_image"])
    assert result["nfe"] == 50
    assert result["seconds_per_image_per_nfe"] == pytest.approx(result["seconds_per_image"] / 50)
    assert result["torch_threads"] == torch.get_num_threads() and result["device"] == "cpu"


def test_training_throughput_of_a_real_step_on_digits():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 8, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = load_data("digits", "train").model_range(slice(0, 16))

    def step():
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()

    result = time_training(step, batch_size=16, steps=5)
    assert result["seconds_per_step"] > 0 and result["steps"] == 5
    assert result["images_per_second"] == pytest.approx(16 / result["seconds_per_step"])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        time_sampling(lambda n: None, 0)
    with pytest.raises(ValueError):
        timed_calls(lambda: None, calls=0)
