"""`elbolab compare` and `elbolab report` end to end on digits, with tiny models and budgets."""

import json
import math
import shutil

import pytest
from synthetic import CountedFeatures
from test_design import Tiny

from elbolab.cli import reference_images
from elbolab.evaluate.features import select_features
from elbolab.evaluate.run import EvalConfig
from elbolab.experiments import compare
from elbolab.experiments.along import judged_points
from elbolab.experiments.attribution import ALONG_OUTCOMES
from elbolab.experiments.compare import CompareConfig, run_compare
from elbolab.experiments.design import FACTORS, WANTED
from elbolab.experiments.results import CompareResults
from elbolab.experiments.verdicts import combine
from elbolab.registry import MODEL_KINDS
from elbolab.report.render import write_report
from elbolab.train.run import snapshot_path

#: encoder, bottleneck, speed, sharpness, quality, steps, two tug-of-war, likelihood, interpolation, ε-objective,
#: latent diffusion
CONTRASTS = 12

TINY = {
    "vae": {"model.net": "tiny", "train.batch_size": 64},
    "diffusion": {
        "model.unet.preset": "tiny",
        "model.T": 100,
        "model.encode_steps": 10,
        "model.elbo_samples": 4,
        "train.batch_size": 64,
    },
    "latent-diffusion": {
        "model.vae.net": "tiny",
        "model.diffusion.unet.preset": "tiny",
        "model.diffusion.T": 100,
        "model.diffusion.encode_steps": 10,
        "model.diffusion.elbo_samples": 4,
        "train.batch_size": 64,
    },
}


CONFIG = CompareConfig(
    budget=4.0,
    evaluation=EvalConfig(n_eval=64, iwae_n=32, n_samples=32, speed_n=8, nfe=(2, 5), quality_steps=5, replicates=20),
    beta_sweep=(0.25, 4.0),
    sweep_budget_fraction=0.25,
    objective_budget_fraction=0.25,
    steps=(1, 2),
    steps_replicates=20,
    interpolation_pairs=4,
    timing_repeats=2,
    information_images=200,
    information_draws=32,
    overrides=TINY,
    budget_points=(0.5,),
    jobs=1,  # in this process, so that the counting feature net sees every call (the pools: test_conditional_compare)
)


@pytest.fixture(scope="module")
def tiny_kind():
    """The registry with one extra model, test_design's `Tiny`, registered by its one line."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(MODEL_KINDS, "tiny", (Tiny.__module__, "TinyConfig", "Tiny"))
        yield


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_kind):
    out = tmp_path_factory.mktemp("compare")
    cfg = CONFIG
    messages = []
    counted = []

    def counting(*args, **kwargs):
        features, why_not = select_features(*args, **kwargs)
        counted.append(CountedFeatures(features))
        return counted[-1], why_not

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare, "select_features", counting)
        results, images = run_compare(cfg, out, log=messages.append, progress=False)
    paths = write_report(results, out, images, reference_images("digits", None))
    return out, results, paths, messages, counted[0].seen


def test_compare_trains_and_measures_every_model(compared):
    out, results, _paths, _, _ = compared
    assert set(results.models) == {p.point.name for p in results.design.placed} >= set(MODEL_KINDS)
    for kind, run in results.models.items():
        r = run.measurement
        b = r.bound.bpd
        assert math.isfinite(b.total) and b.total > 0 and b.ci95 > 0, kind
        assert run.train_steps > 0 and (out / "runs" / kind / "model.safetensors").is_file()
        assert r.samples.n == 32 and math.isfinite(r.samples.fd.value) and len(r.samples.fd.replicates) == 20
        assert r.samples.laplacian_ratio.value > 0 and r.interpolation.frames == 9
        assert all(row.images_per_second > 0 for row in r.speed)
    assert results.models["vae"].measurement.information.latent.latent_dims == 16
    info = results.models["diffusion"].measurement.information.chain
    assert info.curve[0].distortion_rmse == 0.0 and info.curve[-1].rate_bpd < info.curve[0].rate_bpd
    assert abs(info.mc_minus_exact_nats) <= 4 * info.mc_minus_exact_se_nats


def test_every_contrast_has_a_rule_and_a_verdict(compared):
    _, results, _, _, _ = compared
    titles = [c.title for c in results.contrasts]
    assert len(titles) == CONTRASTS and len(set(titles)) == CONTRASTS
    for c in results.contrasts:
        assert c.verdict in ("supported", "not supported", "inconclusive")
        assert c.claim and c.measured and c.rule
        # every verdict rests on a measured effect with its interval and the test that produced it
        e = c.effect
        assert e is not None and e.test in c.rule and c.verdict == combine(c.effects, c.combine)
        assert math.isfinite(e.value) and c.figure


def test_each_seed_keeps_its_evidence(compared):
    _, results, _, _, _ = compared
    (seed,) = results.seeds
    assert seed.floors.real.fd.value < seed.floors.blurred.fd.value
    assert seed.floors.blurred.laplacian_ratio.value < 1
    forward, code = seed.information
    assert forward.nats[0] == pytest.approx(forward.max_nats, rel=0.01) and forward.nats[-1] < 0.1 * forward.max_nats
    assert 0 <= code.nats[0] <= code.max_nats + 4 * code.stderr_nats[0]
    assert {(p.model, p.sampler, p.steps) for p in seed.steps} >= {
        ("diffusion", "ancestral", 1),
        ("diffusion", "ddim", 2),
        ("vae", "decoder", 1),
    }
    encoding = {k for k, r in results.models.items() if r.measurement.interpolation}
    assert set(seed.paths) == encoding >= set(MODEL_KINDS)
    assert set(seed.timings) == {"encoder", "decoder", "latent"}
    assert set(seed.objective) == {"simple", "elbo-weighted"}
    # every model measured once, alike: the objective pair's bounds on the models' 64 test images
    pair = [seed.objective[k].measurement.bound for k in ("simple", "elbo-weighted")]
    assert [b.n for b in pair] == [64, 64] and len(pair[0].per_example_bpd) == 64
    assert [p.beta for p in results.beta_sweep] == [0.25, 1.0, 4.0]
    assert all(p.reconstruction_figures.fd and p.sample_figures.fd for p in results.beta_sweep)
    # what the records hold is not measured again: the paths judged are the measurements' own, the VAE's point of
    # the steps sweep and of the β-sweep its quality samples
    vae = results.models["vae"].measurement
    assert all(seed.paths[k] == results.models[k].measurement.interpolation for k in encoding)
    assert seed.steps[-1].figures == vae.samples and seed.steps[-1].model == "vae"
    # the fixed end's quality samples are its point at the sampler and NFE compare uses, reused, not drawn again
    diffusion = results.models["diffusion"].measurement
    used = [p for p in seed.steps if p.model == "diffusion" and p.sampler == diffusion.quality_samples.sampler]
    assert [(p.steps, p.figures) for p in used] == [(diffusion.quality_samples.steps, diffusion.samples)]
    assert next(p for p in results.beta_sweep if p.beta == 1.0).sample_figures == vae.samples
    bound = results.models["vae"].measurement.bound
    assert len(bound.per_example_bpd) == 64 and sum(bound.per_example_bpd) / 64 == pytest.approx(bound.bpd.total)


def test_each_image_set_is_featurised_once_per_seed(compared):
    *_, seen = compared
    # at most: each model's samples and interpolation frames (the β-sweep and objective pair among them), the
    # reference, the two floors, the fixed end's four steps-sweep points, each β-sweep point's reconstructions;
    # fewer where two are the same images (one-step ancestral and DDIM samples are x̂_0 of one x_T; a barely trained
    # model's samples can round to the same levels); and each judged model's samples at each budget point. Before:
    # 57 calls.
    _, results, _, _, _ = compared
    n, sweep = len(results.models), len(results.beta_sweep)
    along = len(judged_points(results.design)) * len(CONFIG.budget_points)
    assert len(seen) == len(set(seen))
    assert n + 1 + 2 <= len(seen) <= 2 * n + 1 + 2 + 4 + sweep + along


def test_every_judged_pair_is_judged_again_at_the_budget_point_from_its_snapshots(compared):
    out, results, _, _, _ = compared
    staged = {"latent-diffusion"}  # trained in two stages: no snapshots (train.stages.stage_budget)
    for name in judged_points(results.design):
        assert snapshot_path(out / "runs" / name, 0.5).is_file() == (name not in staged), name
    tracked = 0
    for r in results.attribution.rows:
        for c in r.cells:
            if c.outcome not in ALONG_OUTCOMES:
                assert c.along == () and c.stability == ("not tracked" if c.verdict else None)
                continue
            assert [b.fraction for b in c.along] == [0.5]
            point = c.along[0]
            if staged & set(r.pairing.pair):
                assert point.effect is None and c.stability == ("not tracked" if c.verdict else None)
            else:
                tracked += 1
                assert point.effect is not None and math.isfinite(point.effect.value)
                if c.verdict:
                    assert c.stability == ("stable" if point.verdict == c.verdict else "changes with budget")
    assert tracked > 0


def test_saved_results_read_back_and_render_the_same_page_without_any_weights(compared, run_cli, tmp_path):
    out, _, paths, _, _ = compared
    saved = json.loads(paths["json"].read_text())
    assert CompareResults.from_json(saved).to_json() == saved
    copy = tmp_path / "saved"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("*.safetensors", "checkpoint*"))
    assert not list(copy.rglob("*.safetensors"))
    code, stdout, err = run_cli("report", copy, "--out", tmp_path / "again")
    assert code == 0, err
    assert (tmp_path / "again" / "report.html").read_bytes() == paths["html"].read_bytes()
    assert sum(line.split()[0] in ("supported", "not", "inconclusive") for line in stdout.splitlines()) == CONTRASTS


def test_report_files_are_written_and_consistent(compared):
    out, results, paths, _, _ = compared
    saved = json.loads(paths["json"].read_text())
    assert saved["models"]["vae"]["measurement"]["bound"]["bpd"]["total"] == pytest.approx(
        results.models["vae"].measurement.bound.bpd.total
    )
    md = paths["markdown"].read_text()
    assert "## The contrasts, measured" in md and md.count("**Verdict:") == CONTRASTS
    for name in (
        "bound_terms.png",
        "per_step.png",
        "rate_distortion.png",
        "information.png",
        "frontier_quality.png",
        "frontier_speed.png",
        "samples_vae.png",
        "samples_diffusion.png",
        "interpolation_vae.png",
        "information_curves.png",
        "steps_sharpness.png",
        "beta_sweep.png",
    ):
        assert (out / name).is_file(), name
        assert f"]({name})" in md
    page = paths["html"].read_text()
    assert page.count('<img src="data:image/png;base64,') >= 8 and '.png"' not in page


def test_the_real_report_in_a_browser(compared, browser, tmp_path):
    from pagecheck import artefacts, assert_sound, inspect

    _out, results, paths, _, _ = compared
    for width in (1280, 390):
        found = inspect(browser, paths["html"], width, artefacts(tmp_path), "compare")
        assert_sound(found, results.contrasts)
        assert all(s["figure"] for s in found["sections"])  # every contrast of a real compare has its figure


def test_the_design_places_the_extra_model_and_attributes_every_factor(compared):
    out, results, paths, _, _ = compared
    design, table = results.design, results.attribution
    tiny = design.point("tiny")
    assert tiny.point.changes == {} and (out / "runs" / "tiny" / "model.safetensors").is_file()
    assert results.models["tiny"].measurement.bound.n == 64
    # the tiny model (fixed encoder, one step, a latent of x's size, its ELBO) and the continuous chain trained on
    # its ELBO differ in their steps alone
    steps = [r for r in table.rows if r.pairing.contrast == "steps" and r.pairing.judged]
    row = next(r for r in steps if r.pairing.pair == ("tiny", "diffusion"))
    cells = {c.outcome: c for c in row.cells}
    assert cells["bound"].effect is not None and math.isfinite(cells["bound"].effect.value)
    assert cells["time"].effect is not None and cells["time"].verdict in ("supported", "not supported", "inconclusive")
    assert {r.pairing.contrast for r in table.rows} == {w.name for w in WANTED if w.design == "core"}
    assert {r.pairing.factor for r in table.rows} >= set(FACTORS)
    for r in table.rows:
        assert r.pairing.judged or r.pairing.why_not.startswith("not judged: no registered pair")
    page = paths["html"].read_text()
    assert page.index('id="attribution-h"') < page.index('id="verdicts-h"')
    assert '<tr data-point="tiny">' in page and page.count("<tr data-factor=") == len(table.rows)


def test_a_second_compare_reuses_finished_runs(compared, tmp_path):
    out, _, _, _, _ = compared
    from elbolab.experiments.compare import train_models, with_preset

    messages = []
    cfg = with_preset(CONFIG, 8)  # as run_compare fills it in
    train_models(cfg, out, messages.append, progress=False)
    assert messages and all("reusing" in m for m in messages)


def test_report_command_on_existing_runs(compared, run_cli, tmp_path):
    out, _, _, _, _ = compared
    code, stdout, err = run_cli(
        "report", out / "runs" / "vae", out / "runs" / "diffusion", "--out", tmp_path / "r", "--n-samples", "16"
    )
    assert code == 0, err
    assert (tmp_path / "r" / "report.md").is_file() and "supported" in stdout
    page = (tmp_path / "r" / "report.html").read_text()
    assert 'class="board"' in page and page.count('<img src="data:image/png;base64,') >= 5 and '.png"' not in page
    code, _, err = run_cli("report", out / "runs" / "vae", out / "runs" / "vae", "--out", tmp_path / "r2")
    assert code == 1 and err.startswith("error:")


def test_compare_refuses_runs_trained_with_other_settings(compared):
    from elbolab.errors import ElbolabError
    from elbolab.experiments.compare import train_models

    out, _, _, _, _ = compared
    with pytest.raises(ElbolabError, match="other settings"):
        train_models(CompareConfig(budget=9.0, overrides=TINY), out, lambda _: None, progress=False)


# `compare` end to end through the command line (report, every contrast in results.json, one verdict line each) is
# tests/test_docs.py's getting-started test, which runs the page's own compare command: one run serves both


@pytest.mark.parametrize("budget", ["12parsecs", "0steps", "2.5steps"])
def test_compare_budget_must_be_steps_flops_or_seconds(run_cli, tmp_path, budget):
    code, _, err = run_cli("compare", "--out", tmp_path / "c", "--budget", budget, "--quick", "--quiet")
    assert code == 1 and err.startswith("error:") and "budget" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()  # refused before anything ran
