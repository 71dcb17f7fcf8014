"""Speed features: precomputed sampler coefficients, device presets, configs (the lean UNet: test_unet_presets)."""

from __future__ import annotations

import pytest

from elbolab.diffusion import Schedule, time_grid
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.forward import posterior_coefficients, posterior_log_variance
from elbolab.diffusion.samplers import grid_steps
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.errors import ConfigError
from elbolab.train.config import TrainConfig


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_grid_steps_hold_the_coefficients_of_each_step(name):
    schedule = Schedule(name, 100)
    grid = time_grid(100, 7)
    steps = grid_steps(grid, schedule)
    times = grid.tolist()
    assert [(st.t, st.s) for st in steps] == list(zip(times[:-1], times[1:]))
    assert steps[-1].s == 0 and all(st.s > 0 for st in steps[:-1])
    for st in steps[:-1]:
        lam_t, lam_s = schedule.log_snr(st.t), schedule.log_snr(st.s)
        a, b = posterior_coefficients(lam_t, lam_s)
        expected = (alpha(lam_t), sigma(lam_t), alpha(lam_s), sigma(lam_s), a, b,
                    posterior_log_variance(lam_t, lam_s), 0.5 * (lam_s - lam_t))
        got = (st.alpha_t, st.sigma_t, st.alpha_s, st.sigma_s, st.a, st.b, st.log_var, st.h)
        assert got == pytest.approx([v.item() for v in expected], rel=1e-10)


def test_compare_sizes_the_diffusion_unet_for_the_device():
    assert DiffusionConfig.sized_for(8, "cuda").unet.preset == "tiny"
    assert DiffusionConfig.sized_for(28, "cpu").unet.preset == "lean"
    assert DiffusionConfig.sized_for(28, "cuda:0").unet.preset == "small"
    assert DiffusionConfig.sized_for(32, "cuda").unet.preset == "base"


def test_train_config_checks_accumulation_and_precision():
    assert TrainConfig(grad_accum=4, precision="fp16").grad_accum == 4
    with pytest.raises(ConfigError, match="grad_accum"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")  # type: ignore[arg-type]


def test_channels_last_training_follows_the_same_curve(tmp_path):
    import json

    from elbolab.train.api import train_run

    settings = {"model.unet.preset": "tiny", "model.T": "50", "train.batch_size": "8", "train.eval_every": "0",
                "train.eval_n": "8"}
    curves = []
    for flag in ("false", "true"):
        train_run("diffusion", "digits", tmp_path / flag, overrides={**settings, "train.channels_last": flag},
                  steps=2, progress=False)
        lines = (tmp_path / flag / "log.jsonl").read_text().splitlines()
        curves.append([json.loads(line)["loss"] for line in lines if line.strip()])
    assert len(curves[0]) == 2
    assert curves[1] == pytest.approx(curves[0], rel=1e-4)
