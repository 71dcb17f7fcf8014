"""`compare --conditional`: conditioning's gain judged against its ceiling log₂ K / D and guidance's precision–recall
trade, on synthetic measurements whose answer is known; the guidance sweep's points on a small conditional model;
the command line end to end on digits with a tiny budget."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from elbolab.data import load_data
from elbolab.diffusion import DiffusionConfig, DiffusionModel
from elbolab.evaluate.resample import bootstrap_indices
from elbolab.experiments import conditional as C
from elbolab.nets.unet import UNetConfig
from elbolab.records import BoundSummary, Resampled, SampleFigures, UnitSummary

RNG = np.random.default_rng(0)
DIMS, K = 64, 10
CEILING = math.log2(K) / DIMS  # 0.0519 bits/dim on digits


def bound(per_image: np.ndarray) -> BoundSummary:
    unit = UnitSummary(float(per_image.mean()), 0.01, {}, {})
    return BoundSummary(unit, unit, True, len(per_image), "mc", per_example_bpd=tuple(per_image.tolist()))


def bounds(gain: float, noise: float = 0.005, n: int = 360) -> tuple[BoundSummary, BoundSummary]:
    """(conditional, unconditional) on the same images, the unconditional higher by `gain` bits/dim."""
    base = 2.0 + 0.3 * RNG.standard_normal(n)
    return bound(base), bound(base + gain + noise * RNG.standard_normal(n))


def test_the_ceiling_is_log2_k_over_d():
    assert C.ceiling_bpd(10, 64) == pytest.approx(0.05190512648)
    assert C.ceiling_bpd(10, 784) == pytest.approx(0.00423715318)


@pytest.mark.parametrize(
    ("gain", "noise", "expected"),
    [
        (0.01, 0.005, "supported"),  # well below the ceiling
        (0.15, 0.005, "not supported"),  # above it: the unconditional bound is loose, flagged
        (CEILING + 0.0005, 0.05, "inconclusive"),  # at the ceiling within the noise
    ],
)
def test_a_gain_above_log_k_is_flagged(gain, noise, expected):
    conditional, unconditional = bounds(gain, noise)
    c = C.contrast_worth(conditional, unconditional, K, DIMS, "the null class")
    assert c.verdict == expected
    assert c.effect is not None and c.effect.value == pytest.approx(gain - CEILING, abs=3 * noise)
    assert c.effect.direction == -1 and "0.0519" in c.measured


def figures(precision: float, recall: float, sd: float = 0.01, n: int = 200) -> SampleFigures:
    def rs(v: float) -> Resampled:
        return Resampled(v, tuple(v + sd * RNG.standard_normal(n)))

    return SampleFigures(400, 360, rs(1.0), rs(1.0), rs(5.0), rs(0.01), rs(precision), rs(recall), "cnn")


def point(w: float, precision: float, recall: float, sd: float = 0.01) -> C.GuidancePoint:
    return C.GuidancePoint(w, "ddim", 50, 40, figures(precision, recall, sd), Resampled(0.9, (0.88, 0.92)))


@pytest.mark.parametrize(
    ("strong", "expected"),
    [((0.9, 0.4), "supported"), ((0.6, 0.8), "not supported"), ((0.9, 0.7), "inconclusive")],
)
def test_guidance_trades_recall_for_precision(strong, expected):
    c = C.contrast_trade(point(1.0, 0.7, 0.7), point(3.0, *strong))
    assert c.verdict == expected
    assert [e.direction for e in c.effects] == [1, -1]


def test_a_trade_without_precision_is_not_judged():
    plain = point(1.0, 0.7, 0.7)
    bare = C.GuidancePoint(3.0, "ddim", 50, 40, SampleFigures(400, 360, Resampled(1, ()), Resampled(1, ())))
    assert C.contrast_trade(plain, bare).verdict == "inconclusive" and not C.contrast_trade(plain, bare).effects


def test_accuracy_replicates_use_the_samples_resampling_indices():
    hits = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    r = C.resampled_accuracy(hits, 5, seed=3)
    idx = bootstrap_indices(8, 5, 4)  # sample_figures draws the samples' indices from seed + 1
    assert r.value == pytest.approx(0.75)
    assert r.replicates == pytest.approx(hits.double().numpy()[idx].mean(1))


def small_conditional() -> DiffusionModel:
    torch.manual_seed(0)
    cfg = DiffusionConfig(T=12, unet=UNetConfig(preset="tiny"), conditional=True)
    return DiffusionModel(cfg, (1, 8, 8), 17, classes=K)


def test_the_sweep_samples_every_class_from_the_same_noise():
    model = small_conditional()
    test = load_data("digits", "test")
    from elbolab.evaluate.features import select_features

    features, _ = select_features("digits", "builtin")
    points = C.guidance_sweep(model, test, features, (0.0, 1.0), 3, "ddim", 4, 20)
    assert [p.w for p in points] == [0.0, 1.0] and all(p.figures.n == 3 * K for p in points)
    assert all(p.accuracy is not None and 0 <= p.accuracy.value <= 1 for p in points)
    # w = 1 is the conditional model itself: the same draws as sampling it without a guidance scale
    y = C.class_labels(K, 3)
    g = torch.Generator().manual_seed(0)
    plain = model.sample(len(y), g, sampler="ddim", steps=4, y=y)
    assert torch.equal(C.guided_samples(model, y, 1.0, "ddim", 4, 0), plain)
    rows = C.sweep_rows(points)
    assert all(r["fd_low"] <= r["fd"] <= r["fd_high"] for r in rows)


def test_the_sweep_refuses_a_model_without_guidance():
    model = DiffusionModel(DiffusionConfig(T=12, unet=UNetConfig(preset="tiny")), (1, 8, 8), 17)
    with pytest.raises(ValueError, match="guidance"):
        C.guidance_sweep(model, load_data("digits", "test"), None)  # type: ignore[arg-type]


def test_compare_conditional_end_to_end(run_cli, tmp_path):
    out = tmp_path / "c"
    code, stdout, err = run_cli("compare", "--out", out, "--budget", "20steps", "--quick", "--quiet", "--conditional")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    mine = [c for c in results["contrasts"] if c["factor"] == C.CONDITIONING]
    titles = [c["title"] for c in mine]
    assert titles.count(C.WORTH) == 2 and titles.count(C.TRADE) == 1  # both ends' gains; the guided end's trade
    assert all(c["verdict"] in ("supported", "not supported", "inconclusive") and c["effects"] for c in mine)
    assert len(results["conditional"]) == 2 and all(name.endswith("-conditional") for name in results["conditional"])
    report = (out / "report.md").read_text()
    assert C.WORTH in report and C.TRADE in report and C.TRADE in stdout
    code, _, err = run_cli("report", out, "--out", tmp_path / "r")  # the saved results read back
    assert code == 0, err
    assert C.WORTH in (tmp_path / "r" / "report.md").read_text()
