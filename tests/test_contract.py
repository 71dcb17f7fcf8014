"""One contract suite for every registered model kind (DESIGN.md, "The contract every model keeps").

A model passes it by registering itself in `elbolab.registry.MODEL_KINDS`: each test builds the
kind's configuration sized for 8×8 digits (`sized_for`), runs its first stage where it has one
(latent diffusion's autoencoder, on a budget of a second), and checks the contract through the
declared capabilities only. Also: the package's layering, read from every import statement.
"""

from __future__ import annotations

import ast
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from elbolab.bounds import ESTIMATOR_METHODS, LN2, Estimator
from elbolab.data import load_data
from elbolab.errors import ConfigError
from elbolab.model import DECODER, GenerativeModel
from elbolab.records import Information
from elbolab.registry import MODEL_KINDS, model_classes
from elbolab.train.config import TrainConfig
from elbolab.train.run import RunConfig, build_model
from elbolab.train.stages import run_first_stage

SRC = Path(__file__).resolve().parents[1] / "src" / "elbolab"


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "train"), load_data("digits", "test")


#: models that are not a registered kind but keep the same contract: a diffusers folder loaded by elbolab
LOADED = ["diffusers-folder"]


@pytest.fixture(scope="module", params=[*MODEL_KINDS, *LOADED])
def model(request, digits, tmp_path_factory) -> GenerativeModel:
    """A small, briefly prepared model of each registered kind (few diffusion steps so exact bounds are cheap),
    and a small random diffusers UNet2DModel + DDPMScheduler saved with save_pretrained and loaded."""
    kind = request.param
    train, test = digits
    if kind == "diffusers-folder":
        return _diffusers_folder_model(tmp_path_factory.mktemp(kind), tuple(test.shape), test.levels)
    cfg_cls, _ = model_classes(kind)
    model_cfg = cfg_cls.sized_for(test.shape[-1])
    train_cfg = TrainConfig(steps=2, max_seconds=1.0, batch_size=16, eval_every=0, eval_n=16, checkpoint_every=100)
    run = RunConfig(kind, "digits", None, tuple(test.shape), test.levels, _few_steps(model_cfg), train_cfg)
    torch.manual_seed(0)
    m = build_model(run)
    run_first_stage(m, train, test, run, tmp_path_factory.mktemp(kind), progress=False)
    return m.eval()


def _diffusers_folder_model(folder, shape, levels) -> GenerativeModel:
    diffusers = pytest.importorskip("diffusers")
    from elbolab.interop.diffusers import load_diffusers
    from elbolab.nets.diffusers_unet import unet2d_layout
    from elbolab.nets.unet import UNetConfig

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(**unet2d_layout(UNetConfig(preset="tiny").spec(), shape[0], shape[0], shape[-1]))
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=50)).save_pretrained(folder)
    return load_diffusers(folder, shape, levels)


def _few_steps(cfg):
    """The same configuration with any diffusion chain shortened to T = 50 (nested configs included)."""
    changes = {}
    for name in getattr(cfg, "__dataclass_fields__", {}):
        value = getattr(cfg, name)
        if name == "T":
            changes["T"] = 50
        elif name == "encode_steps":
            changes[name] = 5
        elif hasattr(value, "__dataclass_fields__"):
            changes[name] = _few_steps(value)
    return replace(cfg, **changes)


def _x(digits, n=4) -> torch.Tensor:
    return digits[1].model_range(slice(0, n))


def test_every_estimator_either_works_or_is_refused_clearly(model, digits):
    x = _x(digits)
    caps = model.capabilities
    assert caps.default_estimator.method in caps.estimators
    for method in ESTIMATOR_METHODS:
        estimator = Estimator(method, None if method == "exact" else 3)
        if method not in caps.estimators:
            with pytest.raises(ConfigError, match=f"no {method!r} bound"):
                model.elbo(x, estimator)
            continue
        bound = model.elbo(x, estimator, torch.Generator().manual_seed(0))
        assert all(v.shape == (4,) and torch.isfinite(v).all() for v in bound.terms.values()), method
        torch.testing.assert_close(bound.total, torch.stack(list(bound.terms.values())).sum(0))
        torch.testing.assert_close(bound.bits_per_dim(), bound.total / (model.dims * LN2))
        assert bound.dims == model.dims == 64 and bound.discrete
        assert (bound.total > 0).all()  # −log of a probability mass over the levels
        if method == "mc":  # K = 3 draws: the estimate carries its standard error
            assert bound.extras["stderr"].shape == (4,) and (bound.extras["stderr"] >= 0).all()
    with pytest.raises(ConfigError, match="Estimator record"):
        model.elbo(x, "exact")


def test_the_default_bound_is_the_declared_default(model, digits):
    x = _x(digits)
    default = model.elbo(x, None, torch.Generator().manual_seed(1))
    declared = model.elbo(x, model.capabilities.default_estimator, torch.Generator().manual_seed(1))
    torch.testing.assert_close(default.total, declared.total)


def test_samples_are_levels_for_every_declared_sampler(model):
    caps = model.capabilities
    steps = 1 if caps.one_pass else min(3, caps.max_steps or 3)
    for sampler in caps.samplers:
        images = model.sample(3, torch.Generator().manual_seed(0), sampler=sampler, steps=steps)
        assert images.dtype == torch.uint8 and images.shape == (3, *model.shape), sampler
        assert int(images.max()) < model.levels
        again = model.sample(3, torch.Generator().manual_seed(0), sampler=sampler, steps=steps)
        assert torch.equal(images, again), sampler  # seeded: reproducible
    assert model.sample(2).shape == (2, *model.shape)  # the defaults


def test_sample_rejects_unknown_keywords_samplers_and_step_counts(model):
    with pytest.raises(ConfigError, match="unknown keyword 'stpes'.*did you mean 'steps'"):
        model.sample(2, stpes=5)
    with pytest.raises(ConfigError, match="no sampler 'lms'"):
        model.sample(2, sampler="lms")
    caps = model.capabilities
    too_many = (caps.max_steps or 10**9) + 1
    with pytest.raises(ConfigError, match="steps"):
        model.sample(2, steps=too_many)
    with pytest.raises(ConfigError, match="at least one image"):
        model.sample(0)
    if caps.one_pass:
        assert caps.samplers == (DECODER,) and caps.steps_for((10, 50)) == (1,)


def test_encode_decode_round_trip_where_declared(model, digits):
    x = _x(digits, 3)
    encoding = model.capabilities.encoding
    if encoding is None:
        with pytest.raises(NotImplementedError):
            model.encode(x)
        return
    assert encoding.learned_parameters >= 0 and encoding.network_passes >= 1
    z = model.encode(x)
    assert z.shape[0] == 3
    back = model.decode(z)
    assert back.dtype == torch.uint8 and back.shape == (3, *model.shape)
    frames = model.interpolate(x[:1], x[1:2], 4)
    assert frames.shape == (1, 4, *model.shape)


def test_the_information_hook_returns_its_record(model, digits):
    info = model.information(digits[1], n=8, generator=torch.Generator().manual_seed(0))
    assert isinstance(info, Information) and (info.latent is not None or info.chain is not None)
    if info.latent is not None:
        assert info.latent.rate_nats >= 0 and info.latent.n == 8
        assert math.isclose(info.latent.rate_bpd, info.latent.rate_nats / (64 * LN2), rel_tol=1e-9)
    if info.chain is not None:
        assert info.chain.curve[0].step == 0 and len(info.chain.per_step_bpd) == info.chain.T
    assert isinstance(info.to_json(), dict)


def test_the_loss_is_per_example_and_trains(model, digits):
    x = _x(digits, 5)
    model.train()
    try:
        loss = model.loss(x, 0, 10)
        assert loss.shape == (5,) and torch.isfinite(loss).all()
        loss.mean().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_every_model_declares_its_design_levels(model):
    """compare pairs models by these levels, so each one is declared and agrees with the model itself."""
    design = model.capabilities.design
    assert design is not None, f"{model.kind} declares no DesignLevels"
    assert design.latent in ("bottleneck", "full")
    caps = model.capabilities
    if caps.one_pass:  # one decoder pass draws each level q infers once: 1 for a VAE, L for a hierarchy
        assert design.decoder_steps == design.encoder_steps
    else:
        assert design.decoder_steps is None or design.decoder_steps >= 1
    if caps.encoding is not None and caps.encoding.learned_parameters > 0:
        assert design.encoder != "fixed"
    if design.encoder == "fixed":
        assert caps.encoding is None or caps.encoding.learned_parameters == 0
        assert design.latent_fraction == 1.0


def test_components_are_models_in_their_own_right(model, digits):
    for name, part in model.components().items():
        assert isinstance(part, GenerativeModel), name
        assert torch.isfinite(part.elbo(_x(digits)).total).all()


# ---------------------------------------------------------------- layering

#: DESIGN.md's layers, lowest first: a module may import its own layer or lower ones, never higher
LAYERS = [
    {
        "errors",
        "signals",
        "atomic",
        "bounds",
        "likelihoods",
        "records",
        "information",
        "config",
        "machine",
        "data",
        "nets",
    },
    {"model", "sampling"},
    {"vae", "hvae", "diffusion"},
    {"latent"},
    {"train", "evaluate", "registry"},
    {"interop"},
    {"experiments", "validate"},
    {"report"},
    {"cli", "__main__"},
]
SIBLINGS_APART = [("train", "evaluate")]  # the same layer, and neither imports the other


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "elbolab" and len(parts) > 1 else None


def test_every_module_belongs_to_a_layer():
    tops = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")} - {"__init__"}
    assert tops <= set().union(*LAYERS), tops - set().union(*LAYERS)


def test_no_import_points_up_the_layers_lazy_ones_included():
    wrong = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "__init__.py":
            continue
        own = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            for name in names:
                top = _top(name)
                if top is None or top == own:
                    continue
                if _layer(top) > _layer(own) or (own, top) in SIBLINGS_APART or (top, own) in SIBLINGS_APART:
                    wrong.append(f"{rel}:{node.lineno} imports {name}")
    assert not wrong, wrong


def test_the_registry_points_only_down():
    for module, _, _ in MODEL_KINDS.values():
        assert _layer(_top(module)) < _layer("registry"), module


# ---------------------------------------------------------------- effects and verdicts


@pytest.mark.parametrize(
    "low, high, direction, verdict",
    [
        (0.1, 0.5, 1, "supported"),
        (-0.5, -0.1, 1, "not supported"),
        (-0.1, 0.3, 1, "inconclusive"),
        (-0.5, -0.1, -1, "supported"),
        (0.1, 0.5, -1, "not supported"),
        (float("nan"), 1.0, 1, "inconclusive"),
    ],
)
def test_an_effect_decides_its_verdict_from_its_interval(low, high, direction, verdict):
    from elbolab.records import Effect

    mid = 0.0 if math.isnan(low) else (low + high) / 2
    assert Effect("gap", mid, low, high, "test", direction=direction).verdict() == verdict


def test_an_information_curve_is_an_information(model, digits):
    """Where a model declares I(x; latent) of its own encoder, it lies in [0, log N] within its Monte-Carlo
    error and does not grow along t (the forward process only destroys information)."""
    train, _ = digits
    x = train.model_range(slice(0, 100))
    curve = model.information_curve(x, draws=64, seed=0)
    if curve is None:
        return
    assert curve.max_nats == pytest.approx(math.log(100)) and curve.n_images == 100
    for nats, se in zip(curve.nats, curve.stderr_nats):
        assert -4 * se <= nats <= curve.max_nats + 4 * se
    margin = 4 * max(curve.stderr_nats) + 1e-9
    assert all(later <= earlier + margin for earlier, later in zip(curve.nats, curve.nats[1:]))
