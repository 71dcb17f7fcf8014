"""The schedule reproduces the published β/ᾱ; the forward process q composes and inverts by Bayes' rule."""

import math

import numpy as np
import pytest
import torch

from elbolab.diffusion.forward import posterior_coefficients, q_marginal, q_posterior, q_sample, q_step
from elbolab.diffusion.learned_schedule import LearnedSchedule, OneStepSchedule
from elbolab.diffusion.parameterisation import eps_to_x0, to_v, v_to_eps, v_to_x0, x0_and_eps, x0_to_eps
from elbolab.diffusion.schedule import (
    ContinuousSchedule,
    DiscreteSchedule,
    NoiseSchedule,
    Schedule,
    alpha,
    grid_betas,
    sigma,
    step_grid,
    time_grid,
)
from elbolab.diffusion.tabulated import TabulatedSchedule
from elbolab.errors import ConfigError


def linear_alpha_bar_reference(T):
    """Ho et al. (2020): β linear from 1e-4 to 0.02 at T = 1000 (scaled by 1000/T), ᾱ = cumprod(1 − β)."""
    betas = np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=np.float64)
    return betas, np.cumprod(1.0 - betas)


def cosine_alpha_bar_reference(T, s=0.008):
    """Nichol & Dhariwal (2021), eq. 17: ᾱ_t = f(t)/f(0), f = cos²((t/T + s)/(1 + s)·π/2), β clipped at 0.999."""
    f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    t = np.arange(T + 1, dtype=np.float64) / T
    betas = np.minimum(1 - f(t[1:]) / f(t[:-1]), 0.999)
    return betas, f(t[1:]) / f(0.0), np.cumprod(1.0 - betas)


CHOSEN = [1, 2, 10, 100, 250, 500, 750, 900, 990, 999, 1000]


def test_linear_schedule_reproduces_ho_et_al():
    betas, alpha_bar = linear_alpha_bar_reference(1000)
    sched = Schedule("linear", 1000)
    i = torch.tensor(CHOSEN)
    got = sched.alpha_bar(sched.times(i)).numpy()
    np.testing.assert_allclose(got, alpha_bar[i.numpy() - 1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got, alpha_bar[i.numpy() - 1], rtol=1e-9)  # far tighter in fact
    np.testing.assert_allclose(sched.betas().numpy(), betas, rtol=1e-9, atol=0)
    assert sched.betas()[0].item() == pytest.approx(1e-4) and sched.betas()[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize("T", [50, 200, 4000])
def test_linear_schedule_any_T(T):
    _, alpha_bar = linear_alpha_bar_reference(T)
    sched = Schedule("linear", T)
    got = sched.alpha_bar(sched.times(torch.arange(1, T + 1))).numpy()
    np.testing.assert_allclose(got, alpha_bar, rtol=1e-9, atol=1e-12)


def test_cosine_schedule_reproduces_nichol_dhariwal():
    betas, closed_form, cumprod = cosine_alpha_bar_reference(1000)
    sched = Schedule("cosine", 1000)
    i = torch.tensor(CHOSEN)
    got = sched.alpha_bar(sched.times(i)).numpy()
    np.testing.assert_allclose(got, cumprod[i.numpy() - 1], rtol=1e-9, atol=1e-6)
    # before the last step the clip is inactive and ᾱ is the cos² formula itself
    np.testing.assert_allclose(got[:-1], closed_form[i.numpy()[:-1] - 1], rtol=1e-9)
    np.testing.assert_allclose(sched.betas().numpy(), betas, rtol=1e-8, atol=1e-12)
    assert sched.betas()[-1].item() == pytest.approx(0.999)


@pytest.mark.parametrize("T", [2, 10, 37, 100])
def test_cosine_schedule_any_T(T):
    _, _, cumprod = cosine_alpha_bar_reference(T)
    sched = Schedule("cosine", T)
    got = sched.alpha_bar(sched.times(torch.arange(1, T + 1))).numpy()
    np.testing.assert_allclose(got, cumprod, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_everything_derives_from_log_snr(name):
    sched = Schedule(name, 1000)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    lam = sched.log_snr(t)
    assert lam.dtype == torch.float64 and lam[0] == math.inf
    assert (lam[1:] < lam[:-1]).all(), "λ must decrease in t"
    a, s = alpha(lam), sigma(lam)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(a), rtol=0, atol=1e-15)  # variance preserving
    torch.testing.assert_close(torch.exp(lam[1:]), a[1:] ** 2 / s[1:] ** 2)  # SNR = α²/σ²


def test_linear_schedule_refuses_T_where_beta_exceeds_one():
    with pytest.raises(ConfigError, match="T ≥ 21"):
        Schedule("linear", 10)
    with pytest.raises(ConfigError, match="unknown schedule"):
        Schedule("quadratic", 100)


def test_step_grid_spacing():
    assert step_grid(1000, 20).tolist()[:3] == [1000, 947, 895] and step_grid(1000, 20).tolist()[-2:] == [1, 0]
    assert step_grid(10).tolist() == list(range(10, -1, -1))
    assert step_grid(10, 1).tolist() == [10, 0]
    for K in (1, 2, 3, 7, 999, 1000):
        g = step_grid(1000, K)
        assert len(g) == K + 1 and g[0] == 1000 and g[-1] == 0 and (g[1:] < g[:-1]).all()
    torch.testing.assert_close(time_grid(1000, 4), step_grid(1000, 4).double() / 1000)
    with pytest.raises(ConfigError):
        step_grid(10, 11)
    with pytest.raises(ConfigError):
        step_grid(10, 0)


def test_marginal_is_the_composition_of_single_steps():
    torch.manual_seed(0)
    sched = Schedule("cosine", 1000)
    times = torch.sort(torch.rand(30, dtype=torch.float64)).values
    x_0 = torch.randn(5, 3, dtype=torch.float64)
    mean, var = x_0, torch.zeros(())
    previous = torch.zeros((), dtype=torch.float64)
    for t in times:
        lam_t, lam_s = sched.log_snr(t), sched.log_snr(previous)
        step_mean_of_one, step_var = q_step(torch.ones((), dtype=torch.float64), lam_t, lam_s)  # α_{t|s}, σ²_{t|s}
        mean, var = step_mean_of_one * mean, step_mean_of_one**2 * var + step_var
        previous = t
    want_mean, want_var = q_marginal(x_0, sched.log_snr(times[-1]))
    torch.testing.assert_close(mean, want_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(var.expand_as(want_var), want_var, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("t,s", [(0.6, 0.3), (0.02, 0.019), (0.999, 0.5)])
def test_posterior_is_bayes_rule_on_a_grid(t, s):
    sched = Schedule("linear", 1000)
    lam_t, lam_s = sched.log_snr(torch.tensor(t)), sched.log_snr(torch.tensor(s))
    x_0, x_t = torch.tensor([0.3], dtype=torch.float64), torch.tensor([-0.7], dtype=torch.float64)
    grid = torch.linspace(-12, 12, 1_200_001, dtype=torch.float64)
    prior_mean, prior_var = q_marginal(x_0, lam_s)  # q(x_s | x_0)
    step_mean, step_var = q_step(grid, lam_t, lam_s)  # q(x_t | x_s) for each x_s on the grid
    log_post = -0.5 * (grid - prior_mean) ** 2 / prior_var - 0.5 * (x_t - step_mean) ** 2 / step_var
    w = torch.exp(log_post - log_post.max())
    w = w / w.sum()
    num_mean = (w * grid).sum()
    num_var = (w * (grid - num_mean) ** 2).sum()
    mean, var = q_posterior(x_t, x_0, lam_t, lam_s)
    assert mean.item() == pytest.approx(num_mean.item(), abs=1e-7)
    assert var.item() == pytest.approx(num_var.item(), rel=1e-5)


def test_posterior_into_the_data_is_the_data():
    sched = Schedule("cosine", 100)
    a, b = posterior_coefficients(sched.log_snr(torch.tensor(0.01)), sched.log_snr(torch.tensor(0.0)))
    assert a.item() == 0.0 and b.item() == 1.0


def test_parameterisations_convert_into_each_other():
    torch.manual_seed(1)
    sched = Schedule("cosine", 1000)
    lam = sched.log_snr(torch.rand(6, dtype=torch.float64) * 0.98 + 0.01)
    a, s = alpha(lam)[:, None], sigma(lam)[:, None]
    x_0, eps = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    x_t = q_sample(x_0, lam, eps)
    v = to_v(x_0, eps, a, s)
    torch.testing.assert_close(eps_to_x0(eps, x_t, a, s), x_0)
    torch.testing.assert_close(x0_to_eps(x_0, x_t, a, s), eps)
    torch.testing.assert_close(v_to_x0(v, x_t, a, s), x_0)
    torch.testing.assert_close(v_to_eps(v, x_t, a, s), eps)
    for kind, pred in (("eps", eps), ("x0", x_0), ("v", v)):
        got_x0, got_eps = x0_and_eps(pred, kind, x_t, a, s)
        torch.testing.assert_close(got_x0, x_0)
        torch.testing.assert_close(got_eps, eps)
    with pytest.raises(ConfigError):
        x0_and_eps(eps, "score", x_t, a, s)


def test_every_schedule_is_a_noise_schedule_and_the_grid_betas_are_its_own():
    """The four schedules share one protocol; β_i = 1 − ᾱ_i/ᾱ_{i−1} from λ alone is each discrete one's β, and the
    one-step chain's β_1 = 1 − sigmoid(−γ_1) = sigmoid(γ_1) (ᾱ_0 = 1)."""
    named = Schedule("cosine", 50)
    table = TabulatedSchedule.from_betas(named.betas())
    one = OneStepSchedule(gamma_1=1.5, learn=False)
    learned = LearnedSchedule("linear", 10, -6.0, 4.0)
    for schedule in (named, table, one, learned):
        assert isinstance(schedule, NoiseSchedule)
    assert [isinstance(s, DiscreteSchedule) for s in (named, table, one, learned)] == [True, True, True, False]
    assert [isinstance(s, ContinuousSchedule) for s in (named, table, one, learned)] == [False, False, False, True]
    torch.testing.assert_close(grid_betas(table), named.betas(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grid_betas(one), one.betas(), rtol=1e-12, atol=0)
    assert one.betas().item() == pytest.approx(1 / (1 + math.exp(-1.5)), rel=1e-12)
