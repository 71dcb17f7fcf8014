"""Class-conditional models and classifier-free guidance: labels in the data, the bound on log p(x | y), the null
class, guidance's end points, brief training on digits, the command line, and bad labels as one-line errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from elbolab.bounds import Bound, Estimator
from elbolab.data import ImageData, load_data
from elbolab.diffusion.bound import exact_bound
from elbolab.diffusion.conditioning import by_class, drop_labels, guide
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.model import DiffusionModel
from elbolab.diffusion.samplers import SAMPLERS
from elbolab.errors import ConfigError, DataError
from elbolab.nets.unet import UNetConfig
from elbolab.vae.model import VAE, VAEConfig

SHAPE, LEVELS, K = (1, 8, 8), 17, 10


def digits_batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_data("digits", "test")
    return data.model_range(slice(0, n)), data.labels[:n]


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def diffusion_pair(**over) -> tuple[DiffusionModel, DiffusionModel]:
    """An unconditional diffusion model and a conditional one with the same weights: the class embedding random
    for the K labels and zero for the null class."""
    cfg = DiffusionConfig(T=12, unet=UNetConfig(preset="tiny"), **over)
    torch.manual_seed(0)
    plain = DiffusionModel(cfg, SHAPE, LEVELS)
    with torch.no_grad():  # the zero-initialised layers would hide the time and the label: perturb every weight
        for p in plain.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    conditional = DiffusionModel(replace(cfg, conditional=True), SHAPE, LEVELS, K)
    missing = conditional.load_state_dict(plain.state_dict(), strict=False)
    assert missing.missing_keys == ["diffusion.net.class_embed.weight"] and not missing.unexpected_keys
    with torch.no_grad():
        conditional.diffusion.net.class_embed.weight.normal_()
        conditional.diffusion.net.class_embed.weight[K].zero_()
    return plain.eval(), conditional.eval()


# ---- labels in the data


def test_every_built_in_data_set_carries_its_labels(shared_data):
    digits = load_data("digits", "train")
    assert digits.classes == 10 and digits.labels.shape == (len(digits),)
    for name in ("mnist", "fashion-mnist"):
        data = load_data(name, "test", shared_data)
        assert data.classes == 10 and data.labels.dtype == torch.int64
    cifar = load_data("cifar10", "test", shared_data / "cifar-10-subset")
    assert cifar.labels is not None and cifar.labels.max() < 10


def test_bad_labels_are_one_line_errors():
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    for labels, message in (
        (torch.tensor([0, 1, -1, 2]), "label -1 is out of range"),
        (torch.tensor([0, 1, 2]), "3 labels for 4 images"),
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), "1-D tensor of integers"),
    ):
        with pytest.raises(DataError, match=message) as exc:
            ImageData("toy", images, 17, labels)
        assert "\n" not in str(exc.value)
    with pytest.raises(DataError, match="model.conditional=true needs labels, and toy has none"):
        ImageData("toy", images, 17).require_labels("model.conditional=true")
    model = VAE(VAEConfig(net="tiny", conditional=True), SHAPE, LEVELS, K)
    x, _ = digits_batch(4)
    with pytest.raises(DataError, match="label 10 is out of range; labels must be in 0..9"):
        model.elbo(x, y=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ConfigError, match="not conditional"):
        VAE(VAEConfig(net="tiny"), SHAPE, LEVELS).elbo(x, y=torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ConfigError, match="model.label_dropout must be a probability"):
        DiffusionConfig(conditional=True, label_dropout=1.5)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        DiffusionModel(DiffusionConfig(T=4, unet=UNetConfig(preset="tiny"), conditional=True), SHAPE, LEVELS, None)


# ---- the bound and the null class


def test_the_null_class_bound_is_the_unconditional_models_and_dropout_one_its_loss():
    plain, conditional = diffusion_pair()
    x, y = digits_batch()
    exact = Estimator("exact")
    with torch.no_grad():
        unconditional = plain.elbo(x, exact, gen()).total
        assert torch.equal(conditional.elbo(x, exact, gen()).total, unconditional)
        assert not torch.allclose(conditional.elbo(x, exact, gen(), y=torch.full_like(y, 3)).total, unconditional)
    for p, same in ((1.0, True), (0.0, False)):
        model = DiffusionModel(
            DiffusionConfig(T=12, unet=UNetConfig(preset="tiny"), conditional=True, label_dropout=p), SHAPE, LEVELS, K
        )
        model.load_state_dict(conditional.state_dict())
        loss = model.loss(x, generator=gen(), y=y)
        assert torch.equal(loss, plain.loss(x, generator=gen())) == same


def test_a_constant_label_whose_embedding_is_the_null_ones_matches_the_unconditional_bound():
    plain, conditional = diffusion_pair()
    with torch.no_grad():
        conditional.diffusion.net.class_embed.weight[5].zero_()
    x, _ = digits_batch()
    with torch.no_grad():
        for estimator in (Estimator("exact"), Estimator("mc", 4)):
            given = conditional.elbo(x, estimator, gen(), y=torch.full((len(x),), 5)).total
            assert torch.equal(given, plain.elbo(x, estimator, gen()).total)


def test_the_conditional_bounds_terms_add_up_and_each_example_keeps_its_own_label():
    _, conditional = diffusion_pair()
    x, y = digits_batch()
    with torch.no_grad():
        bound = conditional.elbo(x, Estimator("exact"), gen(), y=y)
    assert torch.allclose(sum(bound.terms.values()), bound.total)
    assert torch.allclose(bound.per_step.sum(1) + bound.terms["prior"], bound.total)
    # with the same ε per example, each example's bound among mixed labels is its bound alone under its label
    eps = torch.randn((len(x), *SHAPE), generator=gen(7), dtype=torch.float64)
    d = conditional.diffusion

    def exact(index: torch.Tensor, k: torch.Tensor) -> Bound:
        return exact_bound(d.denoiser(True, k), x[index], d.schedule, levels=LEVELS, eps=eps[index])

    with torch.no_grad():
        together = by_class(exact, torch.arange(len(x)), y).total
        alone = torch.cat([exact(torch.tensor([i]), y[i : i + 1]).total for i in range(len(x))])
        wrong = by_class(exact, torch.arange(len(x)), (y + 1) % K).total
    assert torch.allclose(together, alone, rtol=1e-6)
    assert not torch.allclose(together, wrong, rtol=1e-3)
    vae = VAE(VAEConfig(net="tiny", conditional=True), SHAPE, LEVELS, K)
    vb = vae.elbo(x, Estimator("mc", 3), gen(), y=y)
    assert torch.allclose(vb.terms["reconstruction"] + vb.terms["kl"], vb.total)


def test_by_class_puts_every_example_back_in_its_place():
    x = torch.arange(6.0)[:, None]
    y = torch.tensor([2, 0, 2, 1, 0, 1])

    def bound_of(xs: torch.Tensor, k: torch.Tensor) -> Bound:
        total = xs[:, 0] * 10 + k.double()
        return Bound({"a": total}, 1, per_step=total[:, None].repeat(1, 3), extras={"stderr": -total})

    bound = by_class(bound_of, x, y)
    expected = torch.arange(6.0) * 10 + y
    assert torch.equal(bound.total, expected)
    assert torch.equal(bound.per_step[:, 2], expected) and torch.equal(bound.extras["stderr"], -expected)


def test_the_bound_per_class_averages_each_class_images_and_weighs_back_to_the_total():
    from elbolab.bounds import nats_to_bpd
    from elbolab.evaluate.run import class_bounds
    from elbolab.records import BoundSummary

    nats = torch.tensor([3.0, 5.0, 4.0, 9.0, 6.0, 1.0], dtype=torch.float64)
    y = torch.tensor([2, 0, 2, 0, 0, 2, 1, 1])  # the last two images were not bounded
    summary = BoundSummary.of(Bound({"a": nats}, 4), "exact")
    found = class_bounds(summary, y, 4)
    bpd = nats_to_bpd(nats, 4)
    assert found.n == (3, 0, 3, 0)
    assert found.bpd[0].mean == pytest.approx(bpd[[1, 3, 4]].mean().item())
    assert found.bpd[2].mean == pytest.approx(bpd[[0, 2, 5]].mean().item())
    assert found.bpd[2].ci95 == pytest.approx(1.959963984540054 * bpd[[0, 2, 5]].std().item() / 3**0.5)
    assert all(np.isnan(found.bpd[k].mean) for k in (1, 3))
    weighted = sum(n * f.mean for n, f in zip(found.n, found.bpd) if n)
    assert weighted / sum(found.n) == pytest.approx(summary.bpd.total)


def test_the_vae_with_zero_class_maps_is_the_unconditional_vae():
    torch.manual_seed(0)
    plain = VAE(VAEConfig(net="tiny"), SHAPE, LEVELS)
    conditional = VAE(VAEConfig(net="tiny", conditional=True), SHAPE, LEVELS, K)
    conditional.load_state_dict(plain.state_dict(), strict=False)
    x, y = digits_batch()
    assert torch.equal(conditional.elbo(x, None, gen(), y=y).total, plain.elbo(x, None, gen()).total)
    torch.manual_seed(5)
    loss_c = conditional.loss(x, y=y)
    torch.manual_seed(5)
    assert torch.equal(loss_c, plain.loss(x))
    with pytest.raises(ConfigError, match="pass y"):
        conditional.elbo(x)


# ---- guidance


def test_guidance_is_the_affine_combination_of_the_two_predictions():
    x_t, t = torch.randn(3, 1, 4, 4), torch.full((3,), 0.5, dtype=torch.float64)
    c = lambda x, s: 2 * x + 1
    u = lambda x, s: -x
    assert torch.allclose(guide(c, u, 2.5)(x_t, t), -x_t + 2.5 * (3 * x_t + 1))
    assert guide(c, u, 1.0) is c and guide(c, u, 0.0) is u
    pair = guide(lambda x, s: (x, x * 0 + 0.25), lambda x, s: (-x, x * 0 + 0.75), 3.0)(x_t, t)
    assert torch.allclose(pair[0], 5 * x_t) and torch.allclose(pair[1], torch.full_like(x_t, 0.25))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_guidance_one_is_conditional_sampling_and_zero_unconditional(sampler):
    _, conditional = diffusion_pair()
    with torch.no_grad():
        conditional.diffusion.net.class_embed.weight[K].normal_()  # a null class unlike the unconditional twin's
    y = torch.tensor([0, 3, 7, 7])
    draw = lambda **kw: conditional.sample(4, gen(2), sampler, 6, **kw)
    plain_given = draw(y=y)
    assert torch.equal(draw(y=y, guidance=1.0), plain_given)
    assert torch.equal(draw(y=y, guidance=0.0), draw())
    assert not torch.equal(draw(y=y, guidance=4.0), plain_given)
    assert not torch.equal(draw(y=torch.tensor([1, 1, 1, 1])), plain_given)


def test_latent_diffusion_is_conditional_in_z():
    from elbolab.latent.config import LatentDiffusionConfig
    from elbolab.latent.model import LatentDiffusion

    base = LatentDiffusionConfig()
    cfg = replace(base, conditional=True, diffusion=replace(base.diffusion, T=30, unet=UNetConfig(preset="tiny")))
    model = LatentDiffusion(cfg, SHAPE, LEVELS, K).eval()
    model.measure_scale(load_data("digits", "train"), n=64)
    with torch.no_grad():
        for p in model.diffusion.net.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    assert model.capabilities.classes == K and model.capabilities.null_class
    assert model.vae.capabilities.classes is None  # the autoencoder is not conditional
    y = torch.tensor([0, 4, 9])
    draw = lambda **kw: model.sample(3, gen(2), "ddim", 5, **kw)
    assert torch.equal(draw(y=y, guidance=1.0), draw(y=y))
    assert torch.equal(draw(y=y, guidance=0.0), draw())
    assert not torch.equal(draw(y=y, guidance=3.0), draw(y=y))
    x, labels = digits_batch(6)
    with torch.no_grad():
        given = model.elbo(x, Estimator("exact"), gen(), y=labels)
        unconditional = model.elbo(x, Estimator("exact"), gen())
    assert torch.allclose(sum(given.terms.values()), given.total)
    assert not torch.allclose(given.total, unconditional.total)
    assert model.loss(x, y=labels).shape == (6,)


def test_label_dropout_drops_about_p_and_none_at_its_ends():
    y = torch.arange(10).repeat(100)
    dropped = drop_labels(y, len(y), 0.3, K, gen(), torch.device("cpu"))
    assert abs((dropped == K).float().mean().item() - 0.3) < 0.05
    assert torch.equal(dropped[dropped != K], y[dropped != K])
    g = gen()
    assert torch.equal(drop_labels(y, len(y), 0.0, K, g, torch.device("cpu")), y)
    assert bool((drop_labels(y, len(y), 1.0, K, g, torch.device("cpu")) == K).all())
    assert torch.equal(torch.rand(1, generator=g), torch.rand(1, generator=gen()))  # p = 0 and 1 took no draw


# ---- brief training on digits


def test_a_briefly_trained_conditional_vae_draws_the_class_asked_for(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from elbolab.train.api import train_run
    from elbolab.train.run import load_run

    overrides = {"model.conditional": "true", "model.net": "tiny", "train.eval_every": "0"}
    train_run("vae", "digits", tmp_path / "run", overrides=overrides, steps=120, progress=False)
    _, model = load_run(tmp_path / "run", "cpu")
    train, test = load_data("digits", "train"), load_data("digits", "test")
    classifier = LogisticRegression(max_iter=500).fit(train.images.flatten(1).numpy() / 16, train.labels.numpy())
    y = torch.arange(K).repeat_interleave(20)
    samples = model.sample(len(y), gen(0), y=y)
    accuracy = (classifier.predict(samples.flatten(1).numpy() / 16) == y.numpy()).mean()
    assert accuracy > 3 / K  # three times chance
    with torch.no_grad():
        x = test.model_range()
        true = model.elbo(x, None, gen(), y=test.labels).total.mean()
        wrong = model.elbo(x, None, gen(), y=(test.labels + 1) % K).total.mean()
    assert true < wrong


# ---- the command line


def test_the_command_line_conditional_vae_and_diffusion(tmp_path, run_cli):
    common = ["--data", "digits", "--steps", "40", "--quiet", "--set", "model.conditional=true"]
    common += ["--set", "train.threads=1", "--set", "train.eval_every=0"]
    vae, diffusion = tmp_path / "cv", tmp_path / "cd"
    code, _, err = run_cli("train", "vae", "--out", vae, *common, "--set", "model.net=tiny")
    assert code == 0, err
    code, _, err = run_cli(
        "train", "diffusion", "--out", diffusion, *common, "--set", "model.T=20", "--set", "model.unet.preset=tiny"
    )
    assert code == 0, err
    assert json.loads((diffusion / "config.json").read_text())["classes"] == K

    skip = ("--skip", "speed", "--skip", "interpolation", "--skip", "information", "--iwae", "0")
    png = tmp_path / "grid.png"
    code, _, err = run_cli("sample", diffusion, "--class", "3", "--guidance", "2", "--n", "4", "--out", png)
    assert code == 0 and png.is_file(), err
    npz = tmp_path / "rows.npz"
    code, _, err = run_cli("sample", vae, "--class", "1,2,7", "--n", "5", "--out", npz)
    assert code == 0, err
    assert np.load(npz)["images"].shape == (15, 1, 8, 8)

    found = json.loads(run_cli("eval", diffusion, "--json", "--only-bound", "--n", "32")[1])
    assert found["classes"] == K and found["unconditional"]["bpd"]["total"] > 0
    n, means = np.array(found["class_bounds"]["n"]), np.array([f["mean"] for f in found["class_bounds"]["bpd"]])
    assert n.sum() == 32 and (n * np.nan_to_num(means)).sum() / 32 == pytest.approx(found["bpd"]["total"])
    assert found["bpd"]["total"] == pytest.approx(sum(found["bpd"]["terms"].values()))
    code, out, err = run_cli("eval", vae, "--json", "--n", "32", "--n-samples", "20", *skip)
    assert code == 0, err
    found = json.loads(out)
    assert found["classes"] == K and found["unconditional"] is None
    accuracy = found["class_accuracy"]
    assert accuracy["n_per_class"] == 2 and len(accuracy["per_class"]) == K
    assert accuracy["overall"] == pytest.approx(np.mean(accuracy["per_class"]))

    for run, args, message in (
        (diffusion, ("--class", "12"), "--class 12 is out of range: the run's classes are 0..9"),
        (diffusion, ("--class", "three"), "--class takes a class number"),
        (diffusion, ("--guidance", "2"), "--guidance needs --class"),
        (vae, ("--class", "1", "--guidance", "2"), "--guidance is classifier-free guidance"),
    ):
        code, _, err = run_cli("sample", run, *args, "--n", "2", "--out", tmp_path / "x.png")
        assert code != 0 and message in err and err.strip().count("\n") == 0, err


def test_conditioning_on_data_without_labels_or_on_an_unconditional_run_is_refused(tmp_path, run_cli):
    data = tmp_path / "plain.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (40, 1, 8, 8), dtype=np.uint8))
    code, _, err = run_cli(
        "train", "vae", "--data", data, "--out", tmp_path / "r", "--steps", "2", "--set", "model.conditional=true"
    )
    assert code != 0 and "model.conditional=true needs labels" in err and err.strip().count("\n") == 0
    labelled = tmp_path / "labelled.npz"
    np.savez(labelled, images=np.zeros((4, 1, 8, 8), np.uint8), labels=np.full(4, -2))
    with pytest.raises(DataError, match="label -2 is out of range"):
        load_data(str(labelled))
    run = tmp_path / "plain-run"
    code, _, err = run_cli(
        "train", "vae", "--data", "digits", "--out", run, "--steps", "2", "--quiet", "--set", "model.net=tiny"
    )
    assert code == 0, err
    code, _, err = run_cli("sample", run, "--class", "1", "--n", "2", "--out", tmp_path / "x.png")
    assert code != 0 and "--class needs a conditional run" in err
