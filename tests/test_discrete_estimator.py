"""The discrete-time chain's Monte-Carlo bound: steps importance-sampled from a proposal fitted on a pilot pass
over bins of whole steps (the first steps each a bin), stratified, with each replicate's ε a Latin hypercube and
a per-coordinate control variate fitted on the same pilot; unbiased for the exact T-sum, with an honest
standard error, and far tighter than the uniform draw at equal passes.
"""

import math

import pytest
import torch
from scipy import stats

from elbolab.bounds import Estimator
from elbolab.data import load_data
from elbolab.diffusion import DiffusionConfig, DiffusionModel, Schedule, exact_bound, mc_bound, prior_term
from elbolab.diffusion.bound import pilot_step_fit
from elbolab.diffusion.forward import expand
from elbolab.diffusion.noise_control import (
    CLASSES,
    FEATURES,
    control_features,
    coordinate_classes,
    fit_slopes,
    latin_normal,
)
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.diffusion.time_proposal import TimeProposal, bin_of_step, step_edges
from elbolab.likelihoods import quantize
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
    of = bin_of_step(edges, 1000)  # each step's bin: the one whose ends hold it
    assert of.shape == (1000,) and of[:20].tolist() == list(range(20)) and of[-1] == 63
    steps = torch.arange(1, 1001)
    assert ((ends[of] < steps) & (steps <= ends[of + 1])).all()
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
        torch.testing.assert_close(
            p[ends[k] : ends[k + 1]], (mass[k] / (ends[k + 1] - ends[k])).expand(ends[k + 1] - ends[k])
        )
    u = torch.rand(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    i, p_i = q.discrete(u, 100)
    torch.testing.assert_close(torch.bincount(i - 1, minlength=100).double() / u.numel(), p, atol=4e-3, rtol=0)
    torch.testing.assert_close(p_i, p[i - 1])


def test_latin_normal_stratifies_every_coordinate_and_is_standard_normal():
    g = torch.Generator().manual_seed(0)
    eps = latin_normal(4000, 8, (1, 2, 3), g)
    assert eps.shape == (4000, 8, 1, 2, 3)
    strata = (torch.special.ndtr(eps) * 8).floor().long().flatten(2)  # [sets, draws, D]
    assert (strata.sort(1).values == torch.arange(8).view(1, 8, 1)).all()  # one draw per stratum, per coordinate
    flat = eps[:, 3].flatten(1)  # one draw of each set: N(0, I)
    assert stats.kstest(flat[:, 4].numpy(), "norm").pvalue > 0.01
    assert flat.mean(0).abs().max() < 0.06 and (flat.var(0) - 1).abs().max() < 0.08
    assert abs(torch.corrcoef(flat.T)[0, 1]) < 0.06  # coordinates of one draw independent
    # the orders differ between coordinates: the same draw is in different strata of coordinates 0 and 1
    assert (strata[:, :, 0] != strata[:, :, 1]).float().mean() > 0.8


def test_control_features_have_mean_zero_and_follow_the_level_classes():
    x = torch.tensor([[-1.0, 1.0, 0.0, 0.125]])  # the lowest level, the highest, two interior (17 levels)
    assert coordinate_classes(x, 17).tolist() == [[0, 2, 1, 1]]
    assert coordinate_classes(x, None).tolist() == [[1, 1, 1, 1]]
    g = torch.Generator().manual_seed(1)
    eps = torch.randn(200_000, 4, generator=g, dtype=torch.float64)
    f = control_features(eps, coordinate_classes(x, 17).expand(200_000, -1))
    assert f.shape == (200_000, FEATURES)
    assert (f.mean(0).abs() < 4 * f.std(0) / math.sqrt(200_000) + 1e-12).all()
    torch.testing.assert_close(f.view(-1, CLASSES, 3)[:, 1, 0], eps[:, 2] + eps[:, 3])  # class 1's Σ ε_j


def test_fitted_slopes_recover_an_additive_term_and_are_dropped_where_they_do_not_help():
    g = torch.Generator().manual_seed(2)
    images, D = 64, 6
    classes = torch.tensor([0, 0, 1, 1, 2, 2]).expand(images * 2 * 2, -1)
    eps = torch.randn(images * 2 * 2, D, generator=g, dtype=torch.float64)
    features = control_features(eps, classes).view(images, 2, 2, FEATURES)
    truth = torch.linspace(-1, 1, FEATURES, dtype=torch.float64)
    means = torch.randn(images, 2, 1, generator=g, dtype=torch.float64) * 10  # per image and bin, cancels in pairs
    terms = means + (features * truth).sum(-1)
    terms[:, 1] = means[:, 1] + torch.randn(images, 2, generator=g, dtype=torch.float64)  # bin 1: pure noise
    slopes = fit_slopes(terms, features)
    torch.testing.assert_close(slopes[0], truth, atol=0.01, rtol=0)
    assert (slopes[1] == 0).all()


class LatticeDenoiser:
    """An x_0-predictor that knows the data's levels: x̃_0 = x_t/α_t rounded to the nearest level, then
    x̂_0 = clip(x̃_0 + d (x_t/α_t − x̃_0) + c σ_t/α_t) — x_0 + (σ_t/α_t)(d ε + c) wherever the rounding is right
    (the first steps), clipped at the end levels like the models' x̂_0: terms whose ε-noise is large, additive
    over coordinates, one-sided at the end levels, and concentrated at the first steps."""

    def __init__(self, schedule, levels, d=0.3, c=0.1):
        self.schedule, self.levels, self.d, self.c = schedule, levels, d, c

    def __call__(self, x_t, t):
        lam = self.schedule.log_snr(t)
        a, s = expand(alpha(lam), x_t), expand(sigma(lam), x_t)
        rounded = quantize(x_t / a, self.levels)
        return (rounded + self.d * (x_t / a - rounded) + self.c * s / a).clamp(-1, 1)


@torch.no_grad()
def test_latin_noise_and_the_control_variate_are_unbiased_honest_and_beat_iid_noise_where_the_first_steps_dominate():
    """A lattice denoiser on digits, T = 100: the new design (Latin-hypercube ε, control variate fitted on a
    pilot over other images) against the exact T-sum averaged over many ε, and against the old iid ε without the
    control variate at the same steps, proposal and passes."""
    T, levels = 100, 17
    schedule = Schedule("cosine", T)
    den = LatticeDenoiser(schedule, levels)
    x = load_data("digits", "test").model_range(slice(0, 4)).double()
    pilot = load_data("digits", "train").model_range(slice(0, 64)).double()
    g = torch.Generator().manual_seed(0)
    kw = {"levels": levels, "variance": "small"}
    per_step = torch.stack(
        [exact_bound(Denoiser(den, "x0"), x, schedule, generator=g, **kw).per_step for _ in range(40)]
    )
    exact = per_step.sum(2) + prior_term(x, schedule)
    exact_mean, exact_se = exact.mean(0), exact.std(0) / math.sqrt(40)
    eps_var = per_step.var(0).mean(0)  # [T]: each step's ε-variance
    assert eps_var[:5].sum() > 0.8 * eps_var.sum()  # the first steps hold the ε-noise
    slopes, second = pilot_step_fit(Denoiser(den, "x0"), pilot, schedule, step_edges(T, 16), generator=g, **kw)
    control = slopes[bin_of_step(step_edges(T, 16), T)]
    proposal = TimeProposal.fit(second, edges=step_edges(T, 16)).steps(T)
    spreads = {}
    for name, extra in {"new": {"control": control}, "old": {"latin": False}}.items():
        runs = [
            mc_bound(
                Denoiser(den, "x0"),
                x,
                schedule,
                samples=12,
                proposal=proposal,
                stratified=True,
                generator=g,
                **kw,
                **extra,
            )
            for _ in range(REPEATS)
        ]
        totals = torch.stack([b.total for b in runs])
        se = torch.stack([b.extras["stderr"] for b in runs])
        assert runs[0].extras["passes"][0] == 16
        err = (totals.mean(0) - exact_mean).abs()
        assert (err < 3 * torch.sqrt(totals.var(0) / REPEATS + exact_se**2)).all(), (name, err)
        ratio = se.pow(2).mean(0).sqrt() / totals.std(0)
        assert ((ratio > 0.7) & (ratio < 1.4)).all(), (name, ratio)
        spreads[name] = totals.std(0)
    # ≈ 0.55 here (the control variate does most; the residual is where rounding to a level fails, and the
    # spread of the steps drawn); broken slopes (wrong sign, wrong class) or correlated ε would raise it
    assert (spreads["new"] < 0.7 * spreads["old"]).all(), spreads


@pytest.mark.parametrize("max_batch", [7, 40, 1000])
def test_every_network_call_holds_at_most_max_batch_pairs(max_batch):
    """`max_batch` caps the pairs of each denoiser call, also when one image's K + R pairs exceed it (the draws
    a precision asks for can reach thousands), for the Monte-Carlo bound and for the pilot pass alike."""
    T, levels = 100, 17
    schedule = Schedule("cosine", T)
    den, sizes = LatticeDenoiser(schedule, levels), []

    def recording(x_t, t):
        sizes.append(len(x_t))
        return den(x_t, t)

    x = load_data("digits", "test").model_range(slice(0, 3)).double()
    g = torch.Generator().manual_seed(0)
    kw = {"levels": levels, "variance": "small", "generator": g, "max_batch": max_batch}
    slopes, _ = pilot_step_fit(Denoiser(recording, "x0"), x, schedule, step_edges(T, 8), **kw)
    assert max(sizes) <= max_batch and sum(sizes) == 3 * 8 * 2
    sizes.clear()
    control = slopes[bin_of_step(step_edges(T, 8), T)]
    b = mc_bound(Denoiser(recording, "x0"), x, schedule, samples=32, stratified=True, control=control, **kw)
    assert max(sizes) <= max_batch and sum(sizes) == 3 * 36 and b.total.isfinite().all()


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
    model.prepare_estimator(
        Estimator("mc", 12, "importance"), load_data("digits", "train").model_range(slice(0, 16)), g
    )
    spreads, passes = {}, {}
    for estimator in (Estimator("mc", 12, "importance"), Estimator("mc", 8)):
        runs = [model.elbo(x, estimator, g) for _ in range(REPEATS)]
        totals = torch.stack([b.total for b in runs])
        se = torch.stack([b.extras["stderr"] for b in runs])
        spreads[estimator.proposal] = totals.std(0)
        passes[estimator.proposal] = runs[0].extras["passes"][0].item()
        err = (totals.mean(0) - exact_mean).abs()
        assert (err < 3 * torch.sqrt(totals.var(0) / REPEATS + exact_se**2)).all(), (estimator, err)
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
    fitted, slopes = model.diffusion.time_proposal.clone(), model.diffusion.control_slopes.clone()
    model.diffusion.time_proposal.zero_()
    fresh = tiny_discrete(T=20)
    monkeypatch.setattr(DiffusionModel, "prepare_estimator", lambda *a, **k: pytest.fail("fitted again"))
    assert prepare_estimator(fresh, estimator, pilot, 8, seed=0)
    assert torch.equal(fresh.diffusion.time_proposal, fitted)  # bit for bit
    assert torch.equal(fresh.diffusion.control_slopes, slopes) and slopes.abs().sum() > 0
    monkeypatch.undo()
    assert not prepare_estimator(fresh, estimator, Pilot(train, pilot.cache, {"weights": "w2"}), 8, seed=0)
    assert len(__import__("json").loads(pilot.cache.read_text())["fits"]) == 2
    # a cache that cannot be written is no cache: the fit is made and used all the same
    unwritable = Pilot(train, tmp_path / "missing" / "fits.json")
    assert not prepare_estimator(fresh, estimator, unwritable, 8, seed=1) and fresh.diffusion.proposal_fitted()
    assert not unwritable.cache.exists()
