"""Named weightings w(λ) of the continuous-time diffusion loss: "vlb" (alias "elbo") is the bound itself, its
diffusion part exactly the bound's integrand at the same t and ε; the others reweight that integrand by w(λ_t),
positive and finite wherever a schedule goes; an unknown name is a one-line error; the run says which."""

import json
import math

import pytest
import torch
from test_cli_continuous import TINY
from test_cli_diffusion import _one_thread  # noqa: F401  (one torch thread, autouse)

from elbolab.bounds import nats_to_bpd
from elbolab.diffusion import DiffusionConfig, DiffusionModel, continuous
from elbolab.diffusion.bound import prior_term
from elbolab.diffusion.weighting import WEIGHTINGS, edm_weight, sigmoid_weight, weight
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig


def tiny_continuous(loss: str) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(
        DiffusionConfig(unet=UNetConfig(preset="tiny"), time="continuous", T=50, loss=loss), (1, 8, 8), 17
    )


def digits(n: int) -> torch.Tensor:
    from elbolab.data import load_data

    return load_data("digits", "test").model_range(slice(0, n))


def _draws(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The t, ε and ε_0 a continuous-time loss draws from a generator seeded `seed` (its order of draws)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand((), generator=g, dtype=torch.float64)
    t = (u + torch.arange(x.shape[0], dtype=torch.float64) / x.shape[0]) % 1.0
    eps, eps_0 = torch.randn((2, *x.shape), generator=g, dtype=torch.float64)
    return t, eps, eps_0


@torch.no_grad()
def test_the_elbo_weighting_is_the_bound_and_its_diffusion_part_the_bounds_integrand_at_that_t():
    x = digits(6).double()
    model = tiny_continuous("elbo")
    assert model.config.loss == "vlb"  # "elbo" is the bound's other name
    chain, D = model.diffusion, 64
    loss = model.loss(x, generator=torch.Generator().manual_seed(3)).double()
    t, eps, eps_0 = _draws(x, 3)
    denoiser = chain.denoiser()
    integrand = continuous.diffusion_integrand(
        denoiser,
        x,
        t,
        eps,
        chain.schedule,
    )
    rest = prior_term(x, chain.schedule) + continuous.reconstruction_term(x, chain.schedule, 17, eps_0)
    torch.testing.assert_close(loss, nats_to_bpd(rest + integrand, D).float().double())
    # and the bound's diffusion term is that integrand's mean over t: the loss's mean over many draws
    # of t estimates the elbo's diffusion term (same network, same images)


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_a_named_weighting_reweights_the_bounds_integrand_by_w_of_lambda(name):
    x = digits(6).double()
    model = tiny_continuous(name)
    chain, D = model.diffusion, 64
    loss = model.loss(x, generator=torch.Generator().manual_seed(4)).double()
    t, eps, _ = _draws(x, 4)
    q = torch.ones(())  # t's density: uniform, but EDM's log-normal draw of σ/α for "edm", its weight w/q
    if name == "edm":
        t, q, _ = chain.edm_draw(t)
    denoiser = chain.denoiser()
    integrand = continuous.diffusion_integrand(
        denoiser,
        x,
        t,
        eps,
        chain.schedule,
    )
    w = weight(name, chain.schedule.log_snr(t))
    torch.testing.assert_close(loss, nats_to_bpd(w / q * integrand, D).float().double())
    assert name in model.objective and "Kingma & Gao" in model.objective


def test_the_sigmoid_and_edm_weightings_are_the_papers_formulas():
    lam = torch.tensor([-10.0, 0.0, 2.0, 2.4, 10.0], dtype=torch.float64)
    torch.testing.assert_close(sigmoid_weight(lam), 1 / (1 + torch.exp(lam - 2.0)))
    assert sigmoid_weight(torch.tensor(2.0)).item() == pytest.approx(0.5)  # its midpoint is b
    # EDM: the density of λ = −2 ln σ, ln σ ~ N(−1.2, 1.2²), times the loss weight (σ² + σ_d²)/(σ σ_d)² · σ²
    sigma = torch.exp(-lam / 2)
    log_sigma_density = torch.exp(-0.5 * ((torch.log(sigma) + 1.2) / 1.2) ** 2) / (1.2 * math.sqrt(2 * math.pi))
    edm = log_sigma_density / 2 * (sigma**2 + 0.25) / 0.25  # dλ = 2 d ln σ
    torch.testing.assert_close(edm_weight(lam), edm)


@torch.no_grad()
def test_the_sigmoid_bias_is_a_config_key_that_moves_the_weight_and_is_named():
    x = digits(6).double()
    losses = {}
    for bias in (-3.0, 2.0, 5.0):
        torch.manual_seed(0)
        model = DiffusionModel(
            DiffusionConfig(unet=UNetConfig(preset="tiny"), time="continuous", T=50, loss="sigmoid", sigmoid_bias=bias),
            (1, 8, 8),
            17,
        )
        losses[bias] = model.loss(x, generator=torch.Generator().manual_seed(4)).double()
        t, eps, _ = _draws(x, 4)
        denoiser = model.diffusion.denoiser()
        integrand = continuous.diffusion_integrand(
            denoiser,
            x,
            t,
            eps,
            model.diffusion.schedule,
        )
        w = torch.sigmoid(bias - model.diffusion.schedule.log_snr(t))
        torch.testing.assert_close(losses[bias], nats_to_bpd(w * integrand, 64).float().double())
        assert f"sigmoid({bias:g} − λ)" in model.objective
    # a larger b keeps more of the high-SNR end, where w < 1: every term grows with b
    assert (losses[-3.0] < losses[2.0]).all() and (losses[2.0] < losses[5.0]).all()
    with pytest.raises(ConfigError, match="sigmoid_bias"):
        DiffusionConfig(time="continuous", loss="sigmoid", sigmoid_bias=float("nan"))


def test_every_weighting_is_positive_and_finite_over_the_schedules_range():
    for schedule in ("linear", "cosine"):
        chain = DiffusionModel(
            DiffusionConfig(unet=UNetConfig(preset="tiny"), time="continuous", schedule=schedule), (1, 8, 8), 17
        ).diffusion
        lam = chain.schedule.log_snr(torch.linspace(0, 1, 1001, dtype=torch.float64)).detach()
        for name in ("vlb", *WEIGHTINGS):
            w = weight(name, lam)
            assert torch.isfinite(w).all() and (w > 0).all(), (schedule, name)
    wide = torch.linspace(-30, 30, 601, dtype=torch.float64)
    assert all(torch.isfinite(f(wide)).all() and (f(wide) > 0).all() for f in WEIGHTINGS.values())


def test_an_unknown_weighting_is_a_one_line_error(run_cli, tmp_path):
    with pytest.raises(ConfigError, match="unknown loss 'focal'"):
        DiffusionConfig(time="continuous", loss="focal")
    with pytest.raises(ConfigError, match="unknown loss weighting 'focal'"):
        weight("focal", torch.zeros(2))
    with pytest.raises(ConfigError, match="continuous time"):
        DiffusionConfig(loss="sigmoid")  # the discrete chain has no w(λ) weighting
    code, _, err = run_cli(
        "train",
        "diffusion",
        "--data",
        "digits",
        "--out",
        tmp_path / "r",
        "--steps",
        "1",
        "--quiet",
        *TINY,
        "--set",
        "model.loss=focal",
    )
    assert code != 0 and "model.loss" in err and "focal" in err and len(err.strip().splitlines()) == 1, err


def test_the_run_and_its_eval_say_which_weighting_trained_it(run_cli, tmp_path):
    run = tmp_path / "sigmoid"
    code, _, err = run_cli(
        "train",
        "diffusion",
        "--data",
        "digits",
        "--out",
        run,
        "--steps",
        "3",
        "--quiet",
        *TINY,
        "--set",
        "model.loss=sigmoid",
    )
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["model"]["loss"] == "sigmoid"
    assert "sigmoid(2 − λ)" in json.loads((run / "metrics.json").read_text())["objective"]
    code, out, err = run_cli("eval", run, "--json", "--only-bound", "--n", "8")
    assert code == 0, err
    assert "sigmoid(2 − λ)" in json.loads(out)["objective"]
