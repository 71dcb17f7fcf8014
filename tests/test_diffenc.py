"""DiffEnc (Nielsen et al. 2024): the forward mean x_φ(x, t) = x + σ_t² NN_φ(x, t) learned, in continuous time.

At NN_φ's zero-initialised output the model is VDM's, bound for bound; its velocity ∂x_φ/∂t is the closed form's;
each T-step term is the Gaussian KL of q(z_s|z_t, x) from p(z_s|z_t) computed directly, and the T-step integrand
tends to the continuous one; the encoder gets the bound's gradient; the command line trains, evaluates, samples
and interpolates it."""

import itertools
import math

import pytest
import torch
from conftest import eval_json
from test_contract import test_every_model_declares_its_design_levels as check_design_levels

from elbolab.bounds import Estimator
from elbolab.data import load_data
from elbolab.diffusion import DiffusionConfig, DiffusionModel, GaussianDiffusion
from elbolab.diffusion.continuous import diffusion_integrand, encoded_prior_term
from elbolab.diffusion.encoder import MeanEncoder
from elbolab.diffusion.forward import expand, q_posterior
from elbolab.diffusion.learned_schedule import LearnedSchedule
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.errors import ConfigError
from elbolab.likelihoods import normal_kl
from elbolab.nets.unet import UNetConfig

LEVELS = 17


def config(**overrides):
    base = {"time": "continuous", "T": 20, "unet": UNetConfig(preset="tiny"), "encode_steps": 4, "loss": "vlb"}
    return DiffusionConfig(**{**base, **overrides})


def model_pair(**overrides):
    """A fixed-encoder model and a DiffEnc model with the same denoiser and schedule weights."""
    torch.manual_seed(0)
    fixed = DiffusionModel(config(**overrides), (1, 8, 8), LEVELS)
    learned = DiffusionModel(config(encoder="learned", **overrides), (1, 8, 8), LEVELS)
    missing, unexpected = learned.load_state_dict(fixed.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("diffusion.encoder.") for name in missing)
    return fixed.eval(), learned.eval()


def digit_images(n=6):
    return load_data("digits", "test").model_range(slice(0, n)).float()


def stirred(encoder, seed=0, scale=0.5):
    """The encoder with its zero output layer replaced by random weights (a model that has learned something)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        encoder.out.weight.copy_(scale * torch.randn(encoder.out.weight.shape, generator=g))
    return encoder


def schedule():
    return LearnedSchedule("cosine", 20, -6.0, 5.0, learn_endpoints=False)


@pytest.mark.parametrize(
    "estimator",
    [Estimator("exact", steps=20), Estimator("mc", 8, "stratified"), Estimator("mc", 8, "uniform", steps=5)],
)
def test_at_its_zero_output_the_learned_encoder_gives_the_fixed_encoders_bound(estimator):
    fixed, learned = model_pair()
    x = digit_images()
    a = fixed.elbo(x, estimator, generator=torch.Generator().manual_seed(1))
    b = learned.elbo(x, estimator, generator=torch.Generator().manual_seed(1))
    for name in a.terms:
        assert torch.allclose(b.terms[name], a.terms[name], rtol=1e-6, atol=0), name
    assert torch.allclose(b.total, a.total, rtol=1e-6, atol=0)


@pytest.mark.parametrize("loss", ["vlb", "simple"])
def test_at_its_zero_output_the_losses_agree_and_the_gradient_reaches_the_encoder(loss):
    fixed, learned = model_pair(loss=loss)
    x = digit_images(8)
    a = fixed.train().loss(x, generator=torch.Generator().manual_seed(2))
    b = learned.train().loss(x, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(b, a, rtol=1e-6)
    b.mean().backward()
    grad = learned.diffusion.encoder.out.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_the_velocity_is_the_time_derivative_of_the_mean():
    torch.manual_seed(0)
    encoder = stirred(MeanEncoder(1, 8)).double()
    sched = schedule()
    x = digit_images(3).double()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    h = 1e-5
    _, velocity = encoder(x, t, sched)
    numeric = (encoder(x, t + h, sched)[0] - encoder(x, t - h, sched)[0]) / (2 * h)
    assert torch.allclose(velocity, numeric, rtol=1e-6, atol=1e-8)
    at_zero, _ = MeanEncoder(1, 8).double()(x, t, sched)
    assert torch.equal(at_zero, x)


def wobbly_eps(x_t, t):
    return torch.tanh(1.3 * x_t) + 0.1 * x_t**2


@pytest.mark.parametrize("T", [1, 4, 20])
def test_each_T_step_term_is_the_kl_of_the_encoders_posterior_from_the_model(T):
    """q(z_s|z_t, x) = N(α_s m_s + α_{t|s} σ_s²/σ_t² (z_t − α_t m_t), σ²_{t|s} σ_s²/σ_t²) has the marginals
    N(α_t m_t, σ_t²); p(z_s|z_t) is q's posterior at x̂_0 (VDM's, the generative model unchanged)."""
    torch.manual_seed(0)
    encoder, sched = stirred(MeanEncoder(1, 8)), schedule()
    x = digit_images(4).double()
    g = torch.Generator().manual_seed(3)
    i = torch.randint(1, T + 1, (4,), generator=g)
    t, s = i.double() / T, (i.double() - 1) / T
    eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        term = diffusion_integrand(Denoiser(wobbly_eps), x, t, eps, sched, T, encoder=encoder)
        m_t, m_s = encoder(x, t, sched)[0], encoder(x, s, sched)[0]
    lam_t, lam_s = sched.log_snr(t), sched.log_snr(s)
    a_t, s_t, a_s, s_s = (expand(f(lam), x) for lam in (lam_t, lam_s) for f in (alpha, sigma))
    z_t = a_t * m_t + s_t * eps
    var_ts = s_t**2 - (a_t / a_s) ** 2 * s_s**2
    mean_q = a_s * m_s + (a_t / a_s) * s_s**2 / s_t**2 * (z_t - a_t * m_t)
    var_q = var_ts * s_s**2 / s_t**2
    x0_hat = (z_t - s_t * wobbly_eps(z_t, t)) / a_t
    mean_p, _ = q_posterior(z_t, x0_hat, lam_t, lam_s)
    kl = normal_kl(mean_q - mean_p, torch.log(var_q), 0.0, torch.log(var_q)).flatten(1).sum(1)
    assert torch.allclose(term, kl, rtol=1e-8)


def test_the_T_step_integrand_tends_to_the_continuous_one():
    """Step i's term over its width 1/T tends to ½ γ′ ‖ε + (α/σ) ∂_t x_φ/γ′ − ε̂‖² (the velocity's extra term)."""
    torch.manual_seed(0)
    encoder, sched = stirred(MeanEncoder(1, 8)), schedule()
    x = digit_images(3).double()
    t = torch.full((3,), 0.5, dtype=torch.float64)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        limit = diffusion_integrand(Denoiser(wobbly_eps), x, t, eps, sched, None, encoder=encoder)
        without = diffusion_integrand(Denoiser(wobbly_eps), x, t, eps, sched, None)
        gaps = [
            (T * diffusion_integrand(Denoiser(wobbly_eps), x, t, eps, sched, T, encoder=encoder) / limit - 1)
            .abs()
            .max()
            .item()
            for T in (64, 256, 1024, 4096)
        ]
    assert not torch.allclose(limit, without, rtol=1e-3)  # the encoder changes the integrand
    assert all(b < a for a, b in itertools.pairwise(gaps)) and gaps[-1] < 2e-3


def test_the_prior_and_reconstruction_take_the_encoded_ends():
    torch.manual_seed(0)
    _, learned = model_pair()
    stirred(learned.diffusion.encoder)
    x = digit_images(4)
    bound = learned.elbo(x, Estimator("exact", steps=5), generator=torch.Generator().manual_seed(5))
    assert torch.allclose(bound.total, sum(bound.terms.values()))
    sched = learned.diffusion.schedule
    with torch.no_grad():
        m_1 = learned.diffusion.encoder(x, torch.ones(4, dtype=torch.float64), sched)[0]
        lam_1 = sched.log_snr(torch.ones((), dtype=torch.float64))
        a2, s2 = torch.sigmoid(lam_1), torch.sigmoid(-lam_1)
        direct = 0.5 * (a2 * m_1**2 + s2 - 1 - torch.log(s2)).flatten(1).sum(1)
        assert torch.allclose(bound.terms["prior"], direct, rtol=1e-10)
        assert not torch.allclose(direct, encoded_prior_term(x, sched, None), rtol=1e-6)
    assert torch.isfinite(bound.terms["reconstruction"]).all()


def test_capabilities_declare_a_learned_encoder_and_count_its_parameters():
    fixed, learned = model_pair()
    caps = learned.capabilities
    assert caps.design.encoder == "learned" and caps.design.encoder_steps is None
    assert caps.encoding.learned_parameters == sum(p.numel() for p in learned.diffusion.encoder.parameters()) > 0
    assert fixed.capabilities.encoding.learned_parameters == 0
    for model in (fixed, learned, DiffusionModel(DiffusionConfig.one_step(8), (1, 8, 8), LEVELS)):
        check_design_levels(model)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"encoder": "learned"}, "model.encoder"),
        ({"encoder": "learned", "T": 1}, "model.encoder"),
        ({"encoder": "learnt", "time": "continuous"}, "model.encoder"),
        ({"encoder": "learned", "time": "continuous", "encoder_width": 0}, "model.encoder_width"),
    ],
)
def test_bad_encoder_settings_are_one_line_errors_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        DiffusionConfig(**overrides)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_a_chain_without_the_encoder_a_learned_config_needs_is_refused():
    net = torch.nn.Identity()
    with pytest.raises(ConfigError, match="model.encoder=learned"):
        GaussianDiffusion(config(encoder="learned"), net, LEVELS)


def test_diffenc_trains_evaluates_samples_and_interpolates_through_the_command_line(run_cli, tmp_path):
    run = tmp_path / "diffenc"
    code, _, err = run_cli(
        "train", "diffusion", "--data", "digits", "--out", run, "--steps", "20", "--quiet",
        "--set", "model.time=continuous", "--set", "model.encoder=learned", "--set", "model.loss=vlb",
        "--set", "model.T=20", "--set", "model.encode_steps=4", "--set", "model.unet.preset=tiny",
        "--set", "train.threads=1", "--set", "train.eval_every=0", "--set", "train.eval_n=32",
    )  # fmt: skip
    assert code == 0, err
    result = eval_json(run_cli, run, 32)
    terms = result["nats"]["terms"]
    assert set(terms) == {"prior", "diffusion", "reconstruction"}
    assert result["nats"]["total"] == pytest.approx(sum(terms.values()), rel=1e-9)
    assert math.isfinite(result["bpd"]["total"]) and result["bpd"]["total"] > 0
    code, _, err = run_cli("sample", run, "--n", "4", "--steps", "8", "--out", tmp_path / "s.png")
    assert code == 0, err
    code, _, err = run_cli("interpolate", run, "--out", tmp_path / "i.png")
    assert code == 0, err
