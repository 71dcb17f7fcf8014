"""The contract suite (tests/test_contract.py) run on the diffusion kind's models between the paradigms, which are
configurations of it, not registered kinds of their own: the one-step chain (`DiffusionConfig.one_step`) and
DiffEnc's learned encoder (continuous time, model.encoder=learned), and EDM's preconditioning trained on its
weighting (model.parameterisation=edm, model.loss=edm), each sized for 8×8 digits."""

from dataclasses import replace

import pytest
import torch
from test_contract import (  # noqa: F401  (collected here, with this module's `model` and `digits` fixtures)
    test_components_are_models_in_their_own_right,
    test_encode_decode_round_trip_where_declared,
    test_every_estimator_either_works_or_is_refused_clearly,
    test_every_model_declares_its_design_levels,
    test_sample_rejects_unknown_keywords_samplers_and_step_counts,
    test_samples_are_levels_for_every_declared_sampler,
    test_the_default_bound_is_the_declared_default,
    test_the_information_hook_returns_its_record,
    test_the_loss_is_per_example_and_trains,
)

from elbolab.data import load_data
from elbolab.diffusion import DiffusionConfig
from elbolab.train.config import TrainConfig
from elbolab.train.run import RunConfig, build_model

VARIANTS = {
    "one-step": lambda side: DiffusionConfig.one_step(side),
    "diffenc": lambda side: replace(DiffusionConfig.sized_for(side), encoder="learned", T=50, encode_steps=5),
    "edm": lambda side: replace(
        DiffusionConfig.sized_for(side), parameterisation="edm", loss="edm", T=50, encode_steps=5
    ),
}


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "train"), load_data("digits", "test")


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request, digits):
    _, test = digits
    train_cfg = TrainConfig(steps=2, max_seconds=1.0, batch_size=16, eval_every=0, eval_n=16, checkpoint_every=100)
    cfg = VARIANTS[request.param](test.shape[-1])
    run = RunConfig("diffusion", "digits", None, tuple(test.shape), test.levels, cfg, train_cfg)
    torch.manual_seed(0)
    return build_model(run).eval()
