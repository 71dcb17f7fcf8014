"""Latent diffusion: its bound against a linear-Gaussian oracle where log p(x) is exact, and the model end to end.

The oracle: x = W z + b + σ_x ε with orthogonal columns in W, and a latent diffusion over u = z/s
whose ε-predictor is the optimal one for Gaussian u. Its reverse chain is then linear-Gaussian, so
p_ψ(u), p_ψ(z) = p_ψ(z/s)/s^d and p(x) = ∫ p(x|z) p_ψ(z) dz are Gaussians in closed form. Every term
of the bound is quadratic in the noise, so Gauss–Hermite quadrature gives its exact expectation.
"""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from elbolab.bounds import Bound, Estimator, mean_ci95
from elbolab.diffusion import DiffusionConfig, Schedule, exact_bound
from elbolab.diffusion.forward import expand
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.errors import ConfigError, ElbolabError
from elbolab.latent import LatentDiffusion, LatentDiffusionConfig, latent_bound, negative_entropy, total_std
from elbolab.likelihoods import normal_log_prob
from elbolab.nets.unet import UNetConfig
from elbolab.vae import VAE, VAEConfig

IMAGE, LATENT = (1, 4, 4), (1, 2, 2)  # D = 16 data dimensions, d = 4 latent dimensions
SIGMA_X, S = 0.3, 2.5  # decoder noise; latent scale s (z = s·u)
MU_U = torch.tensor([0.4, -0.8, 0.2, 1.2], dtype=torch.float64).view(LATENT)  # u ~ N(μ, v) per dimension
VAR_U = torch.tensor([0.64, 0.16, 0.04, 1.44], dtype=torch.float64).view(LATENT)
T = 200


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: tiny networks on two shared cores run far faster without thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class OptimalEps(nn.Module):
    """E[ε | x_t] = σ (x_t − α μ)/(α² v + σ²) for u ~ N(μ, v): the optimal ε̂, a network without weights."""

    def __init__(self, schedule, mu=MU_U, var=VAR_U):
        super().__init__()
        self.schedule, self.mu, self.var = schedule, mu, var
        self.dtype_probe = nn.Parameter(torch.zeros((), dtype=torch.float64), requires_grad=False)

    def forward(self, x_t, t):
        lam = self.schedule.log_snr(t)
        a, s = expand(alpha(lam), x_t), expand(sigma(lam), x_t)
        return s * (x_t - a * self.mu) / (a * a * self.var + s * s)


class LinearGaussianAE(nn.Module):
    """p(x|z) = N(W z + b, σ_x² I) and a diagonal Gaussian encoder q(z|x) given by a function of x."""

    def __init__(self, w, b, encoder):
        super().__init__()
        self.w, self.b, self.encoder = w, b, encoder

    def posterior(self, x):
        mean, var = self.encoder(x.flatten(1))
        return mean.view(-1, *LATENT), var.log().view(-1, *LATENT)

    def log_likelihood(self, x, z):
        return normal_log_prob(x.flatten(1), z.flatten(1) @ self.w.T + self.b, 2 * math.log(SIGMA_X)).sum(1)


def chain_marginal(schedule, variance):
    """Mean and variance of p_ψ(u_0) of the reverse chain with the optimal ε̂, propagated from u_T ~ N(0, I)
    through every step u_s = a u_t + b E[u_0|u_t] + N(0, v_step) (Ho et al. 2020, eqs. 6–7), from ᾱ alone."""
    ab = schedule.alpha_bar(torch.arange(schedule.T + 1, dtype=torch.float64) / schedule.T)
    m, v = torch.zeros_like(MU_U), torch.ones_like(VAR_U)
    for i in range(schedule.T, 0, -1):
        ab_t, ab_s = ab[i], ab[i - 1]
        beta = 1 - ab_t / ab_s
        a, b = (ab_t / ab_s).sqrt() * (1 - ab_s) / (1 - ab_t), ab_s.sqrt() * beta / (1 - ab_t)
        k = ab_t.sqrt() * VAR_U / (ab_t * VAR_U + 1 - ab_t)  # E[u_0|u_t] = μ + k (u_t − √ᾱ_t μ)
        if variance == "large":
            step_var = beta
        else:  # β̃_i, and β̃_2 for the step into the data
            j = max(i, 2)
            step_var = (1 - ab[j] / ab[j - 1]) * (1 - ab[j - 1]) / (1 - ab[j])
        gain = a + b * k
        m, v = gain * m + b * (MU_U - k * ab_t.sqrt() * MU_U), gain * gain * v + step_var
    return m, v


@pytest.fixture(scope="module")
def oracle():
    g = torch.Generator().manual_seed(11)
    q, _ = torch.linalg.qr(torch.randn(16, 4, generator=g, dtype=torch.float64))
    w = q * torch.tensor([2.0, 1.0, 0.5, 1.5], dtype=torch.float64)
    b = torch.randn(16, generator=g, dtype=torch.float64)
    z = S * (MU_U + VAR_U.sqrt() * torch.randn(48, *LATENT, generator=g, dtype=torch.float64))
    x = (z.flatten(1) @ w.T + b + SIGMA_X * torch.randn(48, 16, generator=g, dtype=torch.float64)).view(-1, *IMAGE)
    return w, b, x


def model_log_px(oracle, schedule, variance):
    """log p(x) = log N(x; W s m_ψ + b, W diag(s² v_ψ) Wᵀ + σ_x² I), and the exact posterior q(z|x) under p_ψ."""
    w, b, x = oracle
    m, v = (t.flatten() for t in chain_marginal(schedule, variance))
    cov = w @ torch.diag(S * S * v) @ w.T + SIGMA_X**2 * torch.eye(16, dtype=torch.float64)
    log_px = torch.distributions.MultivariateNormal(w @ (S * m) + b, cov).log_prob(x.flatten(1))

    def exact_posterior(xf):  # W has orthogonal columns, so the posterior's precision is diagonal
        precision = 1 / (S * S * v) + (w * w).sum(0) / SIGMA_X**2
        return ((xf - b) @ w / SIGMA_X**2 + m / (S * v)) / precision, (1 / precision).expand(len(xf), -1)

    return log_px, exact_posterior


def expected_bound(oracle, encoder, schedule, variance, nodes=3):
    """E over z ~ q(z|x) and over the chain's noise of the composed bound, by Gauss–Hermite quadrature: a shared
    node per draw is exact, since every term is a sum over dimensions of quadratics in that dimension's noise."""
    w, b, x = oracle
    ae = LinearGaussianAE(w, b, encoder)
    mean, logvar = ae.posterior(x)
    eps_nodes, weights = np.polynomial.hermite_e.hermegauss(nodes)
    weights = weights / weights.sum()
    net = OptimalEps(schedule)

    def latent_prior(u):  # the chain's bound, its expectation over ε
        bounds = [
            exact_bound(Denoiser(net), u, schedule, variance=variance, eps=torch.full_like(u, e), max_batch=10**6)
            for e in eps_nodes
        ]
        return Bound(
            {k: sum(wj * bd.terms[k] for wj, bd in zip(weights, bounds)) for k in bounds[0].terms},
            bounds[0].dims,
            discrete=False,
        )

    composed = [
        latent_bound(
            mean + (0.5 * logvar).exp() * zeta,
            logvar,
            lambda z: ae.log_likelihood(x, z),
            latent_prior,
            math.log(S),
            dims=16,
            discrete=False,
        )
        for zeta in eps_nodes
    ]
    return sum(wj * bd.total for wj, bd in zip(weights, composed)), composed[0]


@pytest.mark.parametrize("variance", ["large", "small"])
def test_with_the_exact_posterior_the_bound_is_below_log_px_and_tight(oracle, variance):
    schedule = Schedule("cosine", T)
    log_px, exact_posterior = model_log_px(oracle, schedule, variance)
    total, one = expected_bound(oracle, exact_posterior, schedule, variance)
    gap = total + log_px  # −bound − log p(x) ≤ 0 ⇔ gap ≥ 0
    assert (gap >= -1e-9).all(), gap.min()
    # only the chain's own slack is left: a wrong Jacobian (2 d log s = 7.3 nats) or entropy (d/2 = 2) shows here.
    # β̃ ("small") is the reverse variance for data concentrated at points; continuous u is smooth at small t,
    # where the true reverse variance is β ("large"), so "small" pays about 0.7 nats per latent dimension.
    assert gap.max() < {"large": 0.1, "small": 4 * 0.8}[variance], gap.max()
    print(f"\nexact posterior, variance {variance}: gap −bound − log p(x) {gap.mean():.4f} nats (d = 4)")
    assert (
        one.discrete is False and one.dims == 16 and set(one.terms) == {"reconstruction", "neg_entropy", "latent_prior"}
    )
    torch.testing.assert_close(
        one.extras["latent_prior.log_scale"], torch.full((48,), 4 * math.log(S), dtype=torch.float64)
    )
    parts = sum(one.extras[f"latent_prior.{k}"] for k in ("prior", "diffusion", "reconstruction", "log_scale"))
    torch.testing.assert_close(parts, one.terms["latent_prior"])


def test_any_other_encoder_gives_a_looser_bound_on_every_example(oracle):
    schedule = Schedule("cosine", T)
    log_px, exact_posterior = model_log_px(oracle, schedule, "large")
    best, _ = expected_bound(oracle, exact_posterior, schedule, "large")
    for shift, log_scale in [(0.5, 0.0), (0.0, 1.0), (-0.3, -1.5)]:

        def encoder(xf, shift=shift, log_scale=log_scale):
            mean, var = exact_posterior(xf)
            return mean + shift, var * math.exp(log_scale)

        total, _ = expected_bound(oracle, encoder, schedule, "large")
        assert (total + log_px >= -1e-9).all()
        assert (total - best).mean() > 0.05


def oracle_model(oracle):
    """A LatentDiffusion around the oracle's autoencoder (its exact posterior) and optimal ε̂, its latent scale not
    yet set; the quadrature's exact expected bound per image; the oracle's images."""
    schedule = Schedule("cosine", T)
    _log_px, exact_posterior = model_log_px(oracle, schedule, "large")
    exact, _ = expected_bound(oracle, exact_posterior, schedule, "large")
    cfg = LatentDiffusionConfig(
        vae=VAEConfig(latent="spatial", latent_channels=1, net="tiny"),
        diffusion=DiffusionConfig(T=T, variance="large", unet=UNetConfig(preset="tiny")),
    )
    model = LatentDiffusion(cfg, IMAGE, levels=256)
    w, b, x = oracle
    model.vae = LinearGaussianAE(w, b, exact_posterior)
    model.diffusion.net = OptimalEps(model.diffusion.schedule)
    return model, exact, x


def test_the_model_computes_the_same_bound(oracle):
    """LatentDiffusion.elbo with the oracle's autoencoder and ε̂: its Monte-Carlo estimates (both of the chain's
    methods) average to the quadrature's exact expectation."""
    model, exact, x = oracle_model(oracle)
    with pytest.raises(ElbolabError, match="no latent scale"):
        model.elbo(x)
    model.scale.fill_(S)
    repeats = 64
    xs = x.repeat(repeats, 1, 1, 1)
    g = torch.Generator().manual_seed(4)
    for estimator in (Estimator("exact"), Estimator("mc"), Estimator("mc", proposal="importance")):
        bound = model.elbo(xs, estimator, g)  # the importance proposal fitted for this call only
        assert bound.discrete and bound.dims == 16
        estimates = bound.total.view(repeats, -1)
        diff, half_width = mean_ci95((estimates - exact).flatten())
        assert abs(diff) < 1.5 * half_width, (estimator, diff, half_width)  # ≈ 3 standard errors
        assert half_width < 0.5
    assert model.fitted_estimator() == {}  # the self-pilot's fit is not kept


def test_the_importance_proposal_over_latents_is_unbiased_and_cuts_the_variance(oracle):
    """An importance proposal over the latent chain's steps, fitted on a pilot pass over latents of other images
    (`prepare_estimator`): its estimate still averages to the quadrature's exact bound, with a per-image
    standard error far below the training resampler's uniform draw at the same number of draws; the fit is
    kept and put back (`fitted_estimator`, `load_fitted_estimator`) bit for bit."""
    model, exact, x = oracle_model(oracle)
    model.scale.fill_(S)
    assert "importance" in model.capabilities.proposals
    pilot = x.flip(0)  # the same oracle's images in another order: the fit is not on the draws it weights
    model.prepare_estimator(Estimator("mc", proposal="importance"), pilot, torch.Generator().manual_seed(9))
    kept = model.fitted_estimator()
    assert set(kept) == {"time_proposal", "control_slopes"} and (kept["time_proposal"] > 0).all()
    repeats = 64
    xs = x.repeat(repeats, 1, 1, 1)
    found = {}
    for proposal in ("importance", "uniform"):
        bound = model.elbo(xs, Estimator("mc", 8, proposal), torch.Generator().manual_seed(5))
        diff, half_width = mean_ci95((bound.total.view(repeats, -1) - exact).flatten())
        assert abs(diff) < 1.5 * half_width, (proposal, diff, half_width)
        found[proposal] = bound.extras["stderr"].pow(2).mean().sqrt().item()
    assert found["importance"] < 0.5 * found["uniform"], found
    other, _, _ = oracle_model(oracle)
    other.load_fitted_estimator(kept)
    for name, t in other.fitted_estimator().items():
        assert torch.equal(t, kept[name])


def test_entropy_and_scale_helpers():
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    want = -(0.5 * math.log(2 * math.pi * math.e) * 2 + 0.5 * math.log(4.0))
    torch.testing.assert_close(negative_entropy(logvar), torch.tensor([want], dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    mean = 3.0 + 2.0 * torch.randn(4000, 3, generator=g, dtype=torch.float64)
    logvar = torch.full_like(mean, math.log(0.5))
    z = mean + math.sqrt(0.5) * torch.randn(mean.shape, generator=g, dtype=torch.float64)
    s = total_std(mean.sum().item(), mean.pow(2).sum().item(), logvar.exp().sum().item(), mean.numel())
    assert s == pytest.approx(math.sqrt(4.5), rel=0.03) and s == pytest.approx(z.std().item(), rel=0.02)


def test_config_and_autoencoder_checks():
    with pytest.raises(ConfigError, match="spatial"):
        LatentDiffusionConfig(vae=VAEConfig(latent="flat"))
    model = LatentDiffusion(LatentDiffusionConfig(vae=VAEConfig(latent="spatial", net="tiny")), (1, 8, 8), 17)
    assert model.latent_shape == (model.config.vae.latent_channels, 4, 4)
    with pytest.raises(ElbolabError, match="flat latents"):
        model.adopt_autoencoder(VAE(VAEConfig(latent="flat"), (1, 8, 8), 17))
    with pytest.raises(ElbolabError, match="shape"):
        model.adopt_autoencoder(VAE(VAEConfig(latent="spatial"), (1, 16, 16), 17))
    other = VAE(VAEConfig(latent="spatial", latent_channels=3, net="tiny"), (1, 8, 8), 17)
    model.adopt_autoencoder(other)  # another architecture: the module and the config follow it
    assert model.config.vae.latent_channels == 3 and model.latent_shape == (3, 4, 4)
    assert all(torch.equal(a, b) for a, b in zip(model.vae.state_dict().values(), other.state_dict().values()))
    assert not any(p.requires_grad for p in model.vae.parameters())


def test_joint_finetuning_reaches_the_autoencoder_only_in_its_last_steps():
    cfg = LatentDiffusionConfig(
        vae=VAEConfig(latent="spatial", latent_channels=2, net="tiny"),
        diffusion=DiffusionConfig(T=50, unet=UNetConfig(preset="tiny")),
        joint_finetune_steps=3,
    )
    model = LatentDiffusion(cfg, (1, 8, 8), 17)
    model.scale.fill_(1.0)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    for step, joint in ((2, False), (7, True)):
        model.zero_grad(set_to_none=True)
        model.loss(x, step, 10).mean().backward()
        assert model.joint_at(step, 10) is joint
        reached = [p.grad is not None and p.grad.abs().sum() > 0 for p in model.vae.parameters()]
        assert any(reached) is joint and all(p.grad is not None for p in model.diffusion.net.parameters())


# ---------------------------------------------------------------- trained on digits

SETTINGS = {
    "model.vae.net": "tiny",
    "model.diffusion.unet.channels": "16",
    "train.batch_size": "128",
    "train.eval_every": "0",
    "train.eval_n": "64",
    "train.threads": "1",
    "train.seed": "0",
}


def train_digits(run, overrides, steps, **kw):
    """Both stages through the library, as `elbolab train latent-diffusion` runs them."""
    from elbolab.train.api import train_run

    threads = torch.get_num_threads()
    try:
        return train_run(
            "latent-diffusion", "digits", run, overrides={**SETTINGS, **overrides}, steps=steps, progress=False, **kw
        )
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A few steps of each stage: enough for the mechanics, not for quality."""
    run = tmp_path_factory.mktemp("latent") / "tiny"
    train_digits(run, {"model.vae.latent_channels": "2", "model.autoencoder_steps": "30"}, steps=20)
    return run


@pytest.mark.slow
def test_the_diffusion_prior_tightens_the_vaes_bound_with_the_same_autoencoder(tmp_path):
    """400 VAE steps (β = 0.25, z of 2×4×4), then 300 latent diffusion steps; both bounds on the whole test set."""
    from elbolab.data import load_data
    from elbolab.model import dataset_bound
    from elbolab.train.run import load_run

    train_digits(
        tmp_path / "ld",
        {"model.vae.latent_channels": "2", "model.vae.beta": "0.25", "model.autoencoder_steps": "400"},
        steps=300,
    )
    test = load_data("digits", "test")
    _, vae = load_run(tmp_path / "ld" / "autoencoder")
    _, model = load_run(tmp_path / "ld")
    for a, b in zip(vae.state_dict().values(), model.vae.state_dict().values()):
        assert torch.equal(a, b)  # the frozen autoencoder is the stage-1 VAE, bit for bit
    torch.manual_seed(1)
    vae_bpd = dataset_bound(vae, test).bits_per_dim()
    ld_bpd = dataset_bound(model, test, estimator=Estimator("mc")).bits_per_dim()
    (v, v_ci), (l, l_ci) = mean_ci95(vae_bpd), mean_ci95(ld_bpd)
    diff, diff_ci = mean_ci95(ld_bpd - vae_bpd)  # paired: the same test images
    print(
        f"\ndigits test bits/dim, same autoencoder: VAE ELBO {v:.4f} ± {v_ci:.4f}, "
        f"latent diffusion bound {l:.4f} ± {l_ci:.4f}, paired difference {diff:.4f} ± {diff_ci:.4f}"
    )
    assert diff + diff_ci < 0


def test_eval_sample_interpolate_and_resume_through_the_library(tiny_run, tmp_path):
    from elbolab.data import load_data
    from elbolab.model import dataset_bound
    from elbolab.train.run import load_run

    test = load_data("digits", "test")
    _cfg, model = load_run(tiny_run)
    assert model.prepared and model.kind == "latent-diffusion" and model.latent_shape == (2, 4, 4)
    bound = dataset_bound(model, test, 64, estimator=Estimator("mc"))
    assert set(bound.terms) == {"reconstruction", "neg_entropy", "latent_prior"} and bound.discrete and bound.dims == 64
    assert all(torch.isfinite(t).all() for t in (*bound.terms.values(), *bound.extras.values()))
    torch.testing.assert_close(bound.total, sum(bound.terms.values()))
    parts = sum(bound.extras[f"latent_prior.{k}"] for k in ("prior", "diffusion", "reconstruction", "log_scale"))
    torch.testing.assert_close(parts, bound.terms["latent_prior"])
    assert (bound.terms["reconstruction"] > 0).all()  # a probability mass: −log P ≥ 0
    g = torch.Generator().manual_seed(0)
    for sampler in ("ancestral", "ddim", "dpm-solver++"):
        images = model.sample(6, generator=g, sampler=sampler, steps=10)
        assert images.dtype == torch.uint8 and images.shape == (6, 1, 8, 8) and images.max() <= 16
    x = test.model_range(slice(0, 4))
    frames = model.interpolate(x[:2], x[2:], 4)
    assert frames.shape == (2, 4, 1, 8, 8) and frames.dtype == torch.uint8
    for end, images in ((0, x[:2]), (-1, x[2:])):  # the end frames are the autoencoder's reconstructions
        recon = model.vae.decode(model.vae.encode(images))
        assert (frames[:, end] != recon).float().mean() < 0.02
    # resume: the checkpoint restores the autoencoder and s; stage 1 is not run again
    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    stamp = (run / "autoencoder" / "model.safetensors").stat().st_mtime_ns
    _, metrics = train_digits(run, {}, steps=23, resume=True)
    assert metrics["step"] == 23 and (run / "autoencoder" / "model.safetensors").stat().st_mtime_ns == stamp
    _, resumed = load_run(run)
    assert resumed.scale == model.scale
    for a, b in zip(resumed.vae.state_dict().values(), model.vae.state_dict().values()):
        assert torch.equal(a, b)


def test_command_line_reuses_a_trained_autoencoder(tiny_run, run_cli, tmp_path):
    run = tmp_path / "cli"
    code, out, err = run_cli(
        "train",
        "latent-diffusion",
        "--data",
        "digits",
        "--out",
        run,
        "--steps",
        "10",
        "--autoencoder",
        tiny_run / "autoencoder",
        "--quiet",
        *(
            a
            for k in ("model.diffusion.unet.channels", "train.eval_every", "train.eval_n", "train.threads")
            for a in ("--set", f"{k}={SETTINGS[k]}")
        ),
    )
    assert code == 0, err
    assert not (run / "autoencoder").exists()  # reused, not trained
    saved = json.loads((run / "config.json").read_text())  # the reused VAE's architecture, not the default
    assert saved["model"]["vae"]["latent_channels"] == 2 and saved["model"]["vae"]["net"] == "tiny"
    code, out, err = run_cli(
        "eval", run, "--json", "--n", "32", "--n-samples", "16", "--skip", "speed", "--skip", "quality"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] == "latent-diffusion" and set(result["nats"]["terms"]) == {
        "reconstruction",
        "neg_entropy",
        "latent_prior",
    }
    assert set(result["components"]["autoencoder"]["nats"]["terms"]) == {"reconstruction", "kl"}  # the same VAE's ELBO
    assert result["nats"]["total"] == pytest.approx(sum(result["nats"]["terms"].values()), rel=1e-9)
    assert math.isfinite(result["bpd"]["total"]) and result["bpd"]["ci95"] > 0
    code, _, err = run_cli("sample", run, "--n", "4", "--steps", "8", "--sampler", "ddim", "--out", tmp_path / "s.npz")
    assert code == 0, err
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (4, 1, 8, 8) and images.max() <= 16
    code, _, err = run_cli("interpolate", run, "--out", tmp_path / "i.png", "--pairs", "1", "--frames", "3")
    assert code == 0 and (tmp_path / "i.png").is_file(), err
    # a run that is not a VAE is refused as an autoencoder, in one line
    code, _, err = run_cli(
        "train", "latent-diffusion", "--out", tmp_path / "bad", "--steps", "1", "--quiet", "--autoencoder", run
    )
    assert code == 1 and "must be a VAE run" in err
