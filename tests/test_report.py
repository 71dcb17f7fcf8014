"""The report without a browser: Markdown and HTML from a synthetic comparison, figures by name, colours per model."""

import io
import json
import re
from dataclasses import replace

import pytest
from PIL import Image
from synthetic import synthetic_results

from elbolab.evaluate.run import DiffusersSource, EvalResult
from elbolab.experiments.compare import CompareConfig
from elbolab.experiments.results import CompareResults
from elbolab.records import Contrast
from elbolab.report import figures
from elbolab.report.gallery import FIGURES, Material, draw, figure_name
from elbolab.report.render import effect_text, to_html, write_report


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results, images, reference = synthetic_results()
    return results, write_report(results, out, images, reference), out


def test_the_page_embeds_every_image_and_needs_nothing_else(written):
    results, paths, _ = written
    page = paths["html"].read_text()
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert '<link rel="stylesheet' not in page
    assert not re.search(r"https?://", page)
    emoji = [ch for ch in page if 0x2600 <= ord(ch) <= 0x27BF or ord(ch) >= 0x1F000]
    assert not emoji, emoji  # verdicts are CSS shapes and words
    for c in results.contrasts:
        assert (
            f'<span class="badge {c.verdict.replace(" ", "-")}"><span class="sr">verdict: </span>{c.verdict}'
            f"</span>" in page
        )


def test_markdown_has_the_same_board_sections_and_images_beside_it(written):
    results, paths, out = written
    md = paths["markdown"].read_text()
    board = md.split("## Verdicts")[1].split("## The contrasts")[0]
    assert [line.split(" | ")[0].strip("| *") for line in board.splitlines() if line.startswith("| **")] == [
        c.verdict for c in results.contrasts
    ]
    for c in results.contrasts:
        assert f"### {c.title}" in md and c.claim in md and c.rule in md
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert linked and all((out / name).is_file() for name in linked)
    html_imgs = len(re.findall(r"<img ", paths["html"].read_text()))
    assert len(linked) == html_imgs  # the same figures in both
    assert "unevenness (std/mean per path) 0.25; largest step 1.80× the mean" in md  # smoothness shown


def test_each_contrast_gets_its_named_figure_else_the_one_its_title_points_to():
    results, _, _ = synthetic_results()
    assert [figure_name(c) for c in results.contrasts] == [
        "samples",
        "rate_distortion",
        "information",
        "frontier",
        "frontier",
        "interpolation",
        "bound_terms",
        "no_such_figure",
    ]
    titles = {
        "Forward process: learned one-step encoder vs. fixed multi-step noising": "reconstructions",
        "Latent: a bottleneck vs. same-size latents with information destroyed gradually": "information",
        "Decoder speed: one pass vs. a chain of small steps": "frontier",
        "Samples: blurry vs. sharp": "samples",
        "Sample quality": "frontier",
        "Merged: latent diffusion": "bound_terms",
        "The bound in the loss: a reconstruction–KL tug-of-war vs. a sum of per-step KLs": "rate_distortion",
        "Likelihood: the same bound, on held-out data": "bound_terms",
    }
    for title, name in titles.items():
        assert figure_name(Contrast(title, "c", "m", "r", "inconclusive")) == name, title
    assert figure_name(Contrast("Something new", "c", "m", "r", "inconclusive")) is None
    assert set(dict(FIGURES)) >= {name for name in titles.values()}


def test_a_contrast_without_a_figure_says_so_and_the_rest_are_drawn_once():
    results, images, reference = synthetic_results()
    lonely = Contrast("Something new", "A claim.", "measured", "a rule", "inconclusive")
    results = replace(results, contrasts=results.contrasts + (lonely,))
    drawn = draw(Material(results, images, reference))
    page = to_html(results, drawn)
    assert "No figure belongs to this contrast." in page and "nothing to show in these results" in page
    assert page.count('data-figure="per_step"') == 1 and page.count('data-figure="reconstructions"') == 1  # "more"


def _pixels(png: bytes) -> set[tuple[int, int, int]]:
    import numpy as np

    return set(map(tuple, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).tolist()))


def test_every_model_keeps_its_colour_in_the_frontier_and_the_steps_sweep():
    results, _, _ = synthetic_results()
    models = results.measured()
    rgb = {k: tuple(int(figures.colour(k)[i : i + 2], 16) for i in (1, 3, 5)) for k in models}
    assert len(set(rgb.values())) == len(rgb)
    quality = figures.frontier_quality((), figures.quality_points(models))
    for png in (quality, figures.frontier_speed(models)):
        seen = _pixels(png)
        assert all(rgb[k] in seen for k in models)
    steps = figures.steps_curves(results.seeds[0].steps, None, lambda f: f.fd, "Fréchet distance")
    assert {rgb["diffusion"], rgb["vae"]} <= _pixels(steps)


def test_effects_read_with_their_interval_and_unknown_ends():
    results, _, _ = synthetic_results()
    e = results.contrasts[4].effect
    assert (
        effect_text(e) == "Fréchet distance, VAE − diffusion = 3.2 (95% interval 1.1 to 5.3; no effect: 0); "
        "smallest detectable 0.8"
    )
    assert "95% interval unknown to 0.3" in effect_text(results.contrasts[5].effect)
    assert effect_text(None) == "no effect size recorded"


def test_saved_results_read_back_as_the_same_records():
    results, _, _ = synthetic_results()
    again = CompareResults.from_json(json.loads(json.dumps(results.to_json())))
    assert again.to_json() == results.to_json()
    assert again.models["vae"].beta() == 1.0 and isinstance(again.config, CompareConfig)
    assert again.seeds[0].steps[-1].figures == results.models["vae"].measurement.samples
    assert again.contrasts[4].effect == results.contrasts[4].effect


def test_a_saved_result_that_does_not_fit_its_record_is_refused_naming_the_field():
    results, _, _ = synthetic_results()
    saved = results.to_json()
    saved["models"]["vae"]["measurement"]["samples"]["fd"] = "large"
    with pytest.raises(ValueError, match=r"models\.vae\.measurement\.samples\.fd"):
        CompareResults.from_json(saved)
    saved["models"]["vae"]["measurement"]["samples"] = {"fd_typo": None}
    with pytest.raises(ValueError, match="unknown fields"):
        CompareResults.from_json(saved)


def test_report_renders_a_written_report_again_from_its_files(written, run_cli, tmp_path):
    _, paths, out = written
    code, stdout, err = run_cli("report", out, "--out", tmp_path / "again")
    assert code == 0, err
    assert (tmp_path / "again" / "report.html").read_bytes() == paths["html"].read_bytes()
    assert (tmp_path / "again" / "report.md").read_text() == paths["markdown"].read_text()
    assert "supported" in stdout


def test_eval_results_read_back_from_their_flat_json():
    results, _, _ = synthetic_results()
    measurement = results.models["diffusion"].measurement
    source = DiffusersSource("folder", "DDPMScheduler", 1000, "eps", "small", True, 2000.0)
    for record in (
        EvalResult("diffusion", "digits", "test", 64, 17, measurement),
        EvalResult("diffusers", "digits", "test", 64, 17, measurement, source),
        EvalResult("vae", "digits", "test", 64, 17, replace(measurement, bound=None, kind="vae")),
    ):
        saved = json.loads(json.dumps(record.to_json()))
        assert saved["model"] == record.model and ("bpd" in saved) == (record.measurement.bound is not None)
        assert EvalResult.from_json(saved).to_json() == saved


def test_the_lede_names_the_budget_kind_the_threads_and_a_starved_run():
    results, _, _ = synthetic_results()
    from elbolab.report.render import lede
    from elbolab.train.budget import Budget

    compute = replace(
        results,
        config=replace(results.config, budget=Budget(3e12, "flop")),
        models={
            k: replace(r, train_flops=3e12, train_seconds=60.0, train_threads=1) for k, r in results.models.items()
        },
        calibration=5e10,  # 3e12 FLOPs in 60 s: 5e10 FLOP/s, at the calibration
    )
    text = lede(compute)
    assert "a training budget of 3e+12 FLOPs per model" in text
    assert "the same steps on any machine" in text and "1 thread(s) per run" in text and "Starved" not in text
    slow_vae = dict(compute.models)
    slow_vae["vae"] = replace(slow_vae["vae"], train_seconds=600.0)  # a tenth of the calibration's rate
    starved = lede(replace(compute, models=slow_vae))
    assert (
        "Starved runs" in starved
        and "VAE 5.000e+09 FLOP/s" in starved
        and "their steps, and so the answer, are unchanged" in starved
    )
    clock = lede(replace(compute, models=slow_vae, config=replace(compute.config, budget=Budget(60, "s"))))
    assert "depend on the machine" in clock and "may differ from an idle machine's" in clock
