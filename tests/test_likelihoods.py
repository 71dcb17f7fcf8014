"""Likelihood identities: KL(p‖p) = 0, closed form = Monte Carlo, every discretised mass sums to 1."""

import math

import pytest
import torch

from elbolab.bounds import Bound, log_mean_exp, mean_ci95, nats_to_bpd
from elbolab.likelihoods import (
    Bernoulli,
    DiscretizedGaussian,
    DiscretizedLogistic,
    bernoulli_log_prob,
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
    normal_kl,
    normal_log_prob,
    quantize,
)

DISCRETISED = [discretized_gaussian_log_prob, discretized_logistic_log_prob]


def test_kl_of_a_gaussian_with_itself_is_zero():
    mean, logvar = torch.randn(100, dtype=torch.float64), torch.randn(100, dtype=torch.float64)
    assert torch.allclose(normal_kl(mean, logvar, mean, logvar), torch.zeros(100, dtype=torch.float64), atol=1e-12)


def test_closed_form_kl_matches_monte_carlo():
    m1, lv1, m2, lv2 = 0.7, math.log(0.5), -0.3, math.log(2.0)
    g = torch.Generator().manual_seed(1)
    z = m1 + math.exp(0.5 * lv1) * torch.randn(1_000_000, generator=g, dtype=torch.float64)
    log_ratio = normal_log_prob(z, m1, lv1) - normal_log_prob(z, m2, lv2)
    estimate, half_width = mean_ci95(log_ratio)
    exact = normal_kl(torch.tensor(m1, dtype=torch.float64), torch.tensor(lv1, dtype=torch.float64), m2, lv2).item()
    assert abs(estimate - exact) < 2 * half_width  # 2 × 1.96 σ: fails far less than once in 10,000 runs
    assert exact > 0


@pytest.mark.parametrize("log_prob", DISCRETISED)
@pytest.mark.parametrize("levels", [2, 17, 256])
@pytest.mark.parametrize("mean", [-40.0, -1.0, -0.37, 0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("log_scale", [-25.0, -8.0, -2.0, 0.0, 4.0, 12.0])
def test_discretised_mass_sums_to_one_over_the_levels(log_prob, levels, mean, log_scale):
    x = torch.linspace(-1, 1, levels, dtype=torch.float64)
    lp = log_prob(x, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64), levels)
    assert torch.isfinite(lp).all()
    assert abs(lp.exp().sum().item() - 1.0) < 1e-5


@pytest.mark.parametrize("log_prob", DISCRETISED)
def test_tails_are_finite_with_finite_gradients(log_prob):
    levels = 256
    x = torch.tensor([-1.0, 1.0, -1.0, 1.0, 0.0, 2 / 255 - 1], dtype=torch.float32)
    mean = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.9, -1.0], requires_grad=True)
    log_scale = torch.full((6,), -10.0, requires_grad=True)
    lp = log_prob(x, mean, log_scale, levels)
    assert torch.isfinite(lp).all() and (lp <= 0).all()
    lp.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()
    # the exact bin at a tiny scale has probability ≈ 1
    assert lp[2].item() > -1e-6 and lp[3].item() > -1e-6


def test_discretised_gaussian_matches_the_normal_cdf_in_the_interior():
    levels, mean, scale = 17, 0.1, 0.3
    x = torch.linspace(-1, 1, levels, dtype=torch.float64)
    h = 1 / (levels - 1)
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), scale)
    expected = (normal.cdf(x + h) - normal.cdf(x - h)).log()
    expected[0], expected[-1] = normal.cdf(x[0] + h).log(), (1 - normal.cdf(x[-1] - h)).log()
    got = discretized_gaussian_log_prob(
        x, torch.tensor(mean, dtype=torch.float64), torch.tensor(math.log(scale), dtype=torch.float64), levels
    )
    assert torch.allclose(got, expected, atol=1e-10)


def test_bernoulli_sums_to_one():
    logits = torch.tensor([-30.0, -2.0, 0.0, 5.0, 30.0])
    total = (
        bernoulli_log_prob(torch.full_like(logits, -1.0), logits).exp()
        + bernoulli_log_prob(torch.ones_like(logits), logits).exp()
    )
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


@pytest.mark.parametrize("cls", [DiscretizedLogistic, DiscretizedGaussian, Bernoulli])
def test_pixel_decoders_sample_onto_the_levels(cls):
    levels = 2 if cls is Bernoulli else 17
    lik = cls(levels=levels)
    params = torch.randn(4, lik.params_per_channel, 8, 8)
    g = torch.Generator().manual_seed(0)
    draw = lik.sample(params, g)
    assert torch.equal(draw, quantize(draw, levels))
    assert torch.isfinite(lik.log_prob(draw, params)).all()


def test_log_mean_exp_matches_the_naive_formula_and_survives_large_values():
    x = torch.randn(5, 7, dtype=torch.float64)
    assert torch.allclose(log_mean_exp(x, 0), x.exp().mean(0).log())
    assert torch.isfinite(log_mean_exp(x + 1e4, 1)).all()


def test_bound_total_and_bits_per_dim():
    b = Bound({"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0, 4.0])}, dims=4)
    assert torch.equal(b.total, torch.tensor([4.0, 6.0]))
    assert torch.allclose(b.bits_per_dim(), torch.tensor([4.0, 6.0]) / (4 * math.log(2)))
    assert nats_to_bpd(4 * math.log(2), 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        Bound({"a": torch.zeros(2), "b": torch.zeros(3)}, dims=1)
