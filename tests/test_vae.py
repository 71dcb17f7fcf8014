"""The VAE's bound against a linear-Gaussian oracle whose log p(x) is exact, and the model's behaviour."""

import math

import pytest
import torch

from elbolab.bounds import Estimator, mean_ci95
from elbolab.likelihoods import normal_log_prob
from elbolab.vae import VAE, VAEConfig, elbo_terms, free_bits_kl, iwae_bound

D, d, SIGMA = 6, 3, 0.5


@pytest.fixture
def oracle():
    """x = W z + b + σ ε with orthogonal columns in W, so the exact posterior is diagonal."""
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
    scales = torch.tensor([2.0, 1.0, 0.4], dtype=torch.float64)
    w, b = q * scales, torch.randn(D, generator=g, dtype=torch.float64)
    z = torch.randn(64, d, generator=g, dtype=torch.float64)
    x = z @ w.T + b + SIGMA * torch.randn(64, D, generator=g, dtype=torch.float64)
    cov = w @ w.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)
    log_px = torch.distributions.MultivariateNormal(b, cov).log_prob(x)
    post_var = 1.0 / (1.0 + scales**2 / SIGMA**2)
    post_mean = ((x - b) @ w / SIGMA**2) * post_var

    def log_lik(zs, xs=x):
        return normal_log_prob(xs, zs @ w.T + b, 2 * math.log(SIGMA)).sum(1)

    return x, log_px, post_mean, post_var.log().expand_as(post_mean), log_lik


def test_with_the_exact_posterior_the_elbo_equals_log_px(oracle):
    x, log_px, mean, logvar, log_lik = oracle
    # log p(x,z) − log q(z|x) is the constant log p(x) at every z when q is the true posterior
    recon, kl = elbo_terms(mean, logvar, log_lik, samples=1, kl="sampled")
    assert torch.allclose(-(recon + kl), log_px, atol=1e-4 * D)
    # the analytic-KL estimator agrees in expectation
    reps = 20_000
    recon, kl = elbo_terms(mean.repeat(reps, 1), logvar.repeat(reps, 1), lambda z: log_lik(z, x.repeat(reps, 1)))
    estimate, half_width = mean_ci95(-(recon + kl) - log_px.repeat(reps))
    assert abs(estimate) < 1.5 * half_width  # ≈ 3 standard errors
    assert half_width < 1e-3 * D  # the check has the power to see a 1e-3 nats/dim error


def test_any_other_encoder_gives_a_lower_bound(oracle):
    _x, log_px, mean, logvar, log_lik = oracle
    g = torch.Generator().manual_seed(5)
    for shift, log_scale in [(0.3, 0.0), (0.0, 1.0), (-1.0, -1.0)]:
        wrong_mean = mean + shift * torch.randn(mean.shape, generator=g, dtype=torch.float64)
        wrong_logvar = logvar + log_scale
        recon, kl = elbo_terms(wrong_mean, wrong_logvar, log_lik, samples=4000)
        elbo = -(recon + kl)
        assert (elbo <= log_px + 1e-2).all()
        assert (log_px - elbo).mean() > 1e-2


def test_iwae_rises_with_k_towards_log_px(oracle):
    x, log_px, mean, logvar, log_lik = oracle
    worse_mean, worse_logvar = mean * 0.7, logvar + 0.7
    repeats = 200  # average the estimator over independent draws to see its expectation
    xs = x.repeat(repeats, 1)
    big_mean, big_logvar = worse_mean.repeat(repeats, 1), worse_logvar.repeat(repeats, 1)

    def log_lik_rep(zs):
        return log_lik(zs, xs)

    gaps = []
    for k in (1, 10, 100):
        bound = -iwae_bound(big_mean, big_logvar, log_lik_rep, k).view(repeats, -1).mean(0)
        gaps.append((log_px - bound).mean().item())
    assert gaps[0] > gaps[1] > gaps[2] > -1e-3
    assert gaps[2] < 0.25 * gaps[0]


def test_free_bits_hold_each_dimension_at_lambda():
    kl = torch.tensor([[0.01, 2.0], [0.03, 3.0]])
    assert torch.allclose(free_bits_kl(kl, 0.5), torch.tensor([2.5, 3.5]))
    assert torch.allclose(free_bits_kl(kl, 0.0), kl.sum(1))


@pytest.mark.parametrize("latent", ["flat", "spatial"])
@pytest.mark.parametrize("likelihood", ["logistic", "gaussian"])
def test_vae_contract_on_digit_shaped_input(latent, likelihood):
    model = VAE(VAEConfig(latent=latent, likelihood=likelihood, net="tiny"), (1, 8, 8), 17)
    x = torch.randint(0, 17, (5, 1, 8, 8)).float() / 8 - 1
    bound = model.elbo(x)
    assert set(bound.terms) == {"reconstruction", "kl"} and bound.total.shape == (5,)
    assert (bound.terms["kl"] >= 0).all() and (bound.terms["reconstruction"] > 0).all()
    model.loss(x).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.uint8 and s.shape == (3, 1, 8, 8) and s.max() <= 16
    assert model.decode(model.encode(x)).shape == (5, 1, 8, 8)
    assert model.elbo(x, Estimator("iwae", 20)).terms["iwae"].shape == (5,)


def test_bernoulli_vae_on_binary_data_and_colour_32px():
    binary = VAE(VAEConfig(likelihood="bernoulli", net="tiny"), (1, 28, 28), 2)
    x = (torch.rand(2, 1, 28, 28) > 0.5).float() * 2 - 1
    assert torch.isfinite(binary.elbo(x).total).all()
    colour = VAE(VAEConfig(net="tiny", latent="spatial"), (3, 32, 32), 256)
    assert colour.encode(torch.zeros(2, 3, 32, 32)).shape == (2, 4, 8, 8)


def test_kl_warmup_scales_beta():
    model = VAE(VAEConfig(net="tiny", beta=2.0, kl_warmup_steps=100), (1, 8, 8), 17)
    assert model.beta_at(25) == pytest.approx(0.5)
    assert model.beta_at(1000) == pytest.approx(2.0)


def test_wrong_shape_and_nan_input_are_refused():
    from elbolab.errors import DataError

    model = VAE(VAEConfig(net="tiny"), (1, 8, 8), 17)
    with pytest.raises(DataError, match="shape"):
        model.elbo(torch.zeros(2, 1, 28, 28))
    with pytest.raises(DataError, match="NaN"):
        model.elbo(torch.full((2, 1, 8, 8), float("nan")))


@pytest.mark.parametrize("shape, levels", [((1, 8, 8), 17), ((1, 28, 28), 256), ((3, 32, 32), 256)])
def test_the_same_size_vae_has_a_latent_of_d_values(shape, levels):
    model = VAE(VAEConfig(latent="full", net="tiny"), shape, levels)
    d = math.prod(shape)
    x = torch.rand(2, *shape) * 2 - 1
    z = model.encode(x)
    assert math.prod(z.shape[1:]) == d == math.prod(model.latent_shape)
    design = model.capabilities.design
    assert design.latent_fraction == 1.0 and design.latent == "full" and design.encoder_steps == 1
    bound = model.elbo(x)
    assert set(bound.terms) == {"reconstruction", "kl"} and torch.isfinite(bound.total).all()
    assert model.decode(z).shape == (2, *shape)
    # the bottleneck VAE's latent is smaller than x
    assert VAE(VAEConfig(net="tiny"), shape, levels).capabilities.design.latent == "bottleneck"


@pytest.mark.parametrize("likelihood", ["logistic", "gaussian"])
def test_the_same_size_vaes_decoder_is_a_probability_mass_over_the_levels(likelihood):
    model = VAE(VAEConfig(latent="full", likelihood=likelihood, net="tiny"), (1, 8, 8), 17)
    g = torch.Generator().manual_seed(0)
    params = model.decoder_params(torch.randn((3, *model.latent_shape), generator=g))
    mass = torch.zeros(3, 1, 8, 8, dtype=torch.float64)
    for k in range(17):  # every pixel at level k, x_k = 2k/16 − 1
        x_k = torch.full((3, 1, 8, 8), 2 * k / 16 - 1)
        mass += model.likelihood.log_prob(x_k, params).double().exp()
    torch.testing.assert_close(mass, torch.ones_like(mass), rtol=0, atol=1e-6)


def test_the_same_size_vae_information_counts_every_latent_value():
    from elbolab.data import load_data

    model = VAE(VAEConfig(latent="full", net="tiny"), (1, 8, 8), 17)
    info = model.information(load_data("digits", "test"), n=20)
    assert info.latent.latent_dims == 64 and len(info.latent.kl_per_dim_nats) == 64
    assert 0 <= info.latent.active_units <= 64 and info.latent.rate_nats > 0


@pytest.mark.parametrize(
    "key, value", [("latent_channels", "0"), ("latent_dim", "0"), ("beta", "-1"), ("latent", "huge")]
)
def test_bad_vae_settings_are_one_line_errors_naming_the_key(key, value):
    from elbolab.config import with_overrides
    from elbolab.errors import ConfigError

    with pytest.raises(ConfigError, match=f"model.{key}") as exc:
        with_overrides(VAEConfig(), {key: value}, "model.")
    assert "\n" not in str(exc.value)


def test_the_same_size_vae_through_the_command_line(run_cli, tmp_path):
    import json

    run = tmp_path / "full"
    common = ("--set", "model.latent=full", "--set", "model.net=tiny", "--set", "train.threads=1", "--quiet")
    code, out, err = run_cli("train", "vae", "--data", "digits", "--out", run, "--steps", "20", *common)
    assert code == 0 and "step 20" in out, err
    code, out, err = run_cli("eval", run, "--json", "--only-bound", "--n", "64")
    nats = json.loads(out)["nats"]
    assert code == 0 and set(nats["terms"]) == {"reconstruction", "kl"}, err
    assert nats["total"] == pytest.approx(sum(nats["terms"].values()), rel=1e-6)
    assert run_cli("sample", run, "--n", "4", "--out", tmp_path / "s.png")[0] == 0
    assert run_cli("interpolate", run, "--out", tmp_path / "i.png", "--pairs", "2", "--frames", "3")[0] == 0
    code, out, err = run_cli("train", "vae", "--out", run, "--resume", "--steps", "25", "--quiet")
    assert code == 0 and "step 25" in out, err
