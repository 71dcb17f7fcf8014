"""The bound, checked against analytic oracles: Gaussian data, where every reverse kernel and log p(x) are closed form.

For x_0 ~ N(μ, diag s²) the optimal predictions are E[ε | x_t] and E[x_0 | x_t], linear in x_t,
so the reverse chain is linear-Gaussian and its marginal p_θ(x_0) is Gaussian too. The bound's
terms are quadratic in the noise, so Gauss–Hermite quadrature over a shared ε gives their exact
expectation: the checks below are deterministic, not statistical, except the Monte-Carlo one.
"""

import math

import numpy as np
import pytest
import torch

from elbolab.diffusion import LossSecondMomentResampler, Schedule, exact_bound, mc_bound, prior_term
from elbolab.diffusion.forward import expand, posterior_coefficients, posterior_log_variance
from elbolab.diffusion.reverse import Denoiser, small_log_variance
from elbolab.diffusion.schedule import alpha, log_beta, sigma

MU = torch.tensor([0.3, -0.5, 0.0, 0.8], dtype=torch.float64)
S2 = torch.tensor([0.04, 0.25, 1.0, 0.01], dtype=torch.float64)


def gaussian_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU + S2.sqrt() * torch.randn(n, 4, generator=g, dtype=torch.float64)


def log_density(x, mean, var):
    return (-0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)).sum(1)


def optimal_eps(schedule, mu=MU, s2=S2):
    """E[ε | x_t] = σ (x_t − α μ)/(α² s² + σ²) for x_0 ~ N(μ, s²)."""

    def denoiser(x_t, t):
        lam = schedule.log_snr(t)
        a, s = expand(alpha(lam), x_t), expand(sigma(lam), x_t)
        return s * (x_t - a * mu) / (a * a * s2 + s * s)

    return denoiser


def true_reverse_variance(schedule, i):
    """Var q(x_{i−1} | x_i) = β̃_i + b_i² Var[x_0 | x_i], from ᾱ alone (Ho et al. 2020, eqs. 6–7), [T, D]."""
    ab = schedule.alpha_bar(schedule.times(torch.arange(schedule.T + 1))).numpy()
    ab_t, ab_s = ab[i][:, None], ab[i - 1][:, None]
    beta = 1 - ab_t / ab_s
    tilde = beta * (1 - ab_s) / (1 - ab_t)
    b = np.sqrt(ab_s) * beta / (1 - ab_t)
    var_x0 = S2.numpy() * (1 - ab_t) / (ab_t * S2.numpy() + 1 - ab_t)
    return torch.from_numpy(tilde + b**2 * var_x0)


def exact_reverse(schedule):
    """The optimal ε with the variance interpolation v that gives the true reverse variance: p_θ = q's reverse chain."""
    eps_of = optimal_eps(schedule)
    true_var = true_reverse_variance(schedule, np.arange(1, schedule.T + 1))

    def denoiser(x_t, t):
        s = t - 1.0 / schedule.T
        lo = expand(small_log_variance(schedule, t, s), x_t)
        hi = expand(log_beta(schedule.log_snr(t), schedule.log_snr(s)), x_t)
        target = torch.log(true_var[torch.round(t * schedule.T).long() - 1])
        return eps_of(x_t, t), (target - lo) / (hi - lo)

    return denoiser


def chain_variances(schedule, variance):
    """The variance of each reverse step i = 1..T, [T, D], computed from ᾱ independently of the library."""
    T = schedule.T
    i = np.arange(1, T + 1)
    ab = schedule.alpha_bar(schedule.times(torch.arange(T + 1))).numpy()
    beta = 1 - ab[i] / ab[i - 1]
    tilde = beta * (1 - ab[i - 1]) / (1 - ab[i])
    if variance == "large":
        v = beta
    elif variance == "small":
        v = np.concatenate([[tilde[1]], tilde[1:]])  # β̃_1 = 0 is replaced by β̃_2
    else:
        return true_reverse_variance(schedule, i)
    return torch.from_numpy(np.repeat(v[:, None], 4, axis=1))


def model_log_marginal(x, schedule, variance):
    """log p_θ(x_0) of the linear-Gaussian reverse chain from x_T ~ N(0, I), by propagating mean and variance."""
    T = schedule.T
    ab = schedule.alpha_bar(schedule.times(torch.arange(T + 1)))
    var_steps = chain_variances(schedule, variance)
    m, v = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    for i in range(T, 0, -1):
        ab_t, ab_s = ab[i], ab[i - 1]
        a_t = ab_t.sqrt()
        k = a_t * S2 / (ab_t * S2 + 1 - ab_t)  # E[x_0|x_t] = μ + k (x_t − α_t μ)
        beta = 1 - ab_t / ab_s
        coef_x0 = ab_s.sqrt() * beta / (1 - ab_t)  # posterior mean coefficients
        coef_xt = (ab_t / ab_s).sqrt() * (1 - ab_s) / (1 - ab_t)
        A, c = coef_xt + coef_x0 * k, coef_x0 * (MU - k * a_t * MU)
        m, v = A * m + c, A * A * v + var_steps[i - 1]
    return log_density(x, m, v)


def expected_bound(denoiser, x, schedule, variance, nodes=3):
    """E_ε[−ELBO] exactly, by Gauss–Hermite quadrature over one ε shared by all steps (the terms are quadratic in it)."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    bounds = [
        exact_bound(Denoiser(denoiser), x, schedule, variance=variance, eps=torch.full_like(x, zj), max_batch=10**6)
        for zj in z
    ]
    total = sum(wj * b.total for wj, b in zip(w, bounds))
    per_step = sum(wj * b.per_step for wj, b in zip(w, bounds))
    return total, per_step


@pytest.mark.parametrize("variance", ["small", "large", "exact"])
@pytest.mark.parametrize("T", [10, 100, 1000])
def test_bound_is_below_the_models_log_likelihood_on_every_example(T, variance):
    schedule = Schedule("cosine", T)
    x = gaussian_data(64)
    if variance == "exact":
        total, _ = expected_bound(exact_reverse(schedule), x, schedule, "learned")
    else:
        total, _ = expected_bound(optimal_eps(schedule), x, schedule, variance)
    log_p_model = model_log_marginal(x, schedule, variance)
    assert (-total <= log_p_model + 1e-9).all(), (-total - log_p_model).max()


def test_with_the_optimal_reverse_chain_the_bound_meets_log_p_on_every_example():
    """Optimal ε and the true reverse variance: p_θ is the data's reverse chain, so −bound ≤ log N(x; μ, s²),
    tight up to the prior's mismatch N(0, I) vs q(x_T)."""
    x = gaussian_data(64)
    log_p = log_density(x, MU, S2)
    gaps = {}
    for T in (10, 100, 1000):
        schedule = Schedule("cosine", T)
        total, _ = expected_bound(exact_reverse(schedule), x, schedule, "learned")
        gap = total + log_p
        gaps[T] = gap.mean().item()
        prior_mismatch = prior_term(x, schedule).max().item()
        assert (gap >= -prior_mismatch).all() and (gap <= 1e-4).all(), (T, gap.min(), gap.max())
    print("\noptimal reverse chain, mean gap −bound − (−log p) in nats (D = 4):", gaps)


def test_gap_to_log_p_shrinks_with_T_for_the_optimal_eps():
    """Optimal ε, fixed variance β ("large"): on average over the data −bound ≥ −log p (cross-entropy ≥ entropy),
    and the gap falls roughly as 1/T. (With β̃, "small", it does not: near t = 0 the true reverse variance of
    continuous data is β, and the first steps' mismatch does not vanish as T grows.)"""
    x = gaussian_data(128, seed=1)
    log_p = log_density(x, MU, S2)
    gaps = {"large": {}, "small": {}}
    for variance, by_T in gaps.items():
        for T in (10, 100, 1000):
            schedule = Schedule("cosine", T)
            total, _ = expected_bound(optimal_eps(schedule), x, schedule, variance)
            by_T[T] = round((total + log_p).mean().item(), 5)
    print("\noptimal ε: mean gap −bound − (−log p) in nats (D = 4):", gaps)
    large = gaps["large"]
    assert 0 < large[1000] < large[100] < large[10]
    assert large[1000] < 0.03 and large[100] < 0.3 and large[10] / large[1000] > 50
    assert min(gaps["small"].values()) > 0.5


def test_a_wrong_predictor_gives_a_worse_bound():
    schedule = Schedule("cosine", 100)
    x = gaussian_data(256)
    right, _ = expected_bound(optimal_eps(schedule), x, schedule, "large")
    for wrong in (optimal_eps(schedule, mu=MU + 0.3), optimal_eps(schedule, s2=S2 * 3)):
        worse, _ = expected_bound(wrong, x, schedule, "large")
        assert worse.mean() > right.mean() + 0.05


@pytest.mark.parametrize("levels", [None, 17])
def test_per_step_terms_add_up_to_the_total(levels):
    schedule = Schedule("linear", 50)
    x = gaussian_data(8).clamp(-1, 1)
    if levels:
        x = torch.round((x + 1) * (levels - 1) / 2) * 2 / (levels - 1) - 1
    bound = exact_bound(
        Denoiser(optimal_eps(schedule)),
        x,
        schedule,
        variance="small",
        levels=levels,
        generator=torch.Generator().manual_seed(0),
        max_batch=100,
    )
    assert bound.per_step.shape == (8, 50) and bound.discrete == (levels is not None)
    assert set(bound.terms) == {"prior", "diffusion", "reconstruction"}
    torch.testing.assert_close(bound.per_step.sum(1) + bound.terms["prior"], bound.total)
    torch.testing.assert_close(bound.per_step[:, 1:].sum(1), bound.terms["diffusion"])
    torch.testing.assert_close(bound.per_step[:, 0], bound.terms["reconstruction"])
    assert (bound.per_step[:, 1:] >= 0).all() and (bound.terms["prior"] > 0).all()
    if levels:
        assert (bound.terms["reconstruction"] >= 0).all()  # a probability mass is at most 1


def test_an_x0_predictor_returning_the_true_x0_zeroes_every_diffusion_kl():
    schedule = Schedule("cosine", 200)
    x = gaussian_data(6)
    eps = torch.randn(4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)  # one ε for all

    def true_x0(x_t, t):  # x_t = α x_0 + σ ε with ε known
        lam = schedule.log_snr(t)
        return (x_t - expand(sigma(lam), x_t) * eps) / expand(alpha(lam), x_t)

    bound = exact_bound(Denoiser(true_x0, "x0"), x, schedule, variance="small", eps=eps.expand_as(x))
    assert bound.per_step[:, 1:].abs().max() < 1e-10
    # L_0 is the Gaussian decoder's density at its own mean: −log N(x; x, β̃_2) per dimension
    log_var = small_log_variance(schedule, torch.tensor(1 / 200), torch.tensor(0.0))
    torch.testing.assert_close(
        bound.terms["reconstruction"],
        torch.full((6,), 4 * 0.5 * (math.log(2 * math.pi) + log_var.item()), dtype=torch.float64),
    )


def test_posterior_and_model_variance_of_the_first_step_are_finite():
    schedule = Schedule("cosine", 1000)
    t, s = torch.tensor([0.001, 0.002]), torch.tensor([0.0, 0.001])
    small = small_log_variance(schedule, t, s)
    assert torch.isfinite(small).all()
    assert small[0] == small[1] == posterior_log_variance(schedule.log_snr(t[1]), schedule.log_snr(s[1]))
    a, b = posterior_coefficients(schedule.log_snr(t), schedule.log_snr(s))
    assert a[0] == 0 and b[0] == 1


@pytest.mark.parametrize("proposal", ["uniform", "good", "poor"])
def test_monte_carlo_bound_agrees_with_the_exact_sum(proposal):
    schedule = Schedule("cosine", 100)
    x = gaussian_data(256, seed=2)
    denoiser = optimal_eps(schedule)
    exact, per_step = expected_bound(denoiser, x, schedule, "large")
    q = {
        "uniform": None,
        "good": per_step.mean(0).clamp_min(1e-3),  # ∝ the mean term: near-optimal
        "poor": torch.arange(1, 101, dtype=torch.float64),
    }[proposal]  # favours the smallest terms
    mc = mc_bound(
        Denoiser(denoiser),
        x,
        schedule,
        samples=32,
        proposal=q,
        variance="large",
        generator=torch.Generator().manual_seed(5),
    )
    se = mc.extras["stderr"]
    assert se.shape == (256,) and (se > 0).all() and mc.per_step is None
    # the batch mean within 3 standard errors
    diff = (mc.total - exact).mean()
    assert diff.abs() <= 3 * se.pow(2).sum().sqrt() / 256, (diff, se.mean())
    z = (mc.total - exact) / se
    print(
        f"\n{proposal}: mean stderr {se.mean():.4f} nats, z std {z.std():.2f}, |z| < 3 for {(z.abs() < 3).float().mean():.1%}"
    )
    if proposal == "good":
        # near-optimal proposal: the per-example errors are as large as the standard error says, and it is small
        assert 0.8 < z.std().item() < 1.25
        assert (
            se.mean()
            < 0.4
            * mc_bound(
                Denoiser(denoiser),
                x,
                schedule,
                samples=32,
                variance="large",
                generator=torch.Generator().manual_seed(5),
            )
            .extras["stderr"]
            .mean()
        )
    elif proposal == "uniform":
        # heavy-tailed weights (L_i ∝ 1/i): the standard error is itself noisy, but still covers most examples
        assert (z.abs() < 3).float().mean() > 0.8


def test_resampler_history_lives_in_the_state_dict():
    r = LossSecondMomentResampler(T=5, history=3)
    assert not r.ready() and torch.allclose(r.probabilities(), torch.full((5,), 0.2, dtype=torch.float64))
    i = torch.tensor([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5])
    losses = torch.tensor([9.0, 1, 1, 1, 2, 2, 2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 8, 8, 8])
    r.update(i, losses)
    assert r.ready() and r.seen.tolist() == [4, 3, 3, 3, 3]
    assert sorted(r.losses[0].tolist()) == [1, 1, 1]  # only the newest three of step 1
    p = r.probabilities()
    want = torch.tensor([1, 2, 0.5, 0.5, 8], dtype=torch.float64)
    torch.testing.assert_close(p, 0.999 * want / want.sum() + 0.001 / 5)
    r.update(torch.tensor([1]), torch.tensor([4.0]))  # ring buffer: replaces the oldest
    assert sorted(r.losses[0].tolist()) == [1, 1, 4]
    clone = LossSecondMomentResampler(T=5, history=3)
    clone.load_state_dict(r.state_dict())
    torch.testing.assert_close(clone.probabilities(), r.probabilities())
