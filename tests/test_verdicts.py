"""Every contrast on synthetic evidence: an effect clearly present is supported, one clearly reversed is not
supported, and one too small (or too noisy) to see is inconclusive; seeds fold into one interval."""

import math

import numpy as np
import pytest

from elbolab.evaluate.floors import Floors
from elbolab.evaluate.information import InformationCurve
from elbolab.evaluate.interpolation import PathStats
from elbolab.evaluate.run import Measurement
from elbolab.evaluate.speed import PairedTiming
from elbolab.evaluate.steps import StepsPoint
from elbolab.experiments import verdicts as V
from elbolab.records import BoundSummary, Contrast, Effect, Resampled, SampleFigures, SweepPoint, UnitSummary

PRESENT, ABSENT, TOO_SMALL = "supported", "not supported", "inconclusive"
RNG = np.random.default_rng(0)


def rs(value: float, sd: float, n: int = 200) -> Resampled:
    """A figure with normal bootstrap replicates of spread sd."""
    return Resampled(value, tuple(value + sd * RNG.standard_normal(n)))


def figures(lap: float, fd: float, sd_lap: float = 0.02, sd_fd: float = 0.3, **more: Resampled) -> SampleFigures:
    return SampleFigures(
        256, 360, rs(lap, sd_lap), rs(lap, sd_lap), rs(fd, sd_fd), rs(fd / 100, 0.001), feature_net="cnn", **more
    )


def bound(per_image: np.ndarray) -> BoundSummary:
    unit = UnitSummary(float(per_image.mean()), 0.01, {}, {})
    return BoundSummary(unit, unit, True, len(per_image), "mc", per_example_bpd=tuple(per_image.tolist()))


def measurement(per_image: np.ndarray, fd: float = 10.0, components=None) -> Measurement:
    return Measurement(
        "diffusion", "L_simple", 1, bound=bound(per_image), samples=figures(1.0, fd), components=components or {}
    )


def timing(ratio: float, noise: float = 0.01, n: int = 8) -> PairedTiming:
    a = 0.01 * np.exp(noise * RNG.standard_normal(n))
    b = a * ratio * np.exp(noise * RNG.standard_normal(n))
    return PairedTiming("a", "b", tuple(a.tolist()), tuple(b.tolist()))


def paired(delta: float, noise: float = 0.05, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): per-image values of two models on the same images, a − b ≈ delta."""
    base = 1.5 + 0.3 * RNG.standard_normal(n)
    return base + delta + noise * RNG.standard_normal(n), base


DELTA = {PRESENT: 0.3, ABSENT: -0.3, TOO_SMALL: 0.002}
RATIO = {PRESENT: 20.0, ABSENT: 0.05, TOO_SMALL: 1.001}


@pytest.mark.parametrize("expected", [PRESENT, ABSENT, TOO_SMALL])
def test_timed_contrasts(expected):
    assert V.contrast_encoder(timing(RATIO[expected]), 1000, 200).verdict == expected
    assert V.contrast_speed(timing(RATIO[expected]), 50).verdict == expected


@pytest.mark.parametrize("expected", [PRESENT, ABSENT, TOO_SMALL])
def test_likelihood_is_a_paired_difference(expected):
    vae, dif = paired(DELTA[expected])
    c = V.contrast_likelihood(bound(vae), bound(dif))
    assert c.verdict == expected and "paired t-interval over 100 test images" in c.rule


def test_paired_test_sees_what_unpaired_intervals_miss():
    # images differ far more from each other than the two models differ on any one image
    vae, dif = paired(0.02, noise=0.005)
    assert V.contrast_likelihood(bound(vae), bound(dif)).verdict == PRESENT
    unpaired_half = 1.96 * math.hypot(vae.std(), dif.std()) / math.sqrt(len(vae))
    assert abs(vae.mean() - dif.mean()) < unpaired_half


SHARP = {
    PRESENT: (figures(0.5, 20.0), figures(1.0, 5.0)),
    ABSENT: (figures(1.0, 5.0), figures(0.5, 5.0)),
    TOO_SMALL: (figures(0.97, 5.0, sd_lap=0.1), figures(0.98, 5.0, sd_lap=0.1)),
}


@pytest.mark.parametrize("expected", [PRESENT, ABSENT, TOO_SMALL])
def test_sharpness_is_closeness_to_the_data(expected):
    assert V.contrast_sharpness(*SHARP[expected]).verdict == expected


def test_noisy_samples_are_not_sharp():
    # diffusion's samples at twice the data's Laplacian variance are further from the data than a VAE at 0.7
    assert V.contrast_sharpness(figures(0.7, 10.0), figures(2.0, 10.0)).verdict == ABSENT
    # closer to the data's own sharpness but far worse in Fréchet distance: the guard makes it inconclusive
    assert V.contrast_sharpness(figures(0.5, 5.0), figures(1.0, 30.0)).verdict == TOO_SMALL


@pytest.mark.parametrize(
    "expected,fds", [(PRESENT, (20.0, 5.0, 0.3)), (ABSENT, (5.0, 20.0, 0.3)), (TOO_SMALL, (10.0, 9.9, 1.0))]
)
def test_quality(expected, fds):
    v, d, sd = fds
    floors = Floors(figures(1.0, 1.0), figures(0.3, 30.0), 0.5, 256, "training images")
    c = V.contrast_quality(figures(1, v, sd_fd=sd), figures(1, d, sd_fd=sd), floors)
    assert c.verdict == expected and "real held-out" in c.measured and "blurred" in c.measured


def curve(fall_steps: float, se: float, T: int = 100) -> InformationCurve:
    """A logistic fall of I from log N to 0 centred on step 50, 90% → 10% over about `fall_steps` steps."""
    steps = tuple(range(1, T + 1))
    log_n = math.log(1000)
    width = max(fall_steps / (2 * math.log(9)), 1e-4)
    nats = tuple(log_n * 0.5 * (1 - math.tanh((s - 50.5) / (2 * width))) for s in steps)
    return InformationCurve("forward", steps, tuple(s / T for s in steps), nats, (se,) * T, log_n, 1000, 256)


@pytest.mark.parametrize("expected,fall,se", [(PRESENT, 40, 0.01), (ABSENT, 0.01, 0.001), (TOO_SMALL, 1.5, 3.0)])
def test_bottleneck_from_the_information_curve(expected, fall, se):
    c = V.contrast_bottleneck(curve(fall, se), None, 16, 64)
    assert c.verdict == expected, c.measured


def test_information_span_counts_steps():
    assert V.information_span(curve(40, 0.0)) == pytest.approx(40, rel=0.05)


def test_a_curve_that_never_falls_through_a_level_spans_to_its_last_step_with_replicates_too():
    """Many images (log N large) and a short chain: I(x_0; x_t) stays above 10% of log N to the last step.
    The resampled replicates are numpy arrays, and must be read the same way as the measured tuple."""
    flat = curve(40, 0.05)
    high = InformationCurve(
        "forward",
        flat.steps,
        flat.t,
        tuple(0.5 * flat.max_nats + 0.5 * v for v in flat.nats),
        flat.stderr_nats,
        flat.max_nats,
        flat.n_images,
        flat.draws,
    )
    assert V.crossing(high.steps, np.asarray(high.nats), 0.1 * high.max_nats) == high.steps[-1]
    effect = V.span_effect(high)
    assert effect.low <= V.information_span(high) <= effect.high


def steps_points(one: float, many: float, sd: float = 0.02, fd_one: float = 30.0) -> tuple[StepsPoint, ...]:
    return (
        StepsPoint("diffusion", "ancestral", 1, 0.001, figures(one, fd_one, sd_lap=sd)),
        StepsPoint("diffusion", "ancestral", 10, 0.01, figures((one + many) / 2, 20.0, sd_lap=sd)),
        StepsPoint("diffusion", "ancestral", 100, 0.1, figures(many, 10.0, sd_lap=sd)),
        StepsPoint("vae", "decoder", 1, 0.0001, figures(0.6, 25.0)),
    )


@pytest.mark.parametrize(
    "expected,args", [(PRESENT, (0.4, 0.95)), (ABSENT, (0.95, 0.4, 0.02, 5.0)), (TOO_SMALL, (0.9, 0.91, 0.1))]
)
def test_steps_sweep(expected, args):
    assert V.contrast_steps(steps_points(*args)).verdict == expected


def sweep(low_lap: float, high_lap: float, prior_fd: float, recon_fd: float, sd: float = 0.02):
    def point(beta, lap, pf, rf):
        return SweepPoint(
            beta,
            1.0 / beta,
            10 * beta,
            sample_figures=figures(lap, pf, sd_lap=sd, sd_fd=sd * 10),
            reconstruction_figures=figures(lap, rf, sd_lap=sd, sd_fd=sd * 10),
            interpolation_step_mean=1.0,
            interpolation_max_step_ratio=1.5,
        )

    return (
        point(0.25, low_lap, prior_fd, recon_fd),
        point(1.0, (low_lap + high_lap) / 2, 10, 10),
        point(4.0, high_lap, 12, 11),
    )


@pytest.mark.parametrize(
    "expected,args",
    [(PRESENT, (1.0, 0.5, 30.0, 5.0)), (ABSENT, (0.5, 1.0, 5.0, 30.0)), (TOO_SMALL, (0.9, 0.9, 10.0, 10.0, 0.5))],
)
def test_tug_of_war(expected, args):
    points = sweep(*args)
    assert V.contrast_tug_blur(points).verdict == expected
    assert V.contrast_tug_disjoint(points).verdict == expected


def test_tug_of_war_needs_a_beta_below_one():
    points = tuple(p for p in sweep(1.0, 0.5, 30.0, 5.0) if p.beta >= 1)
    assert V.contrast_tug_disjoint(points).verdict == TOO_SMALL


OBJECTIVE = {PRESENT: (0.3, 10.0, 20.0), ABSENT: (-0.3, 20.0, 10.0), TOO_SMALL: (0.0005, 10.0, 10.01)}


@pytest.mark.parametrize("expected", [PRESENT, ABSENT, TOO_SMALL])
def test_objective(expected):
    cost, fd_simple, fd_weighted = OBJECTIVE[expected]
    simple, weighted = paired(cost)
    c = V.contrast_objective(measurement(simple, fd_simple), measurement(weighted, fd_weighted), "L_vlb")
    assert c.verdict == expected


def paths(conf_gap: float, noise: float = 0.02, n: int = 16) -> dict[str, PathStats]:
    base = 0.7 + 0.1 * RNG.standard_normal(n)
    vae_conf = base + conf_gap + noise * RNG.standard_normal(n)
    even = 1.5 + 0.01 * RNG.standard_normal(n)
    ones = tuple(np.ones(n))
    return {
        "vae": PathStats(ones, tuple(even), tuple(vae_conf), ones, 9),
        "diffusion": PathStats(ones, tuple(even + 0.5), tuple(base), ones, 9),
    }


@pytest.mark.parametrize("expected,gap,noise", [(PRESENT, 0.2, 0.02), (ABSENT, -0.2, 0.02), (TOO_SMALL, 0.001, 0.2)])
def test_interpolation(expected, gap, noise):
    assert V.contrast_interpolation(paths(gap, noise), ("vae", "diffusion")).verdict == expected


@pytest.mark.parametrize("expected", [PRESENT, ABSENT, TOO_SMALL])
def test_latent(expected):
    ae, own = paired(DELTA[expected])
    ld = measurement(own, components={"autoencoder": bound(ae)})
    out = V.contrast_latent(ld, timing(RATIO[expected]), 784, 16, 20)
    assert out.verdict == expected and "(ratio 49.0)" in out.measured


def test_latent_says_when_the_data_are_too_small():
    ae, own = paired(0.3)
    out = V.contrast_latent(measurement(own, components={"autoencoder": bound(ae)}), timing(0.9), 64, 16, 20)
    assert "too small for the latent model's speed advantage" in out.measured and out.verdict == ABSENT


def test_a_check_without_power_is_inconclusive():
    # the interval excludes 0, but the check could only have detected effects twice as large
    e = Effect("x", 1.0, 0.5, 1.5, "t", min_detectable=2.0)
    assert e.verdict() == PRESENT and V.decide(e) == TOO_SMALL


def test_seeds_fold_the_spread_into_the_interval():
    vae, dif = paired(0.1, noise=0.01)
    one = V.contrast_likelihood(bound(vae), bound(dif))
    agree = V.fold_seeds([(one,), (one,), (one,)])[0]
    assert agree.verdict == PRESENT and agree.per_seed == (one.effect.value,) * 3
    # seeds that disagree in sign: the folded interval covers 0
    other = V.contrast_likelihood(bound(dif), bound(vae))
    split = V.fold_seeds([(one,), (other,), (one,)])[0]
    assert split.verdict == TOO_SMALL and split.effect.high - split.effect.low > one.effect.high - one.effect.low
    assert "folded over 3 seeds" in split.effect.test


def test_judge_returns_every_contrast_the_evidence_allows():
    vae, dif = paired(0.3)
    models = {
        "vae": Measurement("vae", "β-ELBO", 1, bound=bound(vae), samples=figures(0.5, 20.0)),
        "diffusion": Measurement("diffusion", "L_simple", 1, bound=bound(dif), samples=figures(1.0, 5.0)),
    }
    titles = [c.title for c in V.judge(V.Evidence(models, 64, 50, ends=("vae", "diffusion")))]
    assert titles == [V.SHARPNESS, V.QUALITY, V.LIKELIHOOD]


def test_the_evidence_figures_draw_from_synthetic_records(tmp_path):
    from elbolab.report import figures as draw

    # a figure outside its own percentile interval (bootstrap bias) must still draw
    biased = SampleFigures(256, 360, Resampled(1.0, tuple(np.linspace(1.1, 1.3, 50))), rs(1.0, 0.02), rs(5.0, 0.3))
    points = steps_points(0.4, 0.95) + (StepsPoint("diffusion", "ddim", 5, 0.01, biased),)
    floors = Floors(figures(1.0, 1.0), figures(0.3, 30.0), 0.5, 256, "training images")
    assert draw.steps_curves(points, floors, lambda f: f.laplacian_ratio, "sharpness").startswith(b"\x89PNG")
    assert draw.information_curves(
        (curve(40, 0.01), InformationCurve("VAE", (1,), (math.nan,), (3.0,), (0.1,), math.log(1000), 1000, 256)),
    ).startswith(b"\x89PNG")
    assert draw.beta_sweep(sweep(1.0, 0.5, 30.0, 5.0)).startswith(b"\x89PNG")


def test_every_rule_names_its_tests_and_smallest_detectable_effects():
    vae, dif = paired(0.3)
    models = {
        "vae": Measurement("vae", "β-ELBO", 1, bound=bound(vae), samples=figures(0.5, 20.0)),
        "diffusion": Measurement("diffusion", "L_simple", 1, bound=bound(dif), samples=figures(1.0, 5.0)),
    }
    judged = V.judge(V.Evidence(models, 64, 50, ends=("vae", "diffusion"))) + (
        V.contrast_tug_blur(()),
        V.contrast_interpolation({}, ("vae", "diffusion")),
    )
    for c in judged:
        effects = c.effects
        assert all(
            e.test in c.rule and f"smallest detectable effect {e.min_detectable:.3g}" in c.rule for e in effects
        ), c.rule
        assert effects or ("bootstrap" in c.rule or "t-interval" in c.rule) and "no smallest detectable" in c.rule
    # folding seeds names the folded test and its smallest detectable effect, not the first seed's
    folded = V.fold_seeds([judged[:1]] * 3)[0]
    assert folded.effect.test in folded.rule and "folded over 3 seeds" in folded.rule
    assert f"smallest detectable effect {folded.effect.min_detectable:.3g}" in folded.rule


def test_quality_shows_precision_and_recall_with_their_intervals():
    vae = figures(1.0, 20.0, precision=rs(0.6, 0.02), recall=rs(0.7, 0.02))
    dif = figures(1.0, 5.0, precision=rs(0.8, 0.02), recall=rs(0.75, 0.02))
    c = V.contrast_quality(vae, dif)
    assert f"Precision (bootstrap 95%, not part of the rule): VAE {V.show_figure(vae.precision)}" in c.measured
    assert "Recall" in c.measured and V.contrast_quality(figures(1.0, 20.0), figures(1.0, 5.0)).verdict == c.verdict


def test_a_contrast_keeps_its_effects_and_rule_and_reads_back_from_json():
    vae, dif = paired(0.1, noise=0.01)
    one = V.contrast_likelihood(bound(vae), bound(dif))
    folded = V.fold_seeds([(one,), (one,)])[0]
    for c in (one, folded, V.contrast_interpolation(paths(0.2), ("vae", "diffusion"))):
        again = Contrast.from_json(c.to_json())
        assert again == c and again.effect == c.effects[0] and V.combine(again.effects, again.combine) == c.verdict
    with pytest.raises(ValueError, match="combine by one of all, guarded"):
        Contrast("t", "c", "m", "r", "inconclusive", combine="any")
