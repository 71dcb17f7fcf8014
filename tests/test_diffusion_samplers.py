"""Samplers: one contract suite for all, DDIM(η=1) ≡ ancestral, exact mixture denoiser → the mixture, inversion."""

import math

import pytest
import torch
from scipy import stats

from elbolab.diffusion import Schedule, ancestral, ddim, ddim_invert, dpm_solver_pp, run_sampler, time_grid
from elbolab.diffusion.forward import expand
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

    return denoiser


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

    return denoiser


SAMPLER_CASES = {
    "ancestral": {"name": "ancestral"},
    "ancestral-large": {"name": "ancestral", "variance": "large"},
    "ddim": {"name": "ddim"},
    "ddim-eta": {"name": "ddim", "eta": 0.5},
    "dpm-solver++": {"name": "dpm-solver++"},
}


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
    for name in ("ancestral", "ddim", "dpm-solver++"):
        out = run_sampler(
            name, lambda x, t: torch.full_like(x, 0.25), x_T, time_grid(50, 1), schedule, parameterisation="x0"
        )
        assert torch.equal(out, torch.full_like(x_T, 0.25))


def test_unknown_sampler_and_bad_steps():
    schedule = Schedule("cosine", 50)
    with pytest.raises(ConfigError, match="unknown sampler"):
        run_sampler("euler", gaussian_eps(schedule), torch.zeros(1, 1), time_grid(50, 5), schedule)
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
    out = run_sampler(
        name, mixture_x0(schedule), x_T, time_grid(1000, steps), schedule, parameterisation="x0", generator=g, **opts
    ).squeeze(1)
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
        parameterisation="x0",
    ).squeeze(1)
    assert stats.ks_2samp(out.numpy(), mixture_samples(2000, seed=12).numpy()).pvalue < 0.01


def test_dpm_solver_is_second_order():
    """Halving the step size cuts DPM-Solver++(2M)'s error about 4× (DDIM's about 2×), against a 1000-step reference."""
    schedule = Schedule("cosine", 1000)
    x_T = torch.randn(500, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    denoiser = mixture_x0(schedule)
    grid = lambda k: time_grid(1000, k)
    ref = dpm_solver_pp(denoiser, x_T, grid(1000), schedule, parameterisation="x0")
    err = {
        k: (dpm_solver_pp(denoiser, x_T, grid(k), schedule, parameterisation="x0") - ref).abs().mean().item()
        for k in (25, 50)
    }
    err_ddim = {
        k: (ddim(denoiser, x_T, grid(k), schedule, parameterisation="x0") - ref).abs().mean().item() for k in (25, 50)
    }
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
