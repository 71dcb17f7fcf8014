"""The hierarchical VAE: its bound against a two-level linear-Gaussian oracle whose log p(x) is exact, the L = 1
hierarchy against the VAE's bound on the same weights, per-level KLs, update skipping and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from elbolab.bounds import Estimator, mean_ci95, sum_per_example
from elbolab.config import with_overrides
from elbolab.data import load_data
from elbolab.errors import ConfigError
from elbolab.hvae import HierarchicalVAE, HVAEConfig, level_kl, log_prior_over_posterior, top_down
from elbolab.hvae.bound import Gaussian, posterior_draw
from elbolab.likelihoods import normal_log_prob
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer
from elbolab.vae import elbo_terms

# ---------------------------------------------------------------- the oracle

D = 5
A = torch.linspace(0.5, 2.0, D, dtype=torch.float64)  # z_1 | z_2 ~ N(A z_2, S1²)
B = torch.linspace(1.5, 0.4, D, dtype=torch.float64)  # x | z_1 ~ N(B z_1, S²)
S1, S = 0.7, 0.3


class _Top:
    """z_2 ~ N(0, 1); q(z_2 | x) is the exact posterior, shrunk by `scale` (1: exact)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def prior(self, h: torch.Tensor) -> tuple[Gaussian, torch.Tensor]:
        return (torch.zeros_like(h), torch.zeros_like(h)), torch.zeros_like(h)

    def posterior(self, h: torch.Tensor, x: torch.Tensor, prior: Gaussian) -> Gaussian:
        v = B**2 * S1**2 + S**2  # x | z_2 ~ N(A B z_2, v)
        precision = 1 + (A * B) ** 2 / v
        return self.scale * (A * B * x / v) / precision, -precision.log().expand_as(x)

    def update(self, h: torch.Tensor, feature: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z


class _Bottom:
    """z_1 | z_2 ~ N(A z_2, S1²); q(z_1 | z_2, x) the exact conditional posterior."""

    def prior(self, h: torch.Tensor) -> tuple[Gaussian, torch.Tensor]:
        return (A * h, torch.full_like(h, 2 * math.log(S1))), torch.zeros_like(h)

    def posterior(self, h: torch.Tensor, x: torch.Tensor, prior: Gaussian) -> Gaussian:
        precision = 1 / S1**2 + B**2 / S**2
        return (A * h / S1**2 + B * x / S**2) / precision, -precision.log().expand_as(x)

    def update(self, h: torch.Tensor, feature: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z


@pytest.fixture
def oracle():
    g = torch.Generator().manual_seed(4)
    z2 = torch.randn(32, D, generator=g, dtype=torch.float64)
    z1 = A * z2 + S1 * torch.randn(32, D, generator=g, dtype=torch.float64)
    x = B * z1 + S * torch.randn(32, D, generator=g, dtype=torch.float64)
    variance = (A * B) ** 2 + B**2 * S1**2 + S**2
    log_px = normal_log_prob(x, 0.0, variance.log()).sum(1)
    return x, log_px


def _log_lik(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return normal_log_prob(x, B * h, 2 * math.log(S)).sum(1)


def _negative_elbo(x, levels, generator):
    """One draw of the hierarchical bound's terms through the library's `top_down`: −log p(x|z) + Σ_l KL_l."""
    h, draws = top_down(levels, torch.zeros_like(x), x, posterior_draw(generator))
    kls = [sum_per_example(level_kl(d)) for d in draws]
    return -_log_lik(x, h), kls, draws, h


def test_with_the_exact_posterior_every_log_weight_is_log_px(oracle):
    x, log_px = oracle
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        _, _, draws, h = _negative_elbo(x, [_Top(), _Bottom()], g)
        torch.testing.assert_close(_log_lik(x, h) + log_prior_over_posterior(draws), log_px, rtol=0, atol=1e-10)


def test_the_hierarchical_elbo_with_closed_form_kls_is_log_px_in_expectation(oracle):
    x, log_px = oracle
    reps = 20_000
    xs = x.repeat(reps, 1)
    recon, kls, _, _ = _negative_elbo(xs, [_Top(), _Bottom()], torch.Generator().manual_seed(1))
    assert all((kl >= 0).all() for kl in kls)
    estimate, half_width = mean_ci95(-(recon + sum(kls)) - log_px.repeat(reps))
    assert abs(estimate) < 1.5 * half_width  # ≈ 3 standard errors
    assert half_width < 2e-3 * D
    # a worse q(z_2 | x) gives a strictly lower bound, and the gap sits in the bound's terms
    recon, kls, _, _ = _negative_elbo(xs, [_Top(scale=0.5), _Bottom()], torch.Generator().manual_seed(1))
    gap, gap_ci = mean_ci95(log_px.repeat(reps) + recon + sum(kls))
    assert gap - gap_ci > 0.05


# ---------------------------------------------------------------- the model


def _model(shape=(1, 8, 8), levels=17, **changes) -> HierarchicalVAE:
    torch.manual_seed(0)
    return HierarchicalVAE(HVAEConfig(net="tiny", **changes), shape, levels)


def _digits(n=6) -> torch.Tensor:
    return load_data("digits", "test").model_range(slice(0, n))


def _perturb_priors(model: HierarchicalVAE) -> None:
    """Move every prior off N(0, I) (it starts there: its last convolution is zero)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for block in model.blocks:
            last = block.prior_net[-1]
            last.weight.copy_(0.05 * torch.randn(last.weight.shape, generator=g))


def test_one_level_at_initialisation_is_the_vae_bound_on_the_same_weights():
    model = _model(L=1)
    x = _digits()
    h0, features = model.initial_state(len(x)), model.bottom_up(x)
    block = model.blocks[0]
    prior, feature = block.prior(h0)
    assert all(torch.equal(p, torch.zeros_like(p)) for p in (*prior, feature))  # p(z_1) = N(0, I)
    mean, logvar = block.posterior(h0, features, prior)
    recon, kl = elbo_terms(  # the VAE's own bound, given this model's q(z|x) and p(x|z)
        mean,
        logvar,
        lambda z: model.log_likelihood(x, model.decoder(block.update(h0, feature, z))),
        samples=1,
        generator=torch.Generator().manual_seed(3),
    )
    bound = model.elbo(x, Estimator("mc", 1), torch.Generator().manual_seed(3))
    assert list(bound.terms) == ["reconstruction", "kl_1"]
    torch.testing.assert_close(bound.terms["reconstruction"], recon)
    torch.testing.assert_close(bound.terms["kl_1"], kl)


@pytest.mark.parametrize("residual", [False, True])
def test_per_level_kls_are_non_negative_and_add_up_to_the_bound_and_the_rates(residual):
    model = _model(L=3, latent_channels=(1, 2, 3), residual_posterior=residual)
    _perturb_priors(model)
    x = _digits()
    bound = model.elbo(x, Estimator("mc", 4), torch.Generator().manual_seed(0))
    assert list(bound.terms) == ["reconstruction", "kl_3", "kl_2", "kl_1"]
    kls = torch.stack([bound.terms[f"kl_{level}"] for level in (3, 2, 1)])
    assert (kls >= 0).all() and (kls.sum(0) > 0).all()
    torch.testing.assert_close(bound.total, bound.terms["reconstruction"] + kls.sum(0))
    assert (bound.extras["stderr"] >= 0).all()
    # the information hook's per-level rates are the bound's KL terms, on the same draws
    data = load_data("digits", "test").subset(6)
    info = model.information(data, n=6, generator=torch.Generator().manual_seed(0))
    one_draw = model.elbo(x, Estimator("mc", 1), torch.Generator().manual_seed(0))
    assert [lv.level for lv in info.levels] == [3, 2, 1]
    assert [lv.latent_dims for lv in info.levels] == [16, 32, 48]
    for lv in info.levels:
        assert lv.rate_nats == pytest.approx(one_draw.terms[f"kl_{lv.level}"].mean().item(), rel=1e-5)
    assert info.latent.rate_nats == pytest.approx(sum(lv.rate_nats for lv in info.levels), rel=1e-5)
    assert info.latent.active_units == sum(lv.active_units for lv in info.levels)
    assert json.loads(json.dumps(info.to_json()))["levels"][0]["level"] == 3


def test_the_loss_is_the_bound_with_kl_warm_up_weighting_every_level():
    model = _model(L=3, kl_warmup_steps=100)
    _perturb_priors(model)
    x = _digits()
    torch.manual_seed(1)
    loss = model.loss(x, step=25)
    torch.manual_seed(1)  # the same draws of z_3, z_2, z_1
    terms = model._draw(x, model.bottom_up(x), None)
    kl = terms["kl_3"] + terms["kl_2"] + terms["kl_1"]
    torch.testing.assert_close(loss, terms["reconstruction"] + 0.25 * kl)
    torch.manual_seed(1)
    torch.testing.assert_close(model.loss(x, step=500), terms["reconstruction"] + kl)


def test_the_importance_weighted_bound_is_at_least_as_tight_as_the_elbo():
    model = _model()
    _perturb_priors(model)
    x = _digits(4)
    elbo = model.elbo(x, Estimator("mc", 200), torch.Generator().manual_seed(0)).total
    iwae = model.elbo(x, Estimator("iwae", 200), torch.Generator().manual_seed(0)).total
    assert (iwae <= elbo + 1e-3).all() and (iwae < elbo).any()


@pytest.mark.parametrize("shape, levels", [((1, 8, 8), 17), ((1, 28, 28), 256), ((3, 32, 32), 256)])
def test_full_size_levels_hold_as_many_values_as_x_on_every_shape(shape, levels):
    model = _model(shape, levels, latent="full")
    d = math.prod(shape)
    assert all(math.prod(s) == d for s in model.level_shapes)
    assert model.capabilities.design.latent_fraction == 1.0 and model.capabilities.design.latent == "full"
    x = torch.rand(2, *shape) * 2 - 1
    assert torch.isfinite(model.elbo(x).total).all()
    assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, *shape)


def test_design_levels_count_the_levels_and_the_widest_one():
    design = _model(L=3, latent_channels=(1, 2, 3)).capabilities.design
    assert (design.encoder, design.encoder_steps, design.decoder_steps) == ("learned", 3, 3)
    assert design.latent_fraction == 48 / 64 and design.objective == "ELBO"
    assert _model(beta=0.5).capabilities.design.objective == "β-ELBO"
    assert _model(free_bits=0.1).capabilities.design.objective == "β-ELBO"


def test_decoding_a_top_level_code_is_deterministic_and_interpolation_ends_at_the_codes():
    model = _model(L=3)
    _perturb_priors(model)
    x = _digits(2)
    z = model.encode(x)
    assert z.shape == (2, *model.level_shapes[0])
    torch.testing.assert_close(model.encode(x), z)  # the posterior mean: no draw
    ends = model.decode(z)
    assert torch.equal(ends, model.decode(z))
    frames = model.interpolate(x[:1], x[1:], 5)
    assert torch.equal(frames[0, 0], ends[0]) and torch.equal(frames[0, -1], ends[1])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("L", "0", "model.L=0 is out of range"),
        ("latent_channels", "0", "model.latent_channels='0' is out of range"),
        ("latent_channels", "2,0", "model.latent_channels='2,0' is out of range"),
        ("latent_channels", "1,2,3", "L = 2 of them"),
        ("skip_threshold", "-1", "model.skip_threshold=-1.0 is out of range"),
        ("latent", "huge", "model.latent: 'huge' is not allowed"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message) as exc:
        with_overrides(HVAEConfig(), {key: value}, "model.")
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- update skipping


def test_an_update_with_a_huge_gradient_is_skipped_and_the_weights_stay(tmp_path):
    train, test = load_data("digits", "train").subset(64), load_data("digits", "test").subset(16)
    model = _model()
    assert model.skip_gradient_norm == math.inf  # no scale before the first step
    cfg = TrainConfig(steps=3, batch_size=16, eval_every=0, eval_n=16, warmup_steps=0, grad_clip=1.0)
    trainer = Trainer(model, train, test, cfg, tmp_path, progress=False, say=lambda _: None)
    weights = lambda: [p.detach().clone() for p in model.parameters()]
    first = trainer.train_step()  # an ordinary step moves the weights and sets the running scale
    assert "loss" in first and model.skip_gradient_norm == pytest.approx(10.0 * first["grad_norm"], rel=1e-6)
    before = weights()
    handle = model.decoder.net[-1].weight.register_hook(lambda g: g * 1e8)  # a huge, finite gradient
    skipped = trainer.train_step()
    handle.remove()
    limit = f"skip_gradient_norm {10.0 * first['grad_norm']:g}"  # judged on the scale before the spike entered it
    assert "gradient norm" in skipped["skipped"] and limit in skipped["skipped"], skipped
    assert all(torch.equal(a, b) for a, b in zip(before, weights(), strict=True))
    assert trainer.nonfinite_in_a_row == 0  # no fault: nothing to roll back for
    assert "loss" in trainer.train_step()
    assert not all(torch.equal(a, b) for a, b in zip(before, weights(), strict=True))


def test_a_lasting_change_of_scale_is_taken_up_within_a_few_steps(tmp_path):
    """Every gradient 1,000 times larger from the second step on: the first such updates are skipped, then the
    running scale has taken the new size up and the updates are applied again (a fixed threshold would skip them
    all, for ever: the weights would never change again)."""
    train, test = load_data("digits", "train").subset(64), load_data("digits", "test").subset(16)
    model = _model()
    cfg = TrainConfig(steps=40, batch_size=16, eval_every=0, eval_n=16, warmup_steps=0, grad_clip=1.0)
    trainer = Trainer(model, train, test, cfg, tmp_path, progress=False, say=lambda _: None)
    assert "loss" in trainer.train_step()
    handle = model.decoder.net[-1].weight.register_hook(lambda g: g * 1e3)
    records = [trainer.train_step() for _ in range(30)]
    handle.remove()
    skipped = [i for i, r in enumerate(records) if "skipped" in r]
    assert skipped and skipped[0] == 0 and len(skipped) <= 15, skipped  # log(0.9)/log(0.99) ≈ 11 steps of it
    assert all("loss" in r for r in records[skipped[-1] + 1 :]) and skipped[-1] < 20


def test_with_skipping_off_the_same_gradient_is_clipped_and_applied(tmp_path):
    train, test = load_data("digits", "train").subset(64), load_data("digits", "test").subset(16)
    model = _model(skip_threshold=0.0)
    assert model.skip_gradient_norm == math.inf
    cfg = TrainConfig(steps=3, batch_size=16, eval_every=0, eval_n=16, warmup_steps=0, grad_clip=1.0)
    trainer = Trainer(model, train, test, cfg, tmp_path, progress=False, say=lambda _: None)
    before = [p.detach().clone() for p in model.parameters()]
    handle = model.decoder.net[-1].weight.register_hook(lambda g: g * 1e8)
    record = trainer.train_step()
    handle.remove()
    assert "loss" in record and record["grad_norm"] > 1e6
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


# ---------------------------------------------------------------- the command line


def test_train_eval_sample_interpolate_and_resume_on_digits(run_cli, tmp_path):
    run = tmp_path / "hvae"
    common = ("--set", "train.threads=1", "--set", "train.eval_every=0", "--quiet")
    code, out, err = run_cli("train", "hvae", "--data", "digits", "--out", run, "--steps", "50", *common)
    assert code == 0, err
    assert "step 50" in out
    code, out, err = run_cli("eval", run, "--json", "--only-bound", "--n", "64", "--estimator", "mc:2")
    assert code == 0, err
    result = json.loads(out)
    nats = result["nats"]
    assert set(nats["terms"]) == {"reconstruction", "kl_2", "kl_1"}
    assert nats["total"] == pytest.approx(sum(nats["terms"].values()), rel=1e-6)
    assert nats["total"] > 0 and result["bpd"]["total"] == pytest.approx(nats["total"] / (64 * math.log(2)))
    code, out, err = run_cli("sample", run, "--n", "8", "--out", tmp_path / "s.npz")
    assert code == 0, err
    import numpy as np

    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (8, 1, 8, 8) and images.max() <= 16
    code, _, err = run_cli("interpolate", run, "--out", tmp_path / "i.png", "--pairs", "2", "--frames", "4")
    assert code == 0 and (tmp_path / "i.png").is_file(), err
    code, out, err = run_cli("train", "hvae", "--out", run, "--resume", "--steps", "60", *common)
    assert code == 0 and "step 60" in out, err


def test_the_command_line_refuses_zero_levels_in_one_line(run_cli, tmp_path):
    code, _, err = run_cli("train", "hvae", "--data", "digits", "--out", tmp_path / "r", "--set", "model.L=0")
    assert code != 0 and "model.L=0 is out of range" in err and "Traceback" not in err


# ---------------------------------------------------------------- conditional


def conditional_pair() -> tuple[HierarchicalVAE, HierarchicalVAE]:
    """An unconditional hierarchical VAE and a conditional one with the same weights (its class maps at zero)."""
    torch.manual_seed(0)
    plain = HierarchicalVAE(HVAEConfig(net="tiny"), (1, 8, 8), 17)
    conditional = HierarchicalVAE(HVAEConfig(net="tiny", conditional=True), (1, 8, 8), 17, classes=10)
    missing, unexpected = conditional.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("input_class.", "state_class.")) for k in missing)
    return plain.eval(), conditional.eval()


def test_the_conditional_hvae_with_zero_class_maps_is_the_unconditional_one():
    plain, conditional = conditional_pair()
    data = load_data("digits", "test")
    x, y = data.model_range(slice(0, 12)), data.labels[:12]
    for estimator in (Estimator("mc", 3), Estimator("iwae", 4)):
        given = conditional.elbo(x, estimator, torch.Generator().manual_seed(1), y=y)
        alone = plain.elbo(x, estimator, torch.Generator().manual_seed(1))
        assert torch.equal(given.total, alone.total)
    torch.manual_seed(5)
    loss = conditional.loss(x, y=y)
    torch.manual_seed(5)
    assert torch.equal(loss, plain.loss(x))
    with pytest.raises(ConfigError, match="pass y"):
        conditional.elbo(x)
    assert conditional.capabilities.classes == 10 and "y" in conditional.capabilities.sample_options


def test_the_conditional_hvae_bound_depends_on_the_label_and_adds_up():
    _, model = conditional_pair()
    torch.manual_seed(3)
    for table in (model.input_class.embedding.weight, model.state_class.embedding.weight):
        torch.nn.init.normal_(table, std=0.5)
    data = load_data("digits", "test")
    x, y = data.model_range(slice(0, 8)), data.labels[:8]
    with torch.no_grad():
        true = model.elbo(x, Estimator("mc", 2), torch.Generator().manual_seed(1), y=y)
        other = model.elbo(x, Estimator("mc", 2), torch.Generator().manual_seed(1), y=(y + 1) % 10)
    assert not torch.allclose(true.total, other.total)
    assert torch.allclose(sum(true.terms.values()), true.total)
    assert set(true.terms) == {"reconstruction", *model.level_names}
    samples = model.sample(6, torch.Generator().manual_seed(0), y=torch.tensor([0, 1, 2, 3, 4, 5]))
    assert samples.shape == (6, 1, 8, 8) and samples.dtype == torch.uint8
    with pytest.raises(Exception, match="label") as bad:
        model.sample(2, y=torch.tensor([0, 10]))
    assert len(str(bad.value).splitlines()) == 1
    loss = model.loss(x, y=y).mean()
    loss.backward()
    assert (
        model.state_class.embedding.weight.grad is not None and model.state_class.embedding.weight.grad.abs().sum() > 0
    )


def test_the_conditional_hvae_trains_from_the_command_line(tmp_path, run_cli):
    common = [
        "--data",
        "digits",
        "--steps",
        "20",
        "--quiet",
        "--set",
        "model.conditional=true",
        "--set",
        "model.net=tiny",
    ]
    code, _, err = run_cli("train", "hvae", "--out", tmp_path / "h", *common, "--set", "train.threads=1")
    assert code == 0, err
    code, _, err = run_cli("sample", tmp_path / "h", "--n", "2", "--class", "3,4", "--out", tmp_path / "s.png")
    assert code == 0, err
    assert (tmp_path / "s.png").is_file()
    code, _, err = run_cli("sample", tmp_path / "h", "--n", "2", "--class", "10", "--out", tmp_path / "t.png")
    assert code == 1 and len(err.strip().splitlines()) == 1
