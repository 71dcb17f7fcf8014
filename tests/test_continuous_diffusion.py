"""Continuous-time diffusion (VDM) against analytic oracles: Gaussian data, where the optimal ε̂ is linear in z_t
and E_ε‖ε − ε̂‖² is closed form, so the bound is a one-dimensional integral computed by quadrature; and
data uniform over a few levels, for the per-level decoder and the learned end points.
"""

import math

import numpy as np
import pytest
import scipy.special
import torch

# the Gaussian data and its optimal ε̂ = E[ε | z_t] are the discrete chain's oracle's (any schedule with log_snr)
from test_diffusion_bound import MU, S2, gaussian_data
from test_diffusion_bound import optimal_eps as gauss_eps

from elbolab.bounds import Estimator
from elbolab.diffusion import continuous
from elbolab.diffusion.bound import prior_term
from elbolab.diffusion.chain import GaussianDiffusion
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.learned_schedule import LearnedSchedule, level_gamma_min
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.schedule import Schedule
from elbolab.diffusion.time_proposal import TimeProposal
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig


def expected_sq_error(schedule, x, t, mu=MU):
    """E_ε‖ε − ε̂‖² of `gauss_eps(mu)` at t, per example: Σ_d (α⁴ s⁴ + σ² α² (x − μ)²)/v², v = α² s² + σ²."""
    lam = schedule.log_snr(torch.as_tensor(t, dtype=torch.float64))
    a2, s2 = torch.sigmoid(lam)[..., None], torch.sigmoid(-lam)[..., None]
    v = a2 * S2 + s2
    return ((a2**2 * S2**2 + s2 * a2 * (x - mu) ** 2) / v**2).sum(-1)


def quadrature_diffusion(schedule, x, mu=MU, nodes=400, pieces=8):
    """½ ∫₀¹ γ′(t) E‖ε − ε̂‖² dt per example by composite Gauss–Legendre."""
    z, w = np.polynomial.legendre.leggauss(nodes)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for p in range(pieces):
            lo, hi = p / pieces, (p + 1) / pieces
            t = torch.from_numpy(lo + (hi - lo) * (z + 1) / 2)
            g = 0.5 * schedule.gamma_prime(t)[:, None] * expected_sq_error(schedule, x[None], t[:, None], mu)
            total += (torch.from_numpy(w)[:, None] * g).sum(0) * (hi - lo) / 2
    return total


def steps_diffusion(schedule, x, T, mu=MU):
    """The T-step diffusion term Σ_i ½ expm1(γ_i − γ_{i−1}) E‖ε − ε̂(z_{t_i})‖², exactly."""
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    with torch.no_grad():
        w = continuous.step_weight(schedule, t, T)
        return (w[:, None] * expected_sq_error(schedule, x[None], t[:, None], mu)).sum(0)


def gauss_log_prob(x, m, v):
    return -0.5 * (math.log(2 * math.pi) + torch.log(v) + (x - m) ** 2 / v)


def closed_form_bound(schedule, x):
    """−ELBO with the optimal denoiser in continuous time, from the end points alone:
    E[−log p(x|z_0)] + KL(q(z_0|x) ‖ q(z_0)) + E_{q(z_1|x)}[log q(z_1) − log N(z_1; 0, 1)],
    q(z_t) = N(α_t μ, α_t² s² + σ_t²) the data's marginal (the reverse process is q's own but starts at N(0, I))."""
    with torch.no_grad():
        out = torch.zeros(x.shape[0], dtype=torch.float64)
        for t, sign in ((0.0, 1), (1.0, -1)):
            lam = schedule.log_snr(torch.tensor(t, dtype=torch.float64))
            a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
            mean, var = a2.sqrt() * x, s2
            m_true, v_true = a2.sqrt() * MU, a2 * S2 + s2
            cross_true = 0.5 * (math.log(2 * math.pi) + torch.log(v_true) + (var + (mean - m_true) ** 2) / v_true)
            if t == 0.0:
                entropy = 0.5 * (math.log(2 * math.pi) + torch.log(var) + 1)
                recon = 0.5 * (math.log(2 * math.pi) + torch.log(s2 / a2) + 1)
                out += (recon + cross_true - entropy).sum(1)
            else:
                cross_prior = 0.5 * (math.log(2 * math.pi) + (var + mean**2))
                out += (cross_prior - cross_true).sum(1)
        return out


def oracle_bound(schedule, x):
    """prior + quadrature diffusion + the reconstruction's expectation (closed form for the density decoder)."""
    lam0 = schedule.log_snr(torch.tensor(0.0, dtype=torch.float64))
    recon = 0.5 * (math.log(2 * math.pi) + torch.log(torch.sigmoid(-lam0) / torch.sigmoid(lam0)) + 1) * x.shape[1]
    with torch.no_grad():
        return prior_term(x, schedule) + quadrature_diffusion(schedule, x) + recon


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_optimal_denoiser_bound_equals_the_closed_form_left_by_the_end_points(shape):
    x = gaussian_data(6)
    schedule = LearnedSchedule(shape, 100, -8.0, 6.0)
    bound = oracle_bound(schedule, x)
    torch.testing.assert_close(bound, closed_form_bound(schedule, x), rtol=0, atol=1e-7)
    # the bound is valid on average (cross-entropy ≥ entropy) and its gap closes as the end points widen
    minus_log_p = -gauss_log_prob(x, MU, S2).sum(1)
    gaps = []
    for lo, hi in ((-4.0, 2.0), (-8.0, 6.0), (-14.0, 12.0)):
        s = LearnedSchedule(shape, 100, lo, hi)
        xs = gaussian_data(4000, seed=1)
        gaps.append((closed_form_bound(s, xs) + gauss_log_prob(xs, MU, S2).sum(1)).mean().item())
        assert gaps[-1] > 0
        if hi == 12.0:
            torch.testing.assert_close(oracle_bound(s, x), minus_log_p, rtol=0, atol=2e-3)
    assert gaps[0] > gaps[1] > gaps[2]


def test_the_shape_between_the_end_points_does_not_change_the_continuous_bound():
    x = gaussian_data(5)
    torch.testing.assert_close(
        oracle_bound(LearnedSchedule("linear", 10, -7.0, 4.0), x),
        oracle_bound(LearnedSchedule("cosine", 10, -7.0, 4.0), x),
        rtol=0,
        atol=1e-7,
    )


def test_the_T_step_bound_falls_towards_the_continuous_one_as_T_doubles():
    x = gaussian_data(8)
    schedule = LearnedSchedule("cosine", 10, -8.0, 6.0)
    limit = quadrature_diffusion(schedule, x)
    previous = None
    for T in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
        L = steps_diffusion(schedule, x, T)
        assert (L >= limit - 1e-9).all()
        if previous is not None:
            assert (L <= previous + 1e-12).all(), T
            if T >= 256:  # the gap is O(1/T): it halves as T doubles
                ratio = (L - limit) / (previous - limit)
                assert ((ratio > 0.4) & (ratio < 0.6)).all(), (T, ratio)
        previous = L
    assert (previous - limit).abs().max() < 0.01 * limit.abs().max()


def test_a_wrong_denoiser_gives_a_looser_bound():
    x = gaussian_data(2000, seed=3)
    schedule = LearnedSchedule("linear", 10, -8.0, 6.0)
    right = quadrature_diffusion(schedule, x).mean()
    wrong = quadrature_diffusion(schedule, x, mu=MU + 0.3).mean()
    assert wrong > right + 0.1
    # the library's Monte-Carlo estimate sees the same ordering on the same examples
    g = torch.Generator().manual_seed(0)
    est = {
        name: continuous.mc_bound(Denoiser(den), x[:100], schedule, samples=16, generator=g).total.mean().item()
        for name, den in (("right", gauss_eps(schedule)), ("wrong", gauss_eps(schedule, MU + 0.3)))
    }
    assert est["wrong"] > est["right"]


def test_the_per_level_decoder_sums_to_one_and_matches_a_direct_computation():
    K = 5
    levels = torch.linspace(-1, 1, K, dtype=torch.float64)
    schedule = LearnedSchedule("linear", 10, level_gamma_min(K, 0.5), 5.0)
    lam0 = schedule.log_snr(torch.tensor(0.0, dtype=torch.float64)).detach()
    z = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    logp = torch.stack([continuous.level_log_prob(levels[k].expand(7, 3), z, lam0, K) for k in range(K)])
    torch.testing.assert_close(logp.exp().sum(0), torch.ones(7, 3, dtype=torch.float64))
    a, s = math.sqrt(torch.sigmoid(lam0).item()), math.sqrt(torch.sigmoid(-lam0).item())
    zz = z.numpy()
    direct = np.stack([np.exp(-((zz - a * v) ** 2) / (2 * s * s)) for v in levels.numpy()])
    direct /= direct.sum(0)
    np.testing.assert_allclose(logp.exp().numpy(), direct, rtol=1e-9, atol=1e-12)
    # level-aware γ_min: σ_0 is the asked-for fraction of the bin width
    assert math.isclose(s, 0.5 * 2 / (K - 1), rel_tol=1e-12)


def _level_data(K, n=64, dims=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, K, (n, dims), generator=g).double() * 2 / (K - 1) - 1


@pytest.mark.parametrize("start, start_max, direction", [(-13.3, 1.0, +1), (3.0, 5.0, -1)])
def test_learned_end_points_get_gradients_and_move_the_expected_way(start, start_max, direction):
    """17-level data, a denoiser that does not know the levels (optimal for a Gaussian of the same moments):
    from VDM's 8-bit γ_min the bound pays for noise far below the bin width, so γ_min rises; from σ_0² ≈ 0.95
    the decoder cannot tell the levels apart, so γ_min falls. A low γ_max leaves z_1 informative: it rises."""
    K = 17
    x = _level_data(K, n=32)
    mu, s2 = x.mean(0), x.var(0)
    schedule = LearnedSchedule("linear", 10, start, start_max)
    denoiser = gauss_eps(schedule, mu, s2)
    opt = torch.optim.Adam(schedule.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        bound = continuous.mc_bound(Denoiser(denoiser), x, schedule, samples=16, levels=K, generator=g).total.mean()
        opt.zero_grad()
        bound.backward()
        assert schedule.ends.grad is not None and torch.isfinite(schedule.ends.grad).all()
        opt.step()
        losses.append(bound.item())
    lo, hi = schedule.ends.detach().tolist()
    assert direction * (lo - start) > 0.25
    assert hi > start_max + 0.5 or start_max > 4
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def _repeats(x, schedule, denoiser, n, **kw):
    g = torch.Generator().manual_seed(1)
    bounds = [continuous.mc_bound(Denoiser(denoiser), x, schedule, generator=g, **kw) for _ in range(n)]
    diffusion = torch.stack([b.terms["diffusion"] for b in bounds])
    se = torch.stack([b.extras["stderr"] for b in bounds])
    return diffusion, se


@pytest.mark.parametrize("proposal", ["uniform", "stratified", "importance"])
def test_the_estimator_is_unbiased_and_its_standard_error_is_honest(proposal):
    x = gaussian_data(3, seed=5)
    schedule = LearnedSchedule("cosine", 10, -10.0, 6.0)
    denoiser = gauss_eps(schedule, MU + 0.2)  # an imperfect denoiser: the integrand is far from flat
    q = None
    if proposal == "importance":
        second = continuous.pilot_second_moment(
            Denoiser(denoiser), gaussian_data(32, seed=9), schedule, 32, 2, generator=torch.Generator().manual_seed(2)
        )
        q = TimeProposal.fit(second)
    diffusion, se = _repeats(x, schedule, denoiser, 400, samples=8, proposal=q, stratified=proposal != "uniform")
    exact = quadrature_diffusion(schedule, x, MU + 0.2)
    spread = diffusion.std(0)
    mean_se = spread / math.sqrt(diffusion.shape[0])
    assert ((diffusion.mean(0) - exact).abs() < 3 * mean_se).all()
    ratio = se.pow(2).mean(0).sqrt() / spread  # reported vs observed standard error, per example
    assert ((ratio > 0.75) & (ratio < 1.33)).all(), ratio


def test_importance_sampling_cuts_the_standard_error():
    x = gaussian_data(3, seed=5)
    schedule = LearnedSchedule("cosine", 10, -10.0, 6.0)
    denoiser = gauss_eps(schedule, MU + 0.2)
    second = continuous.pilot_second_moment(
        Denoiser(denoiser), gaussian_data(32, seed=9), schedule, 32, 2, generator=torch.Generator().manual_seed(2)
    )
    spreads = {}
    for name, q, strat in (
        ("uniform", None, False),
        ("stratified", None, True),
        ("importance", TimeProposal.fit(second), True),
    ):
        spreads[name] = _repeats(x, schedule, denoiser, 100, samples=16, proposal=q, stratified=strat)[0].std(0)
    assert (spreads["importance"] < 0.5 * spreads["uniform"]).all()


def test_the_T_step_estimate_agrees_with_its_exact_sum():
    x = gaussian_data(3, seed=6)
    schedule = LearnedSchedule("linear", 10, -10.0, 6.0)
    denoiser = gauss_eps(schedule, MU + 0.2)
    T = 200
    second = continuous.pilot_second_moment(
        Denoiser(denoiser), gaussian_data(32, seed=9), schedule, 32, 2, T=T, generator=torch.Generator().manual_seed(2)
    )
    diffusion, se = _repeats(x, schedule, denoiser, 300, samples=8, proposal=TimeProposal.fit(second), T=T)
    exact = steps_diffusion(schedule, x, T, MU + 0.2)
    assert ((diffusion.mean(0) - exact).abs() < 3 * diffusion.std(0) / math.sqrt(300)).all()
    ratio = se.pow(2).mean(0).sqrt() / diffusion.std(0)
    assert ((ratio > 0.75) & (ratio < 1.33)).all(), ratio


def test_time_proposal_draws_follow_its_density():
    q = TimeProposal(torch.tensor([1.0, 3.0, 0.5, 0.5], dtype=torch.float64))
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t, dens = q.continuous(u)
    hist = torch.histc(t, 4, 0, 1) / t.numel() * 4
    torch.testing.assert_close(hist, q.density(), atol=0.02, rtol=0)
    torch.testing.assert_close(dens, q.density()[(t * 4).long().clamp(max=3)])
    p = q.steps(8)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    i, p_i = q.discrete(u, 8)
    counts = torch.bincount(i - 1, minlength=8).double() / u.numel()
    torch.testing.assert_close(counts, p, atol=0.01, rtol=0)
    torch.testing.assert_close(p_i, p[i - 1])


def test_estimator_record_parses_and_refuses():
    e = Estimator.parse("mc:64:importance:T=1000")
    assert (e.method, e.samples, e.proposal, e.steps) == ("mc", 64, "importance", 1000)
    assert e.describe() == "mc (K=64, importance, T=1000)"
    assert Estimator.parse("exact:T=50").steps == 50
    with pytest.raises(ConfigError, match="Monte-Carlo"):
        Estimator("exact", proposal="importance")
    with pytest.raises(ConfigError, match="unknown proposal"):
        Estimator("mc", 4, "sobol")


@torch.no_grad()
def test_the_discrete_chain_estimates_agree_with_its_exact_sum():
    """The T-step chain with a (random) network: stratified and pilot-fitted importance draws of the step are
    unbiased for the exact T-sum and report honest standard errors; importance beats the uniform draw."""
    from elbolab.data import load_data
    from elbolab.diffusion import DiffusionConfig, DiffusionModel
    from elbolab.nets.unet import UNetConfig

    torch.manual_seed(0)
    model = DiffusionModel(DiffusionConfig(unet=UNetConfig(preset="tiny"), T=40), (1, 8, 8), 17).eval()
    x = load_data("digits", "test").model_range(slice(0, 3))
    g = torch.Generator().manual_seed(0)
    exact = torch.stack([model.elbo(x, Estimator("exact"), g).total for _ in range(20)])
    exact_mean, exact_se = exact.mean(0), exact.std(0) / math.sqrt(20)
    model.prepare_estimator(Estimator("mc", 8, "importance"), load_data("digits", "train").model_range(slice(0, 16)), g)
    spreads = {}
    for proposal in ("uniform", "stratified", "importance"):
        runs = [model.elbo(x, Estimator("mc", 8, proposal), g) for _ in range(150)]
        totals = torch.stack([b.total for b in runs])
        se = torch.stack([b.extras["stderr"] for b in runs])
        spreads[proposal] = totals.std(0)
        err = (totals.mean(0) - exact_mean).abs()
        assert (err < 3 * torch.sqrt(spreads[proposal] ** 2 / 150 + exact_se**2)).all(), (proposal, err)
        ratio = se.pow(2).mean(0).sqrt() / spreads[proposal]
        assert ((ratio > 0.7) & (ratio < 1.4)).all(), (proposal, ratio)
    assert (spreads["importance"] < spreads["uniform"]).all()


@pytest.mark.parametrize("gamma_min", [-13.0, -8.0, 0.0, 3.0])
def test_the_decoder_normaliser_over_nearby_levels_equals_the_sum_over_all_256(gamma_min):
    """p(x|z_0)'s normaliser sums only levels within WINDOW_Z σ_0/α_0 of z_0/α_0: the same log-probabilities as
    the sum over every level, from σ_0 far below the bin width (γ_min = −13) to far above it (γ_min = 3)."""
    K = 256
    lam0 = torch.tensor(-gamma_min, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, K, (16, 40), generator=g).double() * 2 / (K - 1) - 1
    a, s = math.sqrt(torch.sigmoid(lam0).item()), math.sqrt(torch.sigmoid(-lam0).item())
    z = a * x + s * torch.randn(16, 40, generator=g, dtype=torch.float64)
    got = continuous.level_log_prob(x, z, lam0, K).numpy()
    logits = -0.5 * ((z.numpy()[..., None] - a * np.linspace(-1, 1, K)) / s) ** 2
    k = np.rint((x.numpy() + 1) * (K - 1) / 2).astype(int)[..., None]
    direct = np.take_along_axis(logits, k, -1)[..., 0] - scipy.special.logsumexp(logits, -1)
    np.testing.assert_allclose(got, direct, rtol=1e-10, atol=1e-10)


def test_a_continuous_chain_refuses_a_schedule_without_gamma_prime():
    """Continuous time integrates γ′(t): a discrete T-step schedule in its place is a one-line error at build time."""
    config = DiffusionConfig(time="continuous", T=20, unet=UNetConfig(preset="tiny"), loss="vlb")
    with pytest.raises(ConfigError, match="γ′") as err:
        GaussianDiffusion(config, torch.nn.Identity(), 17, schedule=Schedule("cosine", 20))
    assert "\n" not in str(err.value) and "Schedule" in str(err.value)
