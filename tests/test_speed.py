"""Speed features: precomputed sampler coefficients, device presets, configs (the lean UNet: test_unet_presets)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from elbolab.data import load_data
from elbolab.diffusion import Schedule, time_grid
from elbolab.diffusion.forward import posterior_coefficients, posterior_log_variance
from elbolab.diffusion.samplers import grid_steps
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.errors import ConfigError
from elbolab.experiments.compare import (
    DIGITS_STEPS,
    CompareConfig,
    budgeted_run,
    compare_evaluation,
    estimated_seconds,
    preset_for,
    with_preset,
)
from elbolab.registry import model_classes
from elbolab.train.budget import Budget
from elbolab.train.config import TrainConfig


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_grid_steps_hold_the_coefficients_of_each_step(name):
    schedule = Schedule(name, 100)
    grid = time_grid(100, 7)
    steps = grid_steps(grid, schedule)
    times = grid.tolist()
    assert [(st.t, st.s) for st in steps] == list(itertools.pairwise(times))
    assert steps[-1].s == 0 and all(st.s > 0 for st in steps[:-1])
    for st in steps[:-1]:
        lam_t, lam_s = schedule.log_snr(st.t), schedule.log_snr(st.s)
        a, b = posterior_coefficients(lam_t, lam_s)
        expected = (
            alpha(lam_t),
            sigma(lam_t),
            alpha(lam_s),
            sigma(lam_s),
            a,
            b,
            posterior_log_variance(lam_t, lam_s),
            0.5 * (lam_s - lam_t),
        )
        got = (st.alpha_t, st.sigma_t, st.alpha_s, st.sigma_s, st.a, st.b, st.log_var, st.h)
        assert got == pytest.approx([v.item() for v in expected], rel=1e-10)


def _train_flops(model, side: int) -> float:
    """Counted FLOPs of one training step (loss, backward) per image."""
    x = torch.rand(2, 1, side, side) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        model.loss(x, 0, 100).mean().backward()
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("kind", ["vae", "diffusion"])
def test_compare_sizes_28px_models_for_a_cpu_at_a_fraction_of_the_gpus_flops(kind):
    cfg_cls, model_cls = model_classes(kind)
    cpu, gpu = (model_cls(cfg_cls.sized_for(28, device), (1, 28, 28), 256) for device in ("cpu", "cuda"))
    assert _train_flops(cpu, 28) < 0.4 * _train_flops(gpu, 28)
    digits = model_cls(cfg_cls.sized_for(8, "cuda"), (1, 8, 8), 17)  # small images: one size on any device
    assert type(digits.config) is type(cpu.config) and digits.config == cfg_cls.sized_for(8, "cpu")


def test_compare_presets_fill_only_what_the_user_left_open():
    big_cpu = with_preset(CompareConfig(device="cpu"), 28)
    assert big_cpu.budget == preset_for(28, "cpu").budget and big_cpu.evaluation.n_eval == 2000
    assert max(big_cpu.steps) <= 50 and with_preset(CompareConfig(device="cpu"), 8).steps == DIGITS_STEPS
    mine = with_preset(
        CompareConfig(device="cpu", budget=7.0, batch_size=16, steps=(1, 3), evaluation=compare_evaluation(n_eval=99)),
        28,
    )
    assert (mine.budget, mine.batch_size, mine.steps, mine.evaluation.n_eval) == (Budget(7.0, "s"), 16, (1, 3), 99)
    run = budgeted_run("diffusion", mine, load_data("digits", "test"), mine.budget)
    assert run.train.batch_size == 16 and run.train.max_seconds == 7.0 and run.train.lr == 2e-3
    # digits train every model at the preset's learning rate; one the user gives wins
    digits_cfg = with_preset(CompareConfig(device="cpu"), 8)
    test = load_data("digits", "test")
    assert {budgeted_run(k, digits_cfg, test, 60.0).train.lr for k in ("vae", "diffusion")} == {3e-3}
    assert budgeted_run("vae", with_preset(CompareConfig(device="cpu", lr=1e-4), 8), test, 60.0).train.lr == 1e-4
    digits = estimated_seconds(CompareConfig(device="cpu"), 8)
    assert estimated_seconds(CompareConfig(device="cpu", seeds=3), 8) == pytest.approx(3 * digits)
    assert estimated_seconds(CompareConfig(device="cpu"), 28) > digits


def test_train_config_checks_accumulation_and_precision():
    assert TrainConfig(grad_accum=4, precision="fp16").grad_accum == 4
    with pytest.raises(ConfigError, match="grad_accum"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")  # type: ignore[arg-type]


def test_channels_last_training_follows_the_same_curve(tmp_path):
    import json

    from elbolab.train.api import train_run

    settings = {
        "model.unet.preset": "tiny",
        "model.T": "50",
        "train.batch_size": "8",
        "train.eval_every": "0",
        "train.eval_n": "8",
    }
    curves = []
    for flag in ("false", "true"):
        train_run(
            "diffusion",
            "digits",
            tmp_path / flag,
            overrides={**settings, "train.channels_last": flag},
            steps=2,
            progress=False,
        )
        lines = (tmp_path / flag / "log.jsonl").read_text().splitlines()
        curves.append([json.loads(line)["loss"] for line in lines if line.strip()])
    assert len(curves[0]) == 2
    assert curves[1] == pytest.approx(curves[0], rel=1e-4)
