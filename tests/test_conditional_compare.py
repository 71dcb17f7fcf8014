"""`compare --conditional`: conditioning's gain judged against its ceiling log₂ K / D and guidance's precision–recall
trade, on synthetic measurements whose answer is known; the guidance sweep's points on a small conditional model;
the command line end to end on digits with a tiny budget."""

from __future__ import annotations

import json
import math
from dataclasses import replace

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
    c = C.contrast_worth(conditional, unconditional, K, DIMS, ("vae", "vae-conditional"))
    assert c.verdict == expected
    assert c.effect is not None and c.effect.value == pytest.approx(gain - CEILING, abs=3 * noise)
    assert c.effect.direction == -1 and "0.0519" in c.measured and "null class" not in c.measured
    assert "vae against vae-conditional" in c.rule and "not supported when it excludes it on the other" in c.rule


def test_the_null_class_is_reported_beside_the_judged_pair_not_judged():
    """The twin's own null class far looser than the model trained alike: the verdict is the pair's alone."""
    conditional, unconditional = bounds(0.01)
    per_image = np.asarray(conditional.per_example_bpd)
    null = bound(per_image + 0.2 + 0.005 * RNG.standard_normal(len(per_image)))
    pair = ("diffusion", "diffusion-conditional")
    c = C.contrast_worth(conditional, unconditional, K, DIMS, pair, null)
    plain = C.contrast_worth(conditional, unconditional, K, DIMS, pair)
    assert c.verdict == plain.verdict == "supported" and c.effects == plain.effects
    loose = C.bound_gain(null, conditional, "test images")
    assert loose.value == pytest.approx(0.2, abs=0.002)
    assert "through the null class" in c.measured and f"{loose.value:.3g} [" in c.measured
    # judged against the null class instead, the same twin would read not supported
    assert C.contrast_worth(conditional, null, K, DIMS, pair).verdict == "not supported"


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


def conditional_of(contrasts: list[dict]) -> list[dict]:
    return [c for c in contrasts if c["factor"] == C.CONDITIONING]


def test_compare_conditional_end_to_end_over_two_seeds(run_cli, tmp_path, monkeypatch):
    from test_compare import CONFIG

    from elbolab.experiments import compare

    # the command line's --quick, in its pool of two processes, with test_compare's tiny networks and measurement
    kept = ("evaluation", "beta_sweep", "steps", "steps_replicates", "interpolation_pairs", "timing_repeats")
    kept += ("information_images", "information_draws", "overrides")
    quick = compare.quick_config
    monkeypatch.setattr(
        compare, "quick_config", lambda cfg: replace(quick(cfg), **{k: getattr(CONFIG, k) for k in kept})
    )
    out = tmp_path / "c"
    args = ("--budget", "20steps", "--quick", "--quiet", "--conditional", "--seeds", "2")
    code, stdout, err = run_cli("compare", "--out", out, *args)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    mine = conditional_of(results["contrasts"])
    titles = [c["title"] for c in mine]
    assert titles.count(C.WORTH) == 2 and titles.count(C.TRADE) == 1  # both ends' gains; the guided end's trade
    assert all(c["verdict"] in ("supported", "not supported", "inconclusive") and c["effects"] for c in mine)
    worth = [c for c in mine if c["title"] == C.WORTH]
    assert [c["pair"] for c in worth] == [[n, f"{n}-conditional"] for n in ("vae", "diffusion")]  # one factor apart
    assert "through the null class" in worth[1]["measured"] and "null class" not in worth[0]["measured"]
    assert len(results["conditional"]) == 2 and all(name.endswith("-conditional") for name in results["conditional"])
    # each seed trained its own twins in its own folder, in its pool, and judged them on its own models
    assert err.count("conditional twins and measuring") == 2
    per_seed = [conditional_of(s["contrasts"]) for s in results["seeds"]]
    for folder, seed, found in zip((out, out / "seed-1"), (0, 1), per_seed):
        assert [c["title"] for c in found] == titles
        assert all((folder / "runs" / name / "metrics.json").is_file() for name in results["conditional"])
        saved = json.loads((out / f"seed-{seed}-results.json").read_text())
        assert conditional_of(saved["contrasts"]) == found
    # folded over the seeds as the other contrasts are: the mean of the seeds' effects, the power of two seeds
    for i, c in enumerate(mine):
        values = [found[i]["effects"][0]["value"] for found in per_seed]
        assert c["per_seed"] == pytest.approx(values) and c["effects"][0]["value"] == pytest.approx(np.mean(values))
        assert "folded over 2 seeds" in c["effects"][0]["test"] and c["power"]["seeds"] == 2
    bounds = [i for i, c in enumerate(mine) if c["title"] == C.WORTH]  # each seed's own twins and ends
    assert all(len({found[i]["effects"][0]["value"] for found in per_seed}) == 2 for i in bounds)
    report = (out / "report.md").read_text()
    assert C.WORTH in report and C.TRADE in report and C.TRADE in stdout
    code, _, err = run_cli("report", out, "--out", tmp_path / "r")  # the saved results read back
    assert code == 0, err
    assert C.WORTH in (tmp_path / "r" / "report.md").read_text()


def test_the_estimate_and_the_plan_count_the_twins():
    from elbolab.experiments.compare import (
        CORE_RUNS,
        CompareConfig,
        estimated_seconds,
        expected_seconds,
        job_plan,
        preset_for,
        with_preset,
    )

    cfg = CompareConfig(device="cpu")
    preset, budget = preset_for(8, "cpu"), with_preset(cfg, 8).budget
    assert budget is not None
    # an end's budget trained in the design's pool of two processes, then measured as one run of the core design,
    # in turn after the pool
    twin = expected_seconds(budget, preset) / 2 + preset.measure_seconds / CORE_RUNS * 2
    for seeds in (1, 3):
        plain, conditional = (CompareConfig(device="cpu", seeds=seeds, conditional=c) for c in (False, True))
        added = estimated_seconds(conditional, 8) - estimated_seconds(plain, 8)
        assert added == pytest.approx(seeds * 2 * twin)
    cfg = CompareConfig(budget=40.0, conditional=True)
    plan, before = job_plan(cfg), job_plan(CompareConfig(budget=40.0))
    assert plan[: len(before)] == before
    assert plan[len(before) :] == tuple(
        stage
        for name in ("vae-conditional", "diffusion-conditional")
        for stage in (("train", name, 40.0), ("measure", name, 0.0))
    )
