"""EDM on the one log-SNR schedule: the preconditioning's identities, an exact model through it, its bound, the
log-normal training draw as an importance-sampled form of EDM's weighting, and the samplers from the command line."""

import pytest
import torch
from scipy import stats
from test_diffusion_bound import MU, S2, gaussian_data, optimal_eps

from elbolab.bounds import Estimator
from elbolab.diffusion import DiffusionConfig, DiffusionModel, Schedule, exact_bound
from elbolab.diffusion.edm import (
    c_in,
    c_noise,
    c_out,
    c_skip,
    lognormal_density,
    lognormal_times,
    loss_weight,
    preconditioned,
    time_of,
    ve_sigma,
)
from elbolab.diffusion.forward import expand
from elbolab.diffusion.learned_schedule import LearnedSchedule
from elbolab.diffusion.parameterisation import v_to_x0
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.diffusion.weighting import edm_weight
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig

SIGMAS = torch.logspace(-3, 2, 41, dtype=torch.float64)


@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 0.1])
def test_preconditioning_gives_unit_variance_input_and_target(sigma_data):
    """For data of variance σ_data²: Var[c_in x̃] = c_in²(σ_data² + σ̃²) = 1, and the target F* = (x_0 − c_skip x̃)/c_out
    has variance ((1 − c_skip)² σ_data² + c_skip² σ̃²)/c_out² = 1 (Karras et al. 2022, App. B.6)."""
    s = SIGMAS
    torch.testing.assert_close(c_in(s, sigma_data) ** 2 * (sigma_data**2 + s**2), torch.ones_like(s))
    target_var = ((1 - c_skip(s, sigma_data)) ** 2 * sigma_data**2 + c_skip(s, sigma_data) ** 2 * s**2) / c_out(
        s, sigma_data
    ) ** 2
    torch.testing.assert_close(target_var, torch.ones_like(s))
    # and by sampling, at one σ̃
    g = torch.Generator().manual_seed(0)
    x0 = sigma_data * torch.randn(200_000, generator=g, dtype=torch.float64)
    s1 = torch.tensor(0.7, dtype=torch.float64)
    x_ve = x0 + s1 * torch.randn(200_000, generator=g, dtype=torch.float64)
    assert (c_in(s1, sigma_data) * x_ve).var().item() == pytest.approx(1, abs=0.01)
    assert ((x0 - c_skip(s1, sigma_data) * x_ve) / c_out(s1, sigma_data)).var().item() == pytest.approx(1, abs=0.01)
    # the weight λ(σ̃) σ̃² makes the initial loss (F ≡ 0) unit: λ(σ̃) c_out² = 1
    torch.testing.assert_close(loss_weight(s, sigma_data) / s**2 * c_out(s, sigma_data) ** 2, torch.ones_like(s))


def oracle_net(sigma_data):
    """The network F whose preconditioned D is E[x_0 | x̃] for x_0 ~ N(μ, s²): it reads σ̃ from c_noise and x̃ from c_in x̃."""

    def net(inp, noise):
        s = expand(torch.exp(4 * noise), inp)
        x_ve = inp / c_in(s, sigma_data)
        x0 = MU + S2 / (S2 + s**2) * (x_ve - MU)
        return (x0 - c_skip(s, sigma_data) * x_ve) / c_out(s, sigma_data)

    return net


def test_the_exact_model_through_the_preconditioning_is_the_optimal_denoiser():
    schedule = Schedule("cosine", 100)
    x = gaussian_data(32)
    t = torch.rand(32, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.98 + 0.01
    lam = schedule.log_snr(t)
    z_t = expand(alpha(lam), x) * x + expand(sigma(lam), x) * torch.randn_like(x)
    d = Denoiser(preconditioned(oracle_net(0.5), schedule, 0.5), "x0").denoise(z_t, t, schedule)
    torch.testing.assert_close(d.eps_hat, optimal_eps(schedule)(z_t, t), rtol=1e-9, atol=1e-9)
    # at σ̃ → 0 (t = 0 of the discrete chain) D is x̃ = z itself: c_skip = 1, c_out = 0
    zero = torch.zeros(32, dtype=torch.float64)
    network_of_the_noise = lambda inp, noise: inp * 0 + expand(noise, inp)
    torch.testing.assert_close(preconditioned(network_of_the_noise, schedule)(x, zero), x)


def test_unit_sigma_data_on_the_variance_preserving_chain_is_v_prediction():
    """σ_data = 1: D = α z + σ F, i.e. x̂_0 of v-prediction with v̂ = −F (Salimans & Ho 2022, §4)."""
    schedule = Schedule("linear", 100)
    g = torch.Generator().manual_seed(2)
    z, F = torch.randn(2, 16, 3, generator=g, dtype=torch.float64)
    t = torch.linspace(0.05, 1.0, 16, dtype=torch.float64)
    lam = schedule.log_snr(t)
    D = preconditioned(lambda inp, noise: F, schedule, 1.0)(z, t)
    torch.testing.assert_close(D, v_to_x0(-F, z, expand(alpha(lam), z), expand(sigma(lam), z)))
    # c_in x̃ = z when σ_data = 1, and c_noise = −λ/8
    seen = {}
    preconditioned(lambda inp, noise: seen.update(inp=inp, noise=noise) or F, schedule, 1.0)(z, t)
    torch.testing.assert_close(seen["inp"], z)
    torch.testing.assert_close(seen["noise"], -lam / 8)


def test_the_bound_of_the_exact_model_through_edm_equals_the_optimal_epsilons():
    """The bound reads ε̂ = (z − α D)/σ of the preconditioned D: the same bound, term by term, as the optimal ε̂."""
    schedule = Schedule("cosine", 50)
    x = gaussian_data(16)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    through_edm = exact_bound(Denoiser(preconditioned(oracle_net(0.5), schedule, 0.5), "x0"), x, schedule, eps=eps)
    direct = exact_bound(Denoiser(optimal_eps(schedule)), x, schedule, eps=eps)
    for name in direct.terms:
        torch.testing.assert_close(through_edm.terms[name], direct.terms[name], rtol=1e-7, atol=1e-9)


def tiny_edm_model(**overrides):
    torch.manual_seed(0)
    cfg = DiffusionConfig(T=20, unet=UNetConfig(preset="tiny"), parameterisation="edm", **overrides)
    return DiffusionModel(cfg, (1, 8, 8), 17)


def digits(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 17, (n, 1, 8, 8), generator=g).float() / 8 - 1


@pytest.mark.parametrize(
    "overrides",
    [{}, {"time": "continuous", "schedule": "linear", "loss": "edm"}, {"time": "continuous", "loss": "vlb"}],
)
def test_an_edm_model_has_a_finite_bound_whose_terms_add_up_and_trains(overrides):
    model = tiny_edm_model(**overrides)
    x = digits(4)
    bound = model.elbo(x, Estimator("exact", steps=10) if overrides else Estimator("exact"))
    total = sum(bound.terms.values())
    assert torch.isfinite(bound.total).all() and torch.allclose(bound.total, total)
    assert set(bound.terms) == {"prior", "diffusion", "reconstruction"}
    loss = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (4,) and torch.isfinite(loss).all()
    loss.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    images = model.sample(2, sampler="heun", steps=4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 8, 8) and images.dtype == torch.uint8


def test_lognormal_draw_is_edms_truncated_to_the_schedule():
    schedule = LearnedSchedule("linear", 100, -6.0, 8.0, learn_endpoints=False)
    u = (torch.arange(4000, dtype=torch.float64) + 0.5) / 4000
    t, lam, mass = lognormal_times(u, schedule, -1.2, 1.2)
    assert bool(((t >= 0) & (t <= 1)).all())
    torch.testing.assert_close(schedule.log_snr(t), lam)
    lo, hi = -8.0, 6.0  # λ(1) = −γ_max, λ(0) = −γ_min
    a, b = (lo - 2.4) / 2.4, (hi - 2.4) / 2.4
    assert mass.item() == pytest.approx(stats.norm.cdf(b) - stats.norm.cdf(a), rel=1e-9)
    assert stats.kstest(lam.detach().numpy(), stats.truncnorm(a, b, loc=2.4, scale=2.4).cdf).statistic < 1e-3


def test_lognormal_draw_is_the_edm_weighting_importance_sampled():
    """E_{t~U}[½ w_EDM(λ) γ′ f(λ)] = E_{t~q}[½ Z (σ̃² + σ_data²)/σ_data² f(λ)] for any f, the second from EDM's draw."""
    schedule = LearnedSchedule("linear", 100, -6.0, 8.0, learn_endpoints=False)
    n = 1_000_000  # midpoints in u: the inverse CDF's steep ends make its error fall as 1/n²
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    with torch.no_grad():
        f = lambda lam: torch.sin(lam) + lam**2 / 10
        lam_u = schedule.log_snr(u)
        uniform = (0.5 * edm_weight(lam_u) * schedule.gamma_prime(u) * f(lam_u)).mean()
        t, lam, mass = lognormal_times(u, schedule)
        drawn = (0.5 * mass * loss_weight(ve_sigma(lam), 0.5) * f(lam)).mean()
        assert drawn.item() == pytest.approx(uniform.item(), rel=1e-4)
        # and the bound's importance ratio γ′/q(t) = Z/p(λ) is unbiased: E_q[γ′/q] = ∫ γ′ dt = γ_max − γ_min
        q = lognormal_density(lam) * schedule.gamma_prime(t) / mass
        assert (schedule.gamma_prime(t) / q).mean().item() == pytest.approx(14.0, rel=1e-3)


def test_time_of_inverts_the_schedule():
    schedule = Schedule("cosine", 1000)
    t = torch.linspace(0.001, 1.0, 57, dtype=torch.float64)
    torch.testing.assert_close(time_of(schedule, schedule.log_snr(t)), t, rtol=0, atol=1e-12)
    assert time_of(schedule, torch.tensor([1e9, -1e9], dtype=torch.float64)).tolist() == pytest.approx(
        [0, 1], abs=1e-12
    )
    torch.testing.assert_close(c_noise(ve_sigma(schedule.log_snr(t))), -schedule.log_snr(t) / 8)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"sigma_data": 0.0}, "sigma_data"),
        ({"edm_p_std": -1.0}, "edm_p_std"),
        ({"parameterisation": "edm", "variance": "learned", "loss": "hybrid"}, "parameterisation=edm"),
    ],
)
def test_bad_edm_config_is_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        DiffusionConfig(**bad)


def test_sample_with_heun_churn_and_eta_from_the_command_line(tmp_path, run_cli):
    run = tmp_path / "run"
    tiny = [
        "--set",
        "model.unet.preset=tiny",
        "--set",
        "model.T=50",
        "--set",
        "train.eval_every=0",
        "--set",
        "train.eval_n=16",
        "--quiet",
    ]
    edm = ["--set", "model.parameterisation=edm", "--set", "train.batch_size=16", "--set", "train.threads=1"]
    code, _, err = run_cli("train", "diffusion", "--data", "digits", "--out", run, "--steps", "3", *tiny, *edm)
    assert code == 0, err
    for extra in (
        ["--sampler", "heun", "--steps", "18"],
        ["--sampler", "heun-churn", "--steps", "5", "--s-churn", "10", "--s-min", "0.05", "--s-max", "50"],
        ["--sampler", "ddim", "--steps", "5", "--eta", "0.5"],
        ["--sampler", "dpm-solver++3m", "--steps", "6"],
    ):
        code, out, err = run_cli("sample", run, "--n", "4", "--out", tmp_path / f"{extra[1]}.npz", *extra)
        assert code == 0 and "wrote 4 samples" in out, (extra, err)
    code, _, err = run_cli(
        "sample", run, "--n", "2", "--out", tmp_path / "x.npz", "--sampler", "heun-churn", "--s-churn", "-1"
    )
    assert code != 0 and "churn needs" in err and not (tmp_path / "x.npz").exists(), err
