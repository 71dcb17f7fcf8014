"""The image model: the GenerativeModel contract on digits-shaped input, the UNet on every supported shape."""

import pytest
import torch

from elbolab.bounds import Estimator
from elbolab.config import from_dict, to_dict, with_overrides
from elbolab.diffusion import DiffusionConfig, DiffusionModel
from elbolab.errors import ConfigError, DataError
from elbolab.nets.embeddings import sinusoidal_embedding
from elbolab.nets.unet import UNet, UNetConfig

TINY = UNetConfig(preset="tiny")


def digits(n, seed=0):
    """[n, 1, 8, 8] images on the 17 levels of scikit-learn's digits, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 17, (n, 1, 8, 8), generator=g).float() / 8 - 1


def tiny_model(**overrides):
    torch.manual_seed(0)
    return DiffusionModel(DiffusionConfig(T=20, unet=TINY, **overrides), (1, 8, 8), 17)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 7, 7), (4, 4, 4)])
@pytest.mark.parametrize("learned", [False, True])
def test_unet_shapes(shape, learned):
    """Every shape goes through, each image on its own: no batch statistics mix images."""
    c, h, w = shape
    out_channels = 2 * c if learned else c
    net = UNet(c, out_channels, UNetConfig(preset="tiny"), image_size=h)
    torch.nn.init.normal_(net.out[-1].weight, generator=torch.Generator().manual_seed(0))  # zero-initialised
    x, t = torch.randn(3, c, h, w), torch.rand(3)
    with torch.no_grad():
        out = net(x, t)
        assert out.shape == (3, out_channels, h, w)
        assert out.abs().amax() > 0
        torch.testing.assert_close(net(x[1:2], t[1:2]), out[1:2], atol=1e-4, rtol=1e-4)


def test_unet_28_keeps_the_skip_sizes_with_three_downsamplings():
    net = UNet(
        1,
        1,
        UNetConfig(preset="small", channel_mult=(1, 2, 2, 2), channels=8, num_res_blocks=1, groups=8),
        image_size=28,
    )
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape
    torch.nn.init.normal_(net.out[-1].weight)  # zero-initialised output: make it pass gradients to the input
    net(x, torch.rand(2)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unet_presets_and_overrides():
    assert UNetConfig(preset="base").spec().channels == 128
    assert UNetConfig(preset="small", channels=48).spec().channels == 48
    with pytest.raises(ConfigError):
        UNetConfig(preset="tiny", heads=3).spec()
    with pytest.raises(ConfigError):
        UNetConfig(preset="huge").spec()


def test_sinusoidal_embedding():
    t = torch.tensor([0.0, 1.0, 500.0])
    e = sinusoidal_embedding(t, 8)
    assert e.shape == (3, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    assert not torch.allclose(e[1], e[2])
    assert sinusoidal_embedding(t, 7).shape == (3, 7)


def test_bound_terms_are_finite_with_the_right_shapes():
    model = tiny_model()
    x = digits(4)
    for method in ("exact", "mc"):
        bound = model.elbo(x, Estimator(method, None if method == "exact" else 4), torch.Generator().manual_seed(0))
        assert set(bound.terms) == {"prior", "diffusion", "reconstruction"}
        assert all(v.shape == (4,) and torch.isfinite(v).all() for v in bound.terms.values())
        assert bound.dims == 64 and bound.discrete
        assert torch.isfinite(bound.bits_per_dim()).all()
    exact = model.elbo(x, Estimator("exact"))
    assert exact.per_step.shape == (4, 20)
    torch.testing.assert_close(exact.per_step.sum(1) + exact.terms["prior"], exact.total)
    mc = model.elbo(x, Estimator("mc", 3))
    assert mc.extras["stderr"].shape == (4,) and mc.per_step is None
    assert not model.diffusion.elbo(x, Estimator("exact"), discrete=False).discrete
    with pytest.raises(ConfigError, match="no 'iwae' bound"):
        model.elbo(x, Estimator("iwae", 5))
    with pytest.raises(ConfigError, match="unknown bound estimator"):
        Estimator("sum")
    with pytest.raises(DataError):
        model.elbo(torch.zeros(2, 1, 8, 9))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"parameterisation": "x0"},
        {"parameterisation": "v", "timesteps": "importance"},
        {"loss": "vlb", "variance": "large"},
        {"loss": "hybrid", "variance": "learned", "timesteps": "importance"},
    ],
)
def test_loss_backpropagates(overrides):
    model = tiny_model(**overrides)
    loss = model.loss(digits(6))
    assert loss.shape == (6,) and torch.isfinite(loss).all()
    loss.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_hybrid_loss_trains_the_variance_only_through_the_bound():
    """L_simple gives the variance channels no gradient; λ L_vlb does, and (mean frozen) adds none to the mean."""
    grads = {}
    for weight in (0.0, 0.001):
        model = tiny_model(loss="hybrid", variance="learned", hybrid_weight=weight)
        last = model.diffusion.net.out[-1]
        torch.nn.init.normal_(last.weight, std=0.01, generator=torch.Generator().manual_seed(1))
        model.loss(digits(8), generator=torch.Generator().manual_seed(0)).mean().backward()
        grads[weight] = last.weight.grad[:1].clone(), last.weight.grad[1:].clone()  # (mean, variance) channels
    assert grads[0.0][1].abs().sum() == 0 and grads[0.001][1].abs().sum() > 0
    assert grads[0.0][0].abs().sum() > 0
    torch.testing.assert_close(grads[0.001][0], grads[0.0][0])


def test_importance_sampler_history_is_saved_with_the_model():
    model = tiny_model(loss="vlb", variance="small", timesteps="importance")
    model.train()
    for seed in range(30):
        model.loss(digits(32, seed), generator=torch.Generator().manual_seed(seed))
    resampler = model.diffusion.resampler
    assert resampler.ready()
    state = model.state_dict()
    assert "diffusion.resampler.losses" in state and "diffusion.resampler.seen" in state
    clone = tiny_model(loss="vlb", variance="small", timesteps="importance")
    clone.load_state_dict(state)
    torch.testing.assert_close(clone.diffusion.resampler.probabilities(), resampler.probabilities())
    assert not torch.allclose(resampler.probabilities(), torch.full((20,), 1 / 20, dtype=torch.float64))
    # with a history the Monte-Carlo bound draws t from it, and is still finite
    bound = model.elbo(digits(3), Estimator("mc", 4))
    assert torch.isfinite(bound.total).all()


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpm-solver++"])
def test_sample_returns_levels(sampler):
    model = tiny_model()
    images = model.sample(3, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 8, 8) and images.dtype == torch.uint8 and int(images.max()) <= 16
    again = model.sample(3, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, again)


def test_sample_with_the_config_defaults_and_learned_variance():
    model = tiny_model(loss="hybrid", variance="learned")
    g = lambda: torch.Generator().manual_seed(0)
    images = model.sample(2, generator=g())  # ancestral over all T = 20 steps, learned variance
    assert images.shape == (2, 1, 8, 8) and torch.equal(images, model.sample(2, generator=g()))
    # DDIM with η = 1 draws fresh noise at every step, η = 0 none: from one x_T they part
    stochastic, deterministic = (model.sample(2, g(), sampler="ddim", steps=3, eta=eta) for eta in (1.0, 0.0))
    assert (
        stochastic.dtype == torch.uint8 and int(stochastic.max()) <= 16 and not torch.equal(stochastic, deterministic)
    )


def test_encode_decode_invert_each_other_when_the_network_predicts_no_noise():
    """With ε̂ ≡ 0 (the zero-initialised output layer) a DDIM step is x_s = (α_s/α_t) x_t, exactly invertible:
    decode(encode(x)) = x, and an interpolation starts and ends at its two images."""
    model = tiny_model(encode_steps=4)
    x = digits(3)
    levels = torch.round((x + 1) * 8).to(torch.uint8)
    z = model.encode(x, steps=5)
    assert z.shape == x.shape and z.dtype == torch.float32 and torch.isfinite(z).all()
    assert not torch.allclose(z, x)  # x_T is x scaled by α_T/α_0, not x
    images = model.decode(z, steps=5)
    assert images.dtype == torch.uint8 and torch.equal(images, levels)
    frames = model.interpolate(x[:2], x[1:], frames=3)
    assert frames.shape == (2, 3, 1, 8, 8)
    assert torch.equal(frames[:, 0], levels[:2]) and torch.equal(frames[:, -1], levels[1:])


def test_a_few_training_steps_lower_the_loss():
    model = tiny_model()
    x = digits(16)
    fixed = lambda: model.loss(x, generator=torch.Generator().manual_seed(0)).mean()
    before = fixed().item()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(25):
        opt.zero_grad()
        model.loss(x, generator=torch.Generator().manual_seed(100 + step)).mean().backward()
        opt.step()
    after = fixed().item()
    print(f"\nL_simple on a fixed batch: {before:.3f} → {after:.3f}")
    assert after < 0.8 * before, (before, after)


def test_config_validation_and_round_trip():
    cfg = DiffusionConfig()
    assert cfg.T == 1000 and cfg.unet.preset == "small"
    again = from_dict(DiffusionConfig, to_dict(with_overrides(cfg, {"unet.channels": "48", "T": "200"})))
    assert again.unet.channels == 48 and again.T == 200
    for bad in (
        {"variance": "learned"},
        {"loss": "hybrid"},
        {"T": 10, "schedule": "linear"},
        {"sample_steps": 2000},
        {"T": 0},
        {"elbo_samples": 1},
        {"unet": UNetConfig(heads=5)},
    ):
        with pytest.raises(ConfigError):
            DiffusionConfig(**bad)
    assert tiny_model(loss="hybrid", variance="learned").objective.startswith("L_hybrid")
