"""Samplers: one contract suite for all, DDIM(η=1) ≡ ancestral, exact mixture denoiser → the mixture, inversion;
on Gaussian data, where the probability-flow ODE's solution is closed form, each converges to it at its order."""

import itertools
import math

import pytest
import torch
from scipy import stats

from elbolab.diffusion import Schedule, ancestral, ddim, ddim_invert, dpm_solver_pp, run_sampler, time_grid
from elbolab.diffusion.edm import RHO, SIGMA_MAX, rho_grid, time_of, ve_sigma
from elbolab.diffusion.forward import expand
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.samplers import RHO_GRID_SAMPLERS, SAMPLERS, Churn, euler, heun, heun_churn, nfe
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.errors import ConfigError

# a 1-D mixture of Gaussians: weights, means, standard deviations
PI = torch.tensor([0.3, 0.7], dtype=torch.float64)
MEANS = torch.tensor([-0.6, 0.5], dtype=torch.float64)
STDS = torch.tensor([0.15, 0.25], dtype=torch.float64)


def mixture_x0(schedule):
    """The exact denoiser E[x_0 | x_t] of the mixture: responsibilities × each component's Gaussian posterior mean."""

    def denoiser(x_t, t):
        lam = schedule.log_snr(t)
        a, s = expand(alpha(lam), x_t)[..., None], expand(sigma(lam), x_t)[..., None]
        x = x_t[..., None]
        var = a * a * STDS**2 + s * s
        log_r = torch.log(PI) - 0.5 * torch.log(var) - 0.5 * (x - a * MEANS) ** 2 / var
        r = torch.softmax(log_r, dim=-1)
        return (r * (MEANS + a * STDS**2 * (x - a * MEANS) / var)).sum(-1)

    return Denoiser(denoiser, "x0")


def mixture_samples(n, seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(PI, n, replacement=True, generator=g)
    return MEANS[k] + STDS[k] * torch.randn(n, generator=g, dtype=torch.float64)


def gaussian_eps(schedule, mu=0.2, s2=0.3):
    """E[ε | x_t] for x_0 ~ N(mu, s2) in every coordinate."""

    def denoiser(x_t, t):
        lam = schedule.log_snr(t)
        a, s = expand(alpha(lam), x_t), expand(sigma(lam), x_t)
        return s * (x_t - a * mu) / (a * a * s2 + s * s)

    return Denoiser(denoiser)


SAMPLER_CASES = {
    "ancestral": {"name": "ancestral"},
    "ancestral-large": {"name": "ancestral", "variance": "large"},
    "ddim": {"name": "ddim"},
    "ddim-eta": {"name": "ddim", "eta": 0.5},
    "dpm-solver++": {"name": "dpm-solver++"},
    "dpm-solver++3m": {"name": "dpm-solver++3m"},
    "euler": {"name": "euler"},
    "heun": {"name": "heun"},
    "heun-churn": {"name": "heun-churn", "churn": Churn(s_churn=5.0, s_min=0.05, s_max=50.0)},
}


def test_every_registered_sampler_is_in_the_contract_suite():
    assert {case["name"] for case in SAMPLER_CASES.values()} == set(SAMPLERS)


def draw(case, steps, seed, schedule, shape=(5, 2, 3, 3), dtype=torch.float64):
    """x_T and the sampler's randomness from one seed."""
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(shape, generator=g, dtype=dtype)
    opts = dict(SAMPLER_CASES[case])
    return run_sampler(
        opts.pop("name"), gaussian_eps(schedule), x_T, time_grid(schedule.T, steps), schedule, generator=g, **opts
    )


@pytest.mark.parametrize("case", list(SAMPLER_CASES))
@pytest.mark.parametrize("steps", [1, 2, 7, 50])
def test_sampler_contract(case, steps):
    schedule = Schedule("cosine", 50)
    out = draw(case, steps, seed=0, schedule=schedule)
    assert out.shape == (5, 2, 3, 3) and out.dtype == torch.float64 and torch.isfinite(out).all()
    assert torch.equal(out, draw(case, steps, seed=0, schedule=schedule)), "not deterministic under a seed"
    assert not torch.equal(out, draw(case, steps, seed=1, schedule=schedule))
    out32 = draw(case, steps, seed=0, schedule=schedule, dtype=torch.float32)
    assert out32.dtype == torch.float32 and torch.isfinite(out32).all()


def test_one_step_returns_the_denoiser_mean_at_t_1():
    schedule = Schedule("cosine", 50)
    x_T = torch.randn(4, 3, dtype=torch.float64)
    for name in SAMPLERS:
        out = run_sampler(name, Denoiser(lambda x, t: torch.full_like(x, 0.25), "x0"), x_T, time_grid(50, 1), schedule)
        assert torch.equal(out, torch.full_like(x_T, 0.25))


def test_unknown_sampler_and_bad_steps():
    schedule = Schedule("cosine", 50)
    with pytest.raises(ConfigError, match="unknown sampler"):
        run_sampler("lms", gaussian_eps(schedule), torch.zeros(1, 1), time_grid(50, 5), schedule)
    with pytest.raises(ConfigError):
        time_grid(50, 51)


def test_ddim_with_eta_one_is_ancestral_sampling_with_the_posterior_variance():
    schedule = Schedule("linear", 100)
    x_T = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = time_grid(100)
    a = ancestral(
        gaussian_eps(schedule), x_T, grid, schedule, variance="small", generator=torch.Generator().manual_seed(7)
    )
    d = ddim(gaussian_eps(schedule), x_T, grid, schedule, eta=1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, d, rtol=1e-10, atol=1e-10)
    d0 = ddim(gaussian_eps(schedule), x_T, grid, schedule, eta=0.0, generator=torch.Generator().manual_seed(7))
    assert (a - d0).abs().max() > 0.1  # the noise matters: η = 0 is a different sampler


@pytest.mark.parametrize(
    "name,steps,opts",
    [
        ("ancestral", 1000, {}),
        ("ddim", 1000, {}),
        ("dpm-solver++", 20, {}),
    ],
)
def test_samplers_with_the_exact_denoiser_match_the_mixture(name, steps, opts):
    schedule = Schedule("cosine", 1000)
    n = 2000
    g = torch.Generator().manual_seed(11)
    x_T = torch.randn(n, 1, generator=g, dtype=torch.float64)
    out = run_sampler(name, mixture_x0(schedule), x_T, time_grid(1000, steps), schedule, generator=g, **opts).squeeze(1)
    result = stats.ks_2samp(out.numpy(), mixture_samples(n, seed=12).numpy())
    assert result.pvalue > 0.01, (name, steps, result)


def test_the_mixture_check_rejects_a_coarse_sampler():
    """The KS check has power: DDIM at 10 steps (mean error ≈ 0.05 against its 1000-step limit) fails it."""
    schedule = Schedule("cosine", 1000)
    g = torch.Generator().manual_seed(11)
    out = ddim(
        mixture_x0(schedule),
        torch.randn(2000, 1, generator=g, dtype=torch.float64),
        time_grid(1000, 10),
        schedule,
    ).squeeze(1)
    assert stats.ks_2samp(out.numpy(), mixture_samples(2000, seed=12).numpy()).pvalue < 0.01


def test_dpm_solver_is_second_order():
    """Halving the step size cuts DPM-Solver++(2M)'s error about 4× (DDIM's about 2×), against a 1000-step reference."""
    schedule = Schedule("cosine", 1000)
    x_T = torch.randn(500, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    denoiser = mixture_x0(schedule)
    grid = lambda k: time_grid(1000, k)
    ref = dpm_solver_pp(denoiser, x_T, grid(1000), schedule)
    err = {k: (dpm_solver_pp(denoiser, x_T, grid(k), schedule) - ref).abs().mean().item() for k in (25, 50)}
    err_ddim = {k: (ddim(denoiser, x_T, grid(k), schedule) - ref).abs().mean().item() for k in (25, 50)}
    assert err[25] / err[50] > 3.0 and err_ddim[25] / err_ddim[50] < 2.5 and err[50] < err_ddim[50] / 3, (err, err_ddim)


def test_ddim_encode_then_decode_returns_the_input():
    schedule = Schedule("cosine", 1000)
    x = 0.2 + math.sqrt(0.3) * torch.randn(64, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grid = time_grid(1000, 500)
    errors = []
    for fixed_point in (0, 1):
        z = ddim_invert(gaussian_eps(schedule), x, grid, schedule, fixed_point=fixed_point)
        assert z.shape == x.shape and 0.8 < z.std().item() < 1.2  # x_T looks like N(0, I)
        errors.append((ddim(gaussian_eps(schedule), z, grid, schedule) - x).abs().max().item())
    assert errors[1] < 1e-3 and errors[0] < 2e-2 and errors[1] < errors[0] / 10, errors


# ---------------------------------------------------------------- Gaussian data: the exact probability flow
MU, S2 = 0.2, 0.3


def flow_map(grid, schedule):
    """(A, B) with x̂_0 = A x_T + B the exact answer of a deterministic sampler over `grid` for x_0 ~ N(μ, s²): x̃ = x/α
    follows the probability-flow ODE from σ̃(t_K) to σ̃(t_1), x̃ − μ ∝ sqrt(s² + σ̃²) (the quantiles of N(μ, s² + σ̃²)),
    then the step into 0 returns E[x_0 | x̃] = μ + s²/(s² + σ̃²)(x̃ − μ) at t_1."""
    lam_top, lam_bottom = schedule.log_snr(grid[[0, -2]])
    top, bottom = ve_sigma(lam_top).item(), ve_sigma(lam_bottom).item()
    ratio = math.sqrt((S2 + bottom**2) / (S2 + top**2)) * S2 / (S2 + bottom**2)
    return ratio / alpha(lam_top).item(), MU - ratio * MU


def affine_error(name, grid, schedule):
    """|A − A*| + |B − B*|: the sampler of the exact Gaussian ε̂ is affine in x_T, read off at x_T = 0 and 1."""
    x_T = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    out = run_sampler(name, gaussian_eps(schedule, MU, S2), x_T, grid, schedule).squeeze(1)
    A, B = flow_map(rho_grid(grid, schedule) if name in RHO_GRID_SAMPLERS else grid, schedule)
    return abs((out[1] - out[0]).item() - A) + abs(out[0].item() - B)


def test_flow_map_is_the_data_distribution_in_the_limit():
    """The oracle itself: from σ̃ → ∞ to σ̃ → 0 the flow maps N(0, 1) at t = 1 onto N(μ, s²)."""
    schedule = Schedule("cosine", 1000)
    A, B = flow_map(time_grid(1000, 2), schedule)
    assert A == pytest.approx(math.sqrt(S2), rel=1e-3) and B == pytest.approx(MU, abs=1e-4)


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "dpm-solver++", "dpm-solver++3m"])
def test_deterministic_samplers_converge_to_the_exact_flow(name):
    schedule = Schedule("cosine", 1000)
    errors = [affine_error(name, time_grid(1000, k), schedule) for k in (5, 10, 20, 40, 160)]
    assert all(b < a for a, b in itertools.pairwise(errors[:3])) and errors[-1] < 0.01, errors


def test_heun_is_second_order_and_euler_first():
    """On EDM's ρ grid halving the step cuts Heun's error about 4× and Euler's about 2×; Heun's is the smaller."""
    schedule = Schedule("cosine", 1000)
    err = {name: [affine_error(name, time_grid(1000, k), schedule) for k in (10, 20, 40)] for name in ("euler", "heun")}
    heun_ratios = [a / b for a, b in itertools.pairwise(err["heun"])]
    euler_ratios = [a / b for a, b in itertools.pairwise(err["euler"])]
    assert all(3.5 < r < 8 for r in heun_ratios) and all(1.7 < r < 2.3 for r in euler_ratios), err
    assert all(h < e / 3 for h, e in zip(err["heun"][1:], err["euler"][1:])), err


def log_snr_uniform_grid(schedule, steps, t_min=1e-3):
    """Times 1 = t_K > … > t_1 = t_min > 0 equally spaced in λ."""
    ends = schedule.log_snr(torch.tensor([1.0, t_min], dtype=torch.float64))
    t = time_of(schedule, torch.linspace(ends[0].item(), ends[1].item(), steps, dtype=torch.float64))
    t[0], t[-1] = 1.0, t_min
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def test_dpm_solver_3m_is_third_order_where_its_steps_are_even():
    """On a grid even in λ, 3M's error falls ≥ 8× per halving from 20 steps (2M's about 4×) and is far below 2M's."""
    schedule = Schedule("cosine", 1000)
    err = {
        name: [affine_error(name, log_snr_uniform_grid(schedule, k), schedule) for k in (20, 40, 80)]
        for name in ("dpm-solver++", "dpm-solver++3m")
    }
    assert all(a / b > 8 for a, b in itertools.pairwise(err["dpm-solver++3m"])), err
    assert all(2.5 < a / b < 5 for a, b in itertools.pairwise(err["dpm-solver++"])), err
    assert err["dpm-solver++3m"][-1] < err["dpm-solver++"][-1] / 10, err


def test_euler_in_sigma_over_alpha_is_ddim_on_the_same_grid():
    schedule = Schedule("linear", 100)
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = time_grid(100, 13)
    denoiser = mixture_x0(schedule)
    torch.testing.assert_close(
        euler(denoiser, x_T, grid, schedule),
        ddim(denoiser, x_T, grid, schedule),
        rtol=1e-12,
        atol=1e-12,
    )


def test_churn_zero_is_heun_exactly_and_churn_adds_noise():
    schedule = Schedule("cosine", 1000)
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = rho_grid(time_grid(1000, 12), schedule)
    denoiser = mixture_x0(schedule)
    deterministic = heun(denoiser, x_T, grid, schedule)
    for churn in (Churn(), Churn(s_churn=0.0, s_noise=1.0), Churn(s_churn=40.0, s_min=1e3)):  # none, or none in range
        g = torch.Generator().manual_seed(3)
        out = heun_churn(denoiser, x_T, grid, schedule, churn=churn, generator=g)
        assert torch.equal(out, deterministic), churn
    noisy = heun_churn(denoiser, x_T, grid, schedule, churn=Churn(s_churn=10.0), generator=torch.Generator())
    assert (noisy - deterministic).abs().max() > 0.05


@pytest.mark.parametrize(
    "opts,steps",
    [
        ({"name": "ancestral"}, (10, 100, 1000)),
        ({"name": "ddim", "eta": 0.5}, (10, 100, 1000)),
        ({"name": "heun-churn", "churn": Churn(s_churn=20.0, s_min=0.01, s_max=10.0)}, (10, 50, 200)),
    ],
    ids=["ancestral", "ddim-eta", "heun-churn"],
)
def test_stochastic_samplers_converge_to_the_data_distribution(opts, steps):
    """Mean and variance of 20 000 draws with the exact Gaussian ε̂: the variance's error falls with the steps, to
    within sampling error at the most (all 1000 of the chain; 200 for Heun's 2nd-order steps)."""
    schedule = Schedule("cosine", 1000)
    n = 20_000
    errors = []
    for k in steps:
        g = torch.Generator().manual_seed(5)
        x_T = torch.randn(n, generator=g, dtype=torch.float64)
        options = dict(opts)
        name = options.pop("name")
        out = run_sampler(
            name, gaussian_eps(schedule, MU, S2), x_T, time_grid(1000, k), schedule, generator=g, **options
        )
        errors.append((abs(out.mean().item() - MU), abs(out.var().item() - S2)))
    se_mean, se_var = math.sqrt(S2 / n), S2 * math.sqrt(2 / n)
    assert errors[-1][0] < 4 * se_mean and errors[-1][1] < 4 * se_var, errors
    assert errors[0][1] > 10 * se_var and errors[0][1] > errors[1][1] > errors[2][1], errors


def test_rho_grid_spaces_sigma_over_alpha_by_rho():
    schedule = Schedule("cosine", 1000)
    grid = time_grid(1000, 9)
    respaced = rho_grid(grid, schedule)
    assert respaced.shape == grid.shape and respaced[-2] == grid[-2] and respaced[-1] == 0
    assert bool((respaced[1:] < respaced[:-1]).all())
    s = ve_sigma(schedule.log_snr(respaced[:-1]))
    assert s[0].item() == pytest.approx(SIGMA_MAX, rel=1e-9)  # σ̃(1) of this chain is larger: EDM's σ_max
    steps = s ** (1 / RHO)
    torch.testing.assert_close(steps[1:] - steps[:-1], (steps[1] - steps[0]).expand(8), rtol=1e-6, atol=0)
    assert torch.equal(rho_grid(time_grid(1000, 1), schedule), time_grid(1000, 1))


def test_nfe_counts_heuns_second_evaluations():
    calls = []
    schedule = Schedule("cosine", 100)

    def counting(x, t):
        calls.append(1)
        return gaussian_eps(schedule).net(x, t)

    for name in SAMPLERS:
        calls.clear()
        run_sampler(name, Denoiser(counting), torch.zeros(2, 1, dtype=torch.float64), time_grid(100, 6), schedule)
        assert len(calls) == nfe(name, 6), name


def test_bad_churn_and_order_are_refused():
    with pytest.raises(ConfigError, match="churn needs"):
        Churn(s_churn=-1.0)
    with pytest.raises(ConfigError, match="churn needs"):
        Churn(s_min=2.0, s_max=1.0)
    schedule = Schedule("cosine", 50)
    with pytest.raises(ConfigError, match="orders 2 and 3"):
        dpm_solver_pp(gaussian_eps(schedule), torch.zeros(1, 1), time_grid(50, 5), schedule, order=4)
