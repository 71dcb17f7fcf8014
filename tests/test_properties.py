"""Property-based checks (hypothesis): the likelihoods over any parameters, and `--set` parsing over any text."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from elbolab.config import parse_set, with_overrides
from elbolab.errors import ConfigError
from elbolab.likelihoods import (
    bernoulli_log_prob,
    discretized_gaussian_log_prob,
    discretized_logistic_log_prob,
    normal_kl,
)
from elbolab.train.config import TrainConfig

DISCRETISED = [discretized_gaussian_log_prob, discretized_logistic_log_prob]
FAST = settings(max_examples=60, deadline=None, derandomize=True)

means = st.floats(-3.0, 3.0, allow_nan=False)
log_scales = st.floats(-12.0, 6.0, allow_nan=False)
level_counts = st.sampled_from([2, 3, 17, 256]) | st.integers(2, 300)


def _all_levels(log_prob, mean, log_scale, levels):
    x = torch.linspace(-1, 1, levels, dtype=torch.float64)
    return log_prob(x, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64), levels)


@pytest.mark.parametrize("log_prob", DISCRETISED)
@FAST
@given(mean=means, log_scale=log_scales, levels=level_counts)
def test_a_discretised_likelihood_is_finite_and_normalised_over_the_levels(log_prob, mean, log_scale, levels):
    lp = _all_levels(log_prob, mean, log_scale, levels)
    assert torch.isfinite(lp).all() and (lp <= 1e-12).all()
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-5


@pytest.mark.parametrize("log_prob", DISCRETISED)
@FAST
@given(mean=st.floats(-0.9, 0.9), log_scale=st.floats(-4.0, 2.0), levels=st.integers(4, 64))
def test_inner_bins_closer_to_the_mean_hold_more_mass(log_prob, mean, log_scale, levels):
    """A symmetric unimodal density gives equal-width bins more mass the nearer they lie to its centre."""
    x = torch.linspace(-1, 1, levels, dtype=torch.float64)[1:-1]
    lp = _all_levels(log_prob, mean, log_scale, levels)[1:-1]
    order = torch.argsort((x - mean).abs())
    assert (lp[order][1:] <= lp[order][:-1] + 1e-9).all()


@pytest.mark.parametrize("log_prob", DISCRETISED)
@FAST
@given(mean=st.floats(-0.8, 0.8), levels=st.integers(3, 64), a=log_scales, b=log_scales)
def test_the_mass_at_the_mean_level_shrinks_as_the_scale_grows(log_prob, mean, levels, a, b):
    k = round((mean + 1) / 2 * (levels - 1))
    at = lambda s: _all_levels(log_prob, -1 + 2 * k / (levels - 1), s, levels)[k].item()
    small, large = min(a, b), max(a, b)
    assert at(small) >= at(large) - 1e-9


@FAST
@given(logit=st.floats(-30, 30), other=st.floats(-30, 30))
def test_bernoulli_is_normalised_and_increasing_in_its_logit(logit, other):
    lp = bernoulli_log_prob(
        torch.tensor([-1.0, 1.0], dtype=torch.float64), torch.full((2,), logit, dtype=torch.float64)
    )
    assert torch.isfinite(lp).all() and abs(torch.logsumexp(lp, 0).item()) < 1e-9
    one = lambda v: bernoulli_log_prob(torch.tensor(1.0, dtype=torch.float64), torch.tensor(v, dtype=torch.float64))
    lo, hi = sorted((logit, other))
    assert one(lo) <= one(hi) + 1e-12


@FAST
@given(m1=means, m2=means, v1=st.floats(-5, 5), v2=st.floats(-5, 5))
def test_gaussian_kl_is_finite_non_negative_and_zero_only_at_equality(m1, m2, v1, v2):
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    kl = normal_kl(t(m1), t(v1), t(m2), t(v2)).item()
    assert math.isfinite(kl) and kl >= -1e-12
    assert normal_kl(t(m1), t(v1), t(m1), t(v1)).item() == pytest.approx(0.0, abs=1e-12)


# ---- --set parsing

keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}", fullmatch=True)
values = st.text(min_size=1, max_size=20).map(str.strip).filter(bool)


@FAST
@given(pairs=st.dictionaries(keys, values, max_size=5))
def test_set_parsing_round_trips_any_key_and_value(pairs):
    assert parse_set([f"{k}={v}" for k, v in pairs.items()]) == pairs


@FAST
@given(item=st.text(max_size=30))
def test_set_parsing_gives_a_mapping_or_a_one_line_config_error(item):
    try:
        out = parse_set([item])
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1 or "\n" in item or "\r" in item
    else:
        ((key, value),) = out.items()
        assert key and value and "=" not in key


@FAST
@given(key=keys, value=values)
def test_a_key_given_twice_is_an_error(key, value):
    with pytest.raises(ConfigError, match="given twice"):
        parse_set([f"{key}={value}", f"{key}={value}"])


@FAST
@given(field=st.sampled_from(sorted(TrainConfig.__dataclass_fields__)), value=st.text(max_size=12))
def test_any_text_for_any_training_key_is_a_value_or_a_config_error(field, value):
    """Never a traceback: a typed value within range, or a ConfigError that names the key."""
    try:
        cfg = with_overrides(TrainConfig(), {field: value}, "train.")
    except ConfigError as exc:
        assert f"train.{field}" in str(exc)
    else:
        assert getattr(cfg, field) is not None


@FAST
@given(lr=st.floats(min_value=1e-12, max_value=1e3))
def test_a_positive_learning_rate_round_trips_exactly(lr):
    assert with_overrides(TrainConfig(), {"lr": repr(lr)}, "train.").lr == lr
