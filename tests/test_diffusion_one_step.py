"""The one-step diffusion model (T = 1): q(x_1|x_0) = N(α_1 x_0, σ_1² I), the prior KL L_T and the decoder L_0 and
nothing else, checked against a direct computation and the Gaussian oracles; every sampler, the encoding, the
information record and the command line at T = 1; its noise level learns on the bound."""

import math

import numpy as np
import pytest
import torch
from conftest import eval_json
from test_diffusion_bound import MU, S2, log_density, optimal_eps

from elbolab.bounds import Estimator
from elbolab.data import load_data
from elbolab.diffusion import DiffusionConfig, DiffusionModel, exact_bound, mc_bound
from elbolab.diffusion.learned_schedule import OneStepSchedule
from elbolab.diffusion.reverse import Denoiser
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig

LEVELS = 17


def wobbly_eps(x_t, t):
    """A denoiser that is no oracle: nonlinear in x_t."""
    return torch.tanh(1.3 * x_t) + 0.1 * x_t**2


def one_step_model(**overrides):
    torch.manual_seed(0)
    cfg = DiffusionConfig(T=1, unet=UNetConfig(preset="tiny"), encode_steps=1, **overrides)
    return DiffusionModel(cfg, (1, 8, 8), LEVELS).eval()


def digit_images(n=8):
    return load_data("digits", "test").model_range(slice(0, n)).float()


@pytest.mark.parametrize("levels", [None, LEVELS])
def test_the_bound_is_the_prior_kl_plus_L0_by_a_direct_computation(levels):
    schedule = OneStepSchedule(0.7, learn=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, LEVELS, (5, 6), generator=g).double() * 2 / (LEVELS - 1) - 1
    eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
    bound = exact_bound(Denoiser(wobbly_eps), x, schedule, eps=eps, levels=levels)
    # directly: α_1² = sigmoid(−γ_1), σ_1² = sigmoid(γ_1); x_1 = α x + σ ε; p(x_0|x_1) = N(x̂_0, σ_1²)
    a2, s2 = 1 / (1 + math.exp(0.7)), 1 / (1 + math.exp(-0.7))
    a, s = math.sqrt(a2), math.sqrt(s2)
    x_1 = a * x + s * eps
    x0_hat = (x_1 - s * wobbly_eps(x_1, None)) / a
    prior = 0.5 * (a2 * x**2 + s2 - 1 - math.log(s2)).sum(1)
    if levels is None:
        l0 = -log_density(x, x0_hat, torch.full_like(x, s2))
    else:
        half = 1.0 / (levels - 1)
        hi = torch.where(x > 1 - half, math.inf, (x + half - x0_hat) / s)
        lo = torch.where(x < -1 + half, -math.inf, (x - half - x0_hat) / s)
        l0 = -torch.log(torch.special.ndtr(hi) - torch.special.ndtr(lo)).sum(1)
    assert torch.allclose(bound.terms["prior"], prior, rtol=1e-12)
    assert torch.allclose(bound.terms["reconstruction"], l0, rtol=1e-10)
    assert torch.equal(bound.terms["diffusion"], torch.zeros(5, dtype=torch.float64))
    assert torch.allclose(bound.total, prior + l0, rtol=1e-10)
    assert bound.per_step.shape == (5, 1)


def expected_over_eps(denoiser, x, schedule, nodes=3):
    """E_ε [L_T + L_0] per example, exact by Gauss–Hermite quadrature over a shared ε (the terms are sums over
    dimensions of polynomials of degree ≤ 2 in ε_d for a linear ε̂)."""
    u, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    return sum(
        wk * exact_bound(Denoiser(denoiser), x, schedule, eps=torch.full_like(x, uk)).total for uk, wk in zip(u, w)
    )


@pytest.mark.parametrize("gamma_1", [-3.0, 0.0, 2.5])
def test_with_the_optimal_decoder_the_bound_meets_minus_log_p_of_unit_gaussian_data(gamma_1):
    """For x_0 ~ N(0, I), q(x_1) = N(0, I) is the prior and q(x_0|x_1) = N(α_1 x_1, σ_1²) the decoder with
    ε̂ = σ_1 x_1 and variance σ_1², so E_{x_1}[L_T + L_0] = −log p(x) exactly on every example; the Monte-Carlo
    estimate agrees within its standard error."""
    schedule = OneStepSchedule(gamma_1, learn=False)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    zeros, ones = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    denoiser = optimal_eps(schedule, zeros, ones)
    target = -log_density(x, torch.zeros_like(x), torch.ones_like(x))
    assert torch.allclose(expected_over_eps(denoiser, x, schedule), target, rtol=1e-10, atol=1e-10)
    mc = mc_bound(Denoiser(denoiser), x, schedule, samples=64, generator=torch.Generator().manual_seed(3))
    z = (mc.total - target) / mc.extras["stderr"]
    assert z.abs().max() < 4.5 and z.mean().abs() < 1.5


def expected_bound_over_data(denoiser, schedule, nodes=4):
    """E_{x ~ N(MU, S2)} E_ε [L_T + L_0], exact by Gauss–Hermite quadrature over x and ε (the bound is a sum over
    dimensions of polynomials of degree ≤ 2 in (x_d, ε_d) for a linear ε̂)."""
    u, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    x = MU + S2.sqrt() * torch.from_numpy(u)[:, None]  # [nodes, 4]: node j in every dimension
    return (torch.from_numpy(w) * expected_over_eps(denoiser, x, schedule, nodes)).sum().item()


@pytest.mark.parametrize("gamma_1", [-4.0, -1.0, 1.5])
def test_on_gaussian_data_the_bound_is_never_below_minus_log_p(gamma_1):
    """E[L_T + L_0] ≥ H(p_data) = E[−log p(x)] for every decoder, and for the optimal mean the gap is at least
    KL(q(x_1) ‖ N(0, I)) (the part no decoder can close)."""
    schedule = OneStepSchedule(gamma_1, learn=False)
    entropy = 0.5 * torch.log(2 * math.pi * math.e * S2).sum().item()
    a2 = 1 / (1 + math.exp(gamma_1))
    m, v = math.sqrt(a2) * MU, a2 * S2 + (1 - a2)
    marginal_kl = 0.5 * (v + m**2 - 1 - torch.log(v)).sum().item()
    optimal = expected_bound_over_data(optimal_eps(schedule), schedule)
    assert optimal - entropy >= marginal_kl - 1e-9
    for wrong_mu in (MU + 0.3, torch.zeros(4, dtype=torch.float64)):
        worse = expected_bound_over_data(optimal_eps(schedule, mu=wrong_mu), schedule)
        assert worse >= optimal - 1e-9 and worse >= entropy


def test_the_model_bound_has_only_the_prior_and_the_decoder():
    model = one_step_model()
    x = digit_images()
    exact = model.elbo(x, Estimator("exact"))
    mc = model.elbo(x, generator=torch.Generator().manual_seed(0))
    for bound in (exact, mc):
        assert torch.equal(bound.terms["diffusion"], torch.zeros_like(bound.terms["prior"]))
        assert torch.allclose(bound.total, bound.terms["prior"] + bound.terms["reconstruction"])
    assert torch.equal(exact.terms["prior"], mc.terms["prior"])
    assert model.capabilities.default_estimator.proposal == "uniform"  # no step to draw
    assert mc.extras["passes"][0].item() == model.config.elbo_samples
    design = model.capabilities.design
    assert (design.encoder, design.encoder_steps, design.decoder_steps, design.latent) == ("fixed", 1, 1, "full")


def test_every_sampler_is_one_decoder_pass_and_the_encoding_inverts_a_step():
    model = one_step_model()
    draws = {
        name: model.sample(3, generator=torch.Generator().manual_seed(4), sampler=name, steps=1)
        for name in model.capabilities.samplers
    }
    assert all(d.shape == (3, 1, 8, 8) for d in draws.values())
    first = list(draws.values())
    assert all(torch.equal(d, first[0]) for d in first)  # each returns x̂_0 of the same x_1
    x = digit_images(4)
    z = model.encode(x)
    assert z.shape == x.shape and torch.isfinite(z).all()
    assert model.decode(z).shape == x.shape
    with pytest.raises(ConfigError, match="1 to 1"):
        model.sample(2, steps=2)


def test_the_information_record_runs_along_the_one_step():
    model = one_step_model()
    chain = model.information(load_data("digits", "test"), n=4, generator=torch.Generator().manual_seed(0)).chain
    assert chain.T == 1 and [p.step for p in chain.curve] == [0, 1]
    assert len(chain.per_step_bpd) == 1 and math.isfinite(chain.exact_bpd)


@pytest.mark.parametrize("loss", ["simple", "vlb"])
def test_the_noise_level_learns_on_the_bound_and_only_where_asked(loss):
    x = digit_images(16)
    learned = one_step_model(loss=loss).train()
    value = learned.loss(x, generator=torch.Generator().manual_seed(5))
    value.mean().backward()
    grad = learned.diffusion.schedule.gamma_1.grad
    assert grad is not None and torch.isfinite(grad) and grad.abs() > 0
    fixed = one_step_model(loss=loss, learn_endpoints=False).train()
    assert not any("gamma_1" in name for name, _ in fixed.named_parameters())
    if loss == "simple":  # following the bound leaves the objective's value as it is
        same = fixed.loss(x, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(value, same)


def test_the_one_step_recipe_trains_its_elbo_with_a_learned_noise_level():
    cfg = DiffusionConfig.one_step(8)
    assert (cfg.time, cfg.T, cfg.loss, cfg.learn_endpoints) == ("discrete", 1, "vlb", True)
    model = DiffusionModel(cfg, (1, 8, 8), LEVELS)
    assert model.capabilities.design.objective == "ELBO"
    assert model.diffusion.schedule.gamma_1.requires_grad
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = digit_images(32)
    start = model.diffusion.schedule.gamma_1.item()
    for step in range(5):
        opt.zero_grad()
        model.loss(x, generator=torch.Generator().manual_seed(step)).mean().backward()
        opt.step()
    assert model.diffusion.schedule.gamma_1.item() != start


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"T": 0}, "model.T"),
        ({"T": -3, "time": "continuous"}, "model.T"),
        ({"T": 1, "variance": "learned", "loss": "vlb"}, "model.variance"),
    ],
)
def test_bad_step_counts_are_one_line_errors_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        DiffusionConfig(**overrides)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_the_continuous_bound_takes_its_one_step_form():
    torch.manual_seed(0)
    cfg = DiffusionConfig(time="continuous", T=1, unet=UNetConfig(preset="tiny"), encode_steps=1)
    model = DiffusionModel(cfg, (1, 8, 8), LEVELS).eval()
    x = digit_images(4)
    exact = model.elbo(x, Estimator("exact", steps=1))
    assert exact.per_step.shape == (4, 1)
    assert torch.allclose(exact.total, sum(exact.terms.values()))
    mc = model.elbo(x, Estimator("mc", 8, "stratified", steps=1), generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(mc.total).all()
    assert model.sample(2, steps=1).shape == (2, 1, 8, 8)


def test_one_step_trains_samples_and_evaluates_through_the_command_line(run_cli, tmp_path):
    run = tmp_path / "one-step"
    code, _, err = run_cli(
        "train", "diffusion", "--data", "digits", "--out", run, "--steps", "30", "--quiet",
        "--set", "model.T=1", "--set", "train.threads=1", "--set", "model.unet.preset=tiny",
        "--set", "train.eval_every=0", "--set", "train.eval_n=32",
    )  # fmt: skip
    assert code == 0, err
    result = eval_json(run_cli, run, 32)
    terms = result["nats"]["terms"]
    assert terms["diffusion"] == 0.0
    assert result["nats"]["total"] == pytest.approx(sum(terms.values()), rel=1e-9)
    assert 0 < result["bpd"]["total"] < 10
    code, _, err = run_cli("sample", run, "--n", "4", "--out", tmp_path / "s.png")
    assert code == 0, err
    code, _, err = run_cli("interpolate", run, "--out", tmp_path / "i.png")
    assert code == 0, err
