"""The discrete-time chain's Monte-Carlo bound: steps importance-sampled from a proposal fitted on a pilot pass
over bins of whole steps (the first steps each a bin), stratified, with ‖ε‖² stratified beside them; unbiased
for the exact T-sum, with an honest standard error, and far tighter than the uniform draw at equal passes.
"""

import math

import pytest
import torch
from scipy import stats

from elbolab.bounds import Estimator
from elbolab.data import load_data
from elbolab.diffusion import DiffusionConfig, DiffusionModel
from elbolab.diffusion.forward import radial_noise
from elbolab.diffusion.time_proposal import TimeProposal, latin_partner, draw_uniforms, step_edges
from elbolab.nets.unet import UNetConfig


REPEATS = 80


def tiny_discrete(T: int = 40) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(DiffusionConfig(unet=UNetConfig(preset="tiny"), T=T), (1, 8, 8), 17).eval()


def test_step_bins_are_whole_steps_the_first_ones_alone():
    edges = step_edges(1000, 64)
    ends = (edges * 1000).round().long()
    assert edges.numel() == 65 and ends[0] == 0 and ends[-1] == 1000
    torch.testing.assert_close(edges * 1000, ends.double())  # whole steps
    assert (ends[1:] > ends[:-1]).all()
    assert ends[:21].tolist() == list(range(21))  # steps 1..20 each a bin of its own
    assert (ends[1:] - ends[:-1]).max() < 110  # and the widest bin is ~10% of the chain (log-spaced)
    torch.testing.assert_close(step_edges(10, 64), torch.arange(11, dtype=torch.float64) / 10)


def test_a_proposal_on_step_bins_gives_each_step_its_bins_mass():
    edges = step_edges(100, 8)
    weights = torch.arange(1.0, 9.0, dtype=torch.float64)
    q = TimeProposal(weights, edges)
    p = q.steps(100)
    ends = (edges * 100).round().long()
    mass = q.density() * (edges[1:] - edges[:-1])
    for k in range(8):  # the steps of bin k share its mass equally
        torch.testing.assert_close(p[ends[k]:ends[k + 1]], (mass[k] / (ends[k + 1] - ends[k])).expand(ends[k + 1] - ends[k]))
    u = torch.rand(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    i, p_i = q.discrete(u, 100)
    torch.testing.assert_close(torch.bincount(i - 1, minlength=100).double() / u.numel(), p, atol=4e-3, rtol=0)
    torch.testing.assert_close(p_i, p[i - 1])


def test_radial_noise_is_a_standard_normal_with_the_norm_it_is_given():
    g = torch.Generator().manual_seed(0)
    v = torch.rand(20_000, generator=g, dtype=torch.float64)
    eps = radial_noise((20_000, 1, 4, 4), v, g)
    flat = eps.flatten(1)
    assert flat.mean(0).abs().max() < 0.03 and (flat.var(0) - 1).abs().max() < 0.04
    torch.testing.assert_close(flat.pow(2).sum(1), torch.from_numpy(stats.chi2.ppf(v.numpy(), 16)))
    assert stats.kstest(flat[:, 3].numpy(), "norm").pvalue > 0.01  # each coordinate N(0, 1)
    assert stats.kstest(flat.pow(2).sum(1).numpy(), "chi2", args=(16,)).pvalue > 0.01


def test_latin_partner_is_stratified_and_uniform():
    g = torch.Generator().manual_seed(1)
    u = draw_uniforms(3000, 16, True, g)
    v = latin_partner(u, g)
    R, m = 4, 4
    strata = (v * m).floor().long().view(3000, m, R)  # replicate r in columns r::R
    assert (strata.sort(1).values == torch.arange(m).view(1, m, 1)).all()  # one draw per stratum per replicate
    assert stats.kstest(v.flatten().numpy(), "uniform").pvalue > 0.01
    # the pairing with u's strata is random: stratum of v is independent of the stratum of u
    table = torch.zeros(m, m)
    table.index_put_(((u * m).floor().long().flatten(), (v * m).floor().long().flatten()), torch.ones(u.numel()),
                     accumulate=True)
    assert stats.chi2_contingency(table.numpy()).pvalue > 0.01


@torch.no_grad()
def test_the_default_estimator_is_unbiased_honest_and_beats_the_uniform_draw_at_equal_passes():
    """The discrete model's default (importance, stratified; K + 4 passes) against its exact T-sum (averaged
    over ε draws, with its own standard error); the uniform iid draw (K/2 steps, each with its L_0) at the same
    passes."""
    model = tiny_discrete(T=30)
    assert model.capabilities.default_estimator == Estimator("mc", 16, "importance")
    x = load_data("digits", "test").model_range(slice(0, 3))
    g = torch.Generator().manual_seed(0)
    exact = torch.stack([model.elbo(x, Estimator("exact"), g).total for _ in range(12)])
    exact_mean, exact_se = exact.mean(0), exact.std(0) / math.sqrt(12)
    model.prepare_estimator(Estimator("mc", 12, "importance"), load_data("digits", "train").model_range(slice(0, 16)), g)
    spreads, passes = {}, {}
    for estimator in (Estimator("mc", 12, "importance"), Estimator("mc", 8)):
        runs = [model.elbo(x, estimator, g) for _ in range(REPEATS)]
        totals = torch.stack([b.total for b in runs])
        se = torch.stack([b.extras["stderr"] for b in runs])
        spreads[estimator.proposal] = totals.std(0)
        passes[estimator.proposal] = runs[0].extras["passes"][0].item()
        err = (totals.mean(0) - exact_mean).abs()
        assert (err < 3 * torch.sqrt(totals.var(0) / REPEATS + exact_se ** 2)).all(), (estimator, err)
        ratio = se.pow(2).mean(0).sqrt() / totals.std(0)
        assert ((ratio > 0.7) & (ratio < 1.4)).all(), (estimator, ratio)
    assert passes == {"importance": 16, "uniform": 16}
    assert (spreads["importance"] < 0.5 * spreads["uniform"]).all(), spreads


@torch.no_grad()
def test_an_unprepared_model_fits_its_proposal_on_the_batch_for_that_call_only():
    model = tiny_discrete(T=20)
    x = load_data("digits", "test").model_range(slice(0, 4))
    bound = model.elbo(x, None, torch.Generator().manual_seed(0))
    assert torch.isfinite(bound.total).all() and (bound.extras["stderr"] > 0).all()
    assert not model.diffusion.proposal_fitted()
    again = model.elbo(x, Estimator("mc", 16, "importance"), torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.total, bound.total)
    with pytest.raises(Exception, match="pilot pass"):
        model.diffusion.proposal()


def test_a_pilot_fit_is_kept_under_its_key_and_put_back(tmp_path, monkeypatch):
    from elbolab.evaluate.run import Pilot, prepare_estimator

    model, train = tiny_discrete(T=20), load_data("digits", "train")
    pilot = Pilot(train, tmp_path / "fits.json", {"weights": "w1"})
    estimator = Estimator("mc", 8, "importance")
    assert not prepare_estimator(model, estimator, pilot, 8, seed=0)
    fitted = model.diffusion.time_proposal.clone()
    model.diffusion.time_proposal.zero_()
    fresh = tiny_discrete(T=20)
    monkeypatch.setattr(DiffusionModel, "prepare_estimator", lambda *a, **k: pytest.fail("fitted again"))
    assert prepare_estimator(fresh, estimator, pilot, 8, seed=0)
    assert torch.equal(fresh.diffusion.time_proposal, fitted)  # bit for bit
    monkeypatch.undo()
    assert not prepare_estimator(fresh, estimator, Pilot(train, pilot.cache, {"weights": "w2"}), 8, seed=0)
    assert len(__import__("json").loads(pilot.cache.read_text())["fits"]) == 2
    # a cache that cannot be written is no cache: the fit is made and used all the same
    unwritable = Pilot(train, tmp_path / "missing" / "fits.json")
    assert not prepare_estimator(fresh, estimator, unwritable, 8, seed=1) and fresh.diffusion.proposal_fitted()
    assert not unwritable.cache.exists()
