"""diffusers ↔ elbolab (issue 14): a saved diffusers model's bound, checked against the scheduler's own formulas;
DDIM samples equal to diffusers' DDIMScheduler; a run trained with model.net=diffusers-unet2d exported and loaded
by DDPMPipeline; and the one-line hints without diffusers or without a folder."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from elbolab.bounds import Estimator
from elbolab.data import load_data
from elbolab.diffusion.samplers import ancestral, ddim
from elbolab.diffusion.tabulated import TabulatedSchedule
from elbolab.errors import ConfigError, ElbolabError
from elbolab.interop.diffusers import chain_config, export_run, load_diffusers
from elbolab.nets.diffusers_unet import DIFFUSERS_HINT, diffusers_timestep, unet2d_layout
from elbolab.nets.unet import UNetConfig
from elbolab.train.api import train_run
from elbolab.train.run import load_run

SHAPE, LEVELS, T = (1, 8, 8), 17, 20
SCHEDULES = {
    "linear": {"beta_schedule": "linear", "beta_start": 1e-3, "beta_end": 0.3},
    "cosine": {"beta_schedule": "squaredcos_cap_v2"},
    "scaled_linear": {"beta_schedule": "scaled_linear", "beta_start": 1e-3, "beta_end": 0.2},
}


def small_unet(out_channels: int = 1, seed: int = 0) -> torch.nn.Module:
    """A random UNet2DModel for 8×8 single-channel images (elbolab's tiny layout), in eval mode."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(**unet2d_layout(UNetConfig(preset="tiny").spec(), 1, out_channels, 8)).eval()


def save_folder(path, unet, scheduler, pipeline: bool) -> None:
    """A pipeline folder (unet/, scheduler/) or one folder with both configs."""
    if pipeline:
        diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path)
    else:
        unet.save_pretrained(path)
        scheduler.save_pretrained(path)


@pytest.fixture(scope="module")
def x0():
    return load_data("digits", "test").model_range(slice(0, 3)).double()


# ---------------------------------------------------------------- the bound, independently


def float64_scheduler(scheduler):
    """The scheduler with its arrays in float64: its own betas, and ᾱ = cumprod(1 − β) recomputed from them."""
    scheduler.betas = scheduler.betas.double()
    scheduler.alphas = 1.0 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, 0)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def log_bin_mass(x, mean, log_var, levels):
    """log Φ-mass of x's bin [x − h, x + h] (edges at ±∞) under N(mean, e^log_var), taken in the far tail."""
    h, std = 1.0 / (levels - 1), torch.exp(0.5 * log_var)
    hi = torch.where(x > 1 - 1e-9, math.inf, (x + h - mean) / std)
    lo = torch.where(x < -1 + 1e-9, -math.inf, (x - h - mean) / std)
    flip = (hi + lo) > 0  # both in the upper tail: use the mirror image, Φ(−lo) − Φ(−hi)
    a, b = torch.where(flip, -lo, hi), torch.where(flip, -hi, lo)
    log_a, log_b = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return log_a + torch.log1p(-torch.exp(log_b - log_a))


def gaussian_kl(m1, v1, m2, v2):
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


@torch.no_grad()
def reference_bound(unet, scheduler, x0, eps, levels, clip):
    """−ELBO per example [B] and per step [B, T] from the scheduler's ᾱ, β and `_get_variance` (Ho et al. 2020,
    eq. 5), the UNet called with diffusers' own timestep k. The decoder L_0 takes, as elbolab does, the
    k = 1 posterior variance in place of the k = 0 one (which is 0; Nichol & Dhariwal 2021's clipping)."""
    s = float64_scheduler(scheduler)
    cfg, ac = s.config, s.alphas_cumprod
    per_step = []
    for k in range(len(ac)):
        a_t, a_prev = ac[k], (ac[k - 1] if k > 0 else s.one)
        x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps[k]
        out = unet(x_t.float(), torch.full((x0.shape[0],), k)).sample.double()
        out, v = out.chunk(2, dim=1) if cfg.variance_type == "learned_range" else (out, None)
        x0_hat = {
            "epsilon": (x_t - (1 - a_t).sqrt() * out) / a_t.sqrt(),
            "sample": out,
            "v_prediction": a_t.sqrt() * x_t - (1 - a_t).sqrt() * out,
        }[cfg.prediction_type]
        if clip:
            x0_hat = x0_hat.clamp(-1, 1)
        beta_t = 1 - a_t / a_prev
        c0, ct = a_prev.sqrt() * beta_t / (1 - a_t), (1 - beta_t).sqrt() * (1 - a_prev) / (1 - a_t)
        var = s._get_variance(max(k, 1), predicted_variance=v)
        if cfg.variance_type == "learned_range":  # a log-variance; at k = 0 between log β_1 and log β̃ of k = 1
            var = torch.exp(
                var
                if k > 0
                else (v + 1) / 2 * torch.log(beta_t)
                + (1 - v) / 2 * torch.log(s._get_variance(1, variance_type="fixed_small"))
            )
        elif cfg.variance_type == "fixed_large" and k == 0:
            var = beta_t
        var = torch.as_tensor(var, dtype=torch.float64).expand_as(x0)
        if k == 0:
            term = -log_bin_mass(x0, x0_hat, torch.log(var), levels)
        else:
            term = gaussian_kl(
                c0 * x0 + ct * x_t, s._get_variance(k, variance_type="fixed_small"), c0 * x0_hat + ct * x_t, var
            )
        per_step.append(term.flatten(1).sum(1))
    a_T = ac[-1]
    prior = gaussian_kl(a_T.sqrt() * x0, 1 - a_T, torch.zeros_like(x0), torch.ones(())).flatten(1).sum(1)
    per_step = torch.stack(per_step, 1)
    return prior + per_step.sum(1), per_step


@pytest.mark.parametrize(
    "prediction, variance, schedule, clip, pipeline",
    [
        ("epsilon", "fixed_small", "linear", False, True),
        ("sample", "fixed_small", "cosine", False, False),
        ("v_prediction", "fixed_large", "scaled_linear", False, True),
        ("epsilon", "learned_range", "linear", False, False),
        ("epsilon", "fixed_small", "cosine", True, True),
    ],
)
def test_the_bound_of_a_saved_diffusers_model_is_the_schedulers_own(
    tmp_path, x0, prediction, variance, schedule, clip, pipeline
):
    learned = variance == "learned_range"
    unet = small_unet(2 if learned else 1)
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=T,
        prediction_type=prediction,
        variance_type=variance,
        clip_sample=clip,
        **SCHEDULES[schedule],
    )
    save_folder(tmp_path, unet, scheduler, pipeline)
    model = load_diffusers(tmp_path, SHAPE, LEVELS)
    assert model.config.parameterisation == {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}[prediction]
    assert (
        model.clip == clip
        and model.config.variance
        == {"fixed_small": "small", "fixed_large": "large", "learned_range": "learned"}[variance]
    )

    bound = model.elbo(x0.float(), Estimator("exact"), torch.Generator().manual_seed(7))
    # the exact bound draws one ε per (step, example), steps outermost, in one float64 call
    eps = torch.randn((T * 3, *SHAPE), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    total, per_step = reference_bound(
        unet, diffusers.DDPMScheduler.from_config(scheduler.config), x0, eps.view(T, 3, *SHAPE), LEVELS, clip
    )
    torch.testing.assert_close(bound.total, total, rtol=1e-6, atol=0)
    torch.testing.assert_close(bound.per_step, per_step, rtol=1e-5, atol=1e-6)
    assert set(bound.terms) == {"prior", "diffusion", "reconstruction"}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_the_tabulated_schedule_is_the_schedulers_alphas_cumprod(schedule):
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=50, **SCHEDULES[schedule])
    table = TabulatedSchedule.from_betas(scheduler.betas)
    i = torch.arange(1, 51)
    found = table.alpha_bar(table.times(i))
    torch.testing.assert_close(found, torch.cumprod(1 - scheduler.betas.double(), 0), rtol=1e-12, atol=0)
    torch.testing.assert_close(found, scheduler.alphas_cumprod.double(), rtol=1e-6, atol=0)  # its float32 product
    torch.testing.assert_close(table.betas(), scheduler.betas.double(), rtol=1e-9, atol=0)
    assert table.log_snr(0.0).item() == math.inf and table.T == 50


def test_the_tabulated_schedule_refuses_a_table_that_is_not_a_chain():
    with pytest.raises(ConfigError, match="β_i in"):
        TabulatedSchedule.from_betas(torch.tensor([0.1, 0.0, 0.2]))


def test_diffusers_index_k_is_elbolab_step_k_plus_one():
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    assert torch.equal(diffusers_timestep(t, T), torch.arange(T, dtype=torch.float64))
    assert torch.equal(diffusers_timestep(t.float(), T), torch.arange(T, dtype=torch.float64))  # float32 t snaps
    assert diffusers_timestep(torch.tensor([0.525], dtype=torch.float64), T).item() == pytest.approx(9.5)


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("prediction, clip", [("epsilon", False), ("v_prediction", False), ("epsilon", True)])
def test_elbolab_ddim_equals_diffusers_ddim_scheduler_on_the_same_grid(tmp_path, prediction, clip):
    unet = small_unet()
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=T,
        prediction_type=prediction,
        clip_sample=clip,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        **SCHEDULES["linear"],
    )
    save_folder(tmp_path, unet, scheduler, pipeline=False)
    model = load_diffusers(tmp_path, SHAPE, LEVELS)
    x_T = torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(3))

    scheduler.set_timesteps(5)
    x = x_T
    with torch.no_grad():
        for k in scheduler.timesteps:  # elbolab's clipped denoiser re-derives ε̂ from the clipped x̂_0
            x = scheduler.step(unet(x, k).sample, k, x, eta=0.0, use_clipped_model_output=clip).prev_sample
        grid = torch.tensor([(int(k) + 1) / T for k in scheduler.timesteps] + [0.0], dtype=torch.float64)
        denoiser = model.diffusion.denoiser(model.clip)
        ours = ddim(
            denoiser,
            x_T,
            grid,
            model.diffusion.schedule,
        )
    assert scheduler.timesteps.tolist() == [19, 15, 11, 7, 3]
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(
        ours,
        ddim(
            denoiser,
            x_T,
            grid[1:],
            model.diffusion.schedule,
        ),
        atol=1e-3,
    )  # the grid matters


def test_a_loaded_model_samples_and_refuses_what_it_cannot_map(tmp_path):
    unet = small_unet()
    save_folder(tmp_path / "ok", unet, diffusers.DDPMScheduler(num_train_timesteps=T), pipeline=True)
    model = load_diffusers(tmp_path / "ok", SHAPE, LEVELS)
    images = model.sample(2, torch.Generator().manual_seed(0), sampler="ddim", steps=4)
    assert images.dtype == torch.uint8 and images.shape == (2, *SHAPE)
    with pytest.raises(Exception, match="the UNet takes 1×8×8 images, the data are 3×8×8"):
        load_diffusers(tmp_path / "ok", (3, 8, 8), LEVELS)
    save_folder(tmp_path / "thr", unet, diffusers.DDPMScheduler(num_train_timesteps=T, thresholding=True), True)
    with pytest.raises(Exception, match="dynamic thresholding"):
        load_diffusers(tmp_path / "thr", SHAPE, LEVELS)
    with pytest.raises(ElbolabError, match="no num_train_timesteps"):
        chain_config({"prediction_type": "epsilon"})


# ---------------------------------------------------------------- a diffusers network trained here, exported


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "diffusion"
    overrides = {
        "model.net": "diffusers-unet2d",
        "model.unet.preset": "tiny",
        "model.T": str(T),
        "model.parameterisation": "v",
        "train.batch_size": "8",
        "train.eval_every": "0",
        "train.eval_n": "8",
        "train.checkpoint_every": "100",
    }
    train_run("diffusion", "digits", run, overrides=overrides, steps=3, progress=False)
    return run


def test_a_run_with_a_diffusers_unet_exports_and_ddpm_pipeline_takes_the_same_first_step(trained_run, tmp_path):
    _, model = load_run(trained_run, device="cpu")
    assert type(model.diffusion.net.unet).__name__ == "UNet2DModel"
    out = export_run(trained_run, tmp_path / "pipe")
    pipe = diffusers.DDPMPipeline.from_pretrained(out)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.clip_sample
    torch.testing.assert_close(
        pipe.scheduler.alphas_cumprod.double(),
        model.diffusion.schedule.alpha_bar(torch.arange(1, T + 1) / T),
        rtol=1e-4,
        atol=0,
    )  # float32 cumprod

    x = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(1))
    pipe.scheduler.set_timesteps(T)
    k = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        theirs = pipe.scheduler.step(pipe.unet(x, k).sample, k, x, generator=torch.Generator().manual_seed(2))
        denoiser = model.diffusion.denoiser(model.clip)
        ours = ancestral(
            denoiser,
            x,
            torch.tensor([1.0, (T - 1) / T], dtype=torch.float64),
            model.diffusion.schedule,
            generator=torch.Generator().manual_seed(2),
        )
    assert int(k) == T - 1
    torch.testing.assert_close(ours, theirs.prev_sample, rtol=1e-4, atol=1e-5)
    images = pipe(
        batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert images.shape == (2, 8, 8, 1) and ((images >= 0) & (images <= 1)).all()


def test_export_says_which_runs_cannot_be_exported_and_why(run_cli, tmp_path):
    run = tmp_path / "own-unet"
    code, _, _ = run_cli(
        "train",
        "diffusion",
        "--out",
        run,
        "--steps",
        "1",
        "--quiet",
        "--set",
        "model.T=20",
        "--set",
        "model.unet.preset=tiny",
        "--set",
        "train.eval_n=4",
        "--set",
        "train.eval_every=0",
    )
    assert code == 0
    code, _out, err = run_cli("export", run, "--diffusers", tmp_path / "out")
    assert code == 1 and not (tmp_path / "out").exists()
    assert err.strip().count("\n") == 0 and "cannot export" in err and "elbolab's own UNet" in err


# ---------------------------------------------------------------- the command line


def test_eval_diffusers_reports_the_json_of_a_run(run_cli, tmp_path):
    save_folder(tmp_path / "m", small_unet(), diffusers.DDPMScheduler(num_train_timesteps=T), pipeline=True)
    code, out, _ = run_cli(
        "eval", "--diffusers", tmp_path / "m", "--data", "digits", "--n", "4", "--exact", "--only-bound", "--json"
    )
    assert code == 0, out
    result = json.loads(out)
    assert result["model"] == "diffusers" and result["data"] == "digits" and result["n"] == 4
    assert result["estimator"] == "exact" and result["bound_network_passes_per_image"] == T
    assert set(result["bpd"]["terms"]) == {"prior", "diffusion", "reconstruction"} and result["bpd"]["ci95"] > 0
    assert math.isclose(sum(result["nats"]["terms"].values()), result["nats"]["total"], rel_tol=1e-9)


def test_a_hub_id_fails_offline_with_a_clear_message(run_cli):
    code, _, err = run_cli("eval", "--diffusers", "google/ddpm-cifar10-32", "--data", "cifar10", "--only-bound")
    assert code == 1 and "never downloads" in err and "hf download google/ddpm-cifar10-32" in err


def test_without_diffusers_each_command_gives_the_install_hint(run_cli, tmp_path, monkeypatch):
    save_folder(tmp_path / "m", small_unet(), diffusers.DDPMScheduler(num_train_timesteps=T), pipeline=True)
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    for args in (
        ("eval", "--diffusers", tmp_path / "m", "--data", "digits"),
        ("export", tmp_path, "--diffusers", tmp_path / "out"),
        ("train", "diffusion", "--out", tmp_path / "r", "--steps", "1", "--set", "model.net=diffusers-unet2d"),
    ):
        code, _, err = run_cli(*args)
        assert code == 1 and err.strip() == f"error: {DIFFUSERS_HINT}", args
