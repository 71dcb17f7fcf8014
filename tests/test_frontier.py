"""The speed–quality frontier: every declared sampler on one NFE axis, each point with its interval, compare's ringed."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
import torch
from synthetic import synthetic_results

from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.model import DiffusionModel
from elbolab.diffusion.samplers import SAMPLERS, nfe
from elbolab.errors import ConfigError
from elbolab.evaluate.frontier import FRONTIER_NFE, frontier_sweep, point_nfe, steps_at, with_points
from elbolab.evaluate.steps import StepsPoint
from elbolab.experiments.compare import CompareConfig
from elbolab.nets.unet import UNetConfig
from elbolab.records import Resampled
from elbolab.report import figures

SHAPE, LEVELS = (1, 8, 8), 17


def tiny(time: str = "continuous", T: int = 1000) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(DiffusionConfig(unet=UNetConfig(preset="tiny"), time=time, T=T), SHAPE, LEVELS).eval()


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_each_sampler_reaches_every_target_from_below_and_no_closer_step_exists(sampler):
    caps = tiny().capabilities
    ks = steps_at(sampler, FRONTIER_NFE, caps)
    assert list(ks) == sorted(set(ks))
    for target in FRONTIER_NFE:  # the steps swept for each target: the most whose NFE stays within it
        k = max(k for k in ks if nfe(sampler, k) <= target)
        assert target < nfe(sampler, k + 1)
    assert all(any(nfe(sampler, k) <= t < nfe(sampler, k + 1) for t in FRONTIER_NFE) for k in ks)


def test_heun_takes_2k_minus_1_evaluations_and_a_discrete_chain_caps_the_steps():
    caps = tiny().capabilities
    assert steps_at("heun", FRONTIER_NFE, caps) == (1, 2, 4, 8, 16, 32, 50)  # NFE 1, 3, 7, 15, 31, 63, 99
    assert steps_at("ddim", FRONTIER_NFE, caps) == FRONTIER_NFE
    short = tiny("discrete", T=10).capabilities
    assert steps_at("ddim", FRONTIER_NFE, short) == (1, 2, 4, 8)
    assert steps_at("heun", FRONTIER_NFE, short) == (1, 2, 4, 8)


def test_the_sweep_draws_every_declared_sampler_at_its_steps():
    model = tiny()
    reference = torch.randint(0, LEVELS, (16, *SHAPE), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    points = frontier_sweep(model, reference, LEVELS, None, targets=(1, 4), n=8, replicates=5)
    found = {(p.sampler, p.steps) for p in points}
    expected = {(s, k) for s in model.capabilities.samplers for k in steps_at(s, (1, 4), model.capabilities)}
    assert found == expected and len(points) == len(expected)
    assert {point_nfe(p) for p in points if p.sampler == "heun"} == {1, 3}
    assert all(p.figures.laplacian_ratio.replicates for p in points)  # every point carries its resamples
    only = frontier_sweep(model, reference, LEVELS, None, targets=(2,), samplers=("ddim", "nope"), n=4, replicates=2)
    assert [(p.sampler, p.steps) for p in only] == [("ddim", 2)]


def test_reused_points_are_added_once():
    results, _, _ = synthetic_results()
    points = results.seeds[0].steps
    again = with_points(points, points[:2])
    assert again == tuple(points)
    extra = StepsPoint("diffusion", "heun", 4, 1e-3, points[0].figures)
    assert with_points(points, [extra])[-1] == extra


def drawn(monkeypatch: pytest.MonkeyPatch, draw: Any) -> Any:
    """The matplotlib figure a report plot draws, instead of its PNG bytes."""
    kept: list[Any] = []
    monkeypatch.setattr(figures, "png", lambda fig: kept.append(fig) or b"")
    draw()
    return kept[0]


def test_the_frontier_figure_shows_every_sampler_with_intervals_and_rings_compares(monkeypatch):
    results, _, _ = synthetic_results()
    models = results.measured()
    fd = Resampled(12.0, tuple(12.0 + 0.1 * i for i in range(-10, 11)))
    heun = tuple(
        StepsPoint("diffusion", "heun", k, 1e-3, replace(results.seeds[0].steps[0].figures, fd=fd)) for k in (1, 2, 4)
    )
    points = (*results.seeds[0].steps, *heun)
    fig = drawn(
        monkeypatch, lambda: figures.frontier_quality(points, figures.quality_points(models), results.seeds[0].floors)
    )
    ax = fig.axes[0]
    handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
    for sampler in ("ancestral", "ddim", "heun"):
        assert any(label.endswith(f" {sampler}") for label in handles)
    heun_line = next(h for label, h in handles.items() if label.endswith(" heun")).lines[0]
    assert list(heun_line.get_xdata()) == [1, 3, 7]  # Heun's NFE, not its steps
    ring = handles["the sampler and NFE compare uses"]
    used = {
        (point_nfe(StepsPoint.of(m)), m.samples.fd.value)
        for m in models.values()
        if m.quality_samples and m.samples and m.samples.fd
    }
    assert set(zip(ring.get_xdata(), ring.get_ydata())) == used
    low, high = fd.interval()
    segments = [s for c in ax.collections for s in c.get_segments()]
    assert any(abs(s[0][1] - low) < 1e-9 and abs(s[1][1] - high) < 1e-9 for s in segments)  # Heun's interval
    ticks = sorted(ax.get_xticks())
    assert ticks[0] == 1 and all(b > 1.25 * a for a, b in itertools.pairwise(ticks))  # no two labels overprint


def test_compare_refuses_an_unknown_sampler_to_sweep_in_one_line():
    with pytest.raises(
        ConfigError, match=r"^steps_samplers=.*'nope'.*must be None or names among ancestral, ddim"
    ) as caught:
        CompareConfig(steps_samplers=("ddim", "nope"))
    assert "\n" not in str(caught.value)
    assert CompareConfig(steps_samplers=None).steps_samplers is None
    assert CompareConfig().steps_samplers == ("ancestral", "ddim")  # compare's default sweep: no new cost
