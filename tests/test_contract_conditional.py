"""The contract of a conditional model, for every registered kind whose config takes `conditional` (DESIGN.md,
"conditioning, declared"): it declares its K classes; `elbo(x, y)` bounds −log p(x | y) per example as named
terms that add up; `elbo(x)` bounds −log p(x) where it declares a null class and is refused in one line where it
does not; `loss(x, y=...)` is per example with the class parameters on its graph; `sample(n, y=...)` gives levels and
refuses a label out of range in one line; and guidance, where declared, is w = 1 the conditional model itself."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_contract import _few_steps

from elbolab.data import load_data
from elbolab.errors import ElbolabError
from elbolab.model import GenerativeModel
from elbolab.registry import MODEL_KINDS, model_classes
from elbolab.train.config import TrainConfig
from elbolab.train.run import RunConfig, build_model
from elbolab.train.stages import run_first_stage

#: every registered kind whose configuration takes `conditional`
CONDITIONAL_KINDS = [k for k in MODEL_KINDS if "conditional" in model_classes(k)[0].__dataclass_fields__]


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "train"), load_data("digits", "test")


@pytest.fixture(scope="module", params=CONDITIONAL_KINDS)
def model(request, digits, tmp_path_factory) -> GenerativeModel:
    """A small conditional model of each kind that has one, its first stage (if any) briefly run."""
    kind, (train, test) = request.param, digits
    cfg_cls, _ = model_classes(kind)
    model_cfg = replace(_few_steps(cfg_cls.sized_for(test.shape[-1])), conditional=True)
    train_cfg = TrainConfig(steps=2, max_seconds=1.0, batch_size=16, eval_every=0, eval_n=16, checkpoint_every=100)
    run = RunConfig(kind, "digits", None, tuple(test.shape), test.levels, model_cfg, train_cfg, train.classes)
    torch.manual_seed(0)
    m = build_model(run)
    run_first_stage(m, train, test, run, tmp_path_factory.mktemp(kind), progress=False)
    return m.eval()


def test_every_conditional_kind_is_covered():
    assert {"vae", "hvae", "diffusion", "latent-diffusion"} <= set(CONDITIONAL_KINDS)


def _batch(digits, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    test = digits[1]
    return test.model_range(slice(0, n)), test.labels[:n]


def test_it_declares_its_classes_and_takes_labels(model):
    caps = model.capabilities
    assert caps.classes == 10 and "y" in caps.sample_options


def test_the_conditional_bound_is_per_example_and_adds_up(model, digits):
    x, y = _batch(digits)
    with torch.no_grad():
        b = model.elbo(x, None, torch.Generator().manual_seed(0), y=y)
    assert b.total.shape == (len(x),) and torch.isfinite(b.total).all()
    assert torch.allclose(sum(b.terms.values()), b.total)
    assert all(t.shape == (len(x),) for t in b.terms.values())


def test_the_unconditional_bound_exists_exactly_where_declared(model, digits):
    x, _ = _batch(digits)
    if model.capabilities.null_class:
        with torch.no_grad():
            assert torch.isfinite(model.elbo(x, None, torch.Generator().manual_seed(0)).total).all()
    else:
        with pytest.raises(ElbolabError) as refused:
            model.elbo(x)
        assert len(str(refused.value).splitlines()) == 1


def test_the_loss_takes_labels_and_reaches_the_class_parameters(model, digits):
    x, y = _batch(digits)
    model.zero_grad()
    loss = model.loss(x, y=y)
    assert loss.shape == (len(x),) and torch.isfinite(loss).all()
    loss.mean().backward()
    # the class parameters are on the loss's graph (a zero-initialised output layer may hold their gradient at 0)
    grads = [p.grad for name, p in model.named_parameters() if "class" in name]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.zero_grad()


def test_samples_given_labels_are_levels_and_bad_labels_are_refused(model):
    sampler = model.capabilities.samplers[0]
    steps = model.capabilities.steps_for((4,))[0]
    y = torch.tensor([0, 9, 3])
    with torch.no_grad():
        x = model.sample(3, torch.Generator().manual_seed(0), sampler=sampler, steps=steps, y=y)
    assert x.shape == (3, *model.shape) and x.dtype == torch.uint8 and int(x.max()) < model.levels
    with pytest.raises(ElbolabError) as refused:
        model.sample(2, sampler=sampler, steps=steps, y=torch.tensor([0, 10]))
    assert len(str(refused.value).splitlines()) == 1


def test_guidance_one_is_the_conditional_model_where_declared(model):
    if "guidance" not in model.capabilities.sample_options:
        pytest.skip(f"the {model.kind} model declares no guidance")
    sampler = model.capabilities.samplers[0]
    steps = model.capabilities.steps_for((4,))[0]
    y = torch.tensor([1, 2])
    with torch.no_grad():
        plain = model.sample(2, torch.Generator().manual_seed(0), sampler=sampler, steps=steps, y=y)
        guided = model.sample(2, torch.Generator().manual_seed(0), sampler=sampler, steps=steps, y=y, guidance=1.0)
    assert torch.equal(plain, guided)
