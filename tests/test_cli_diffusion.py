"""The command line end to end for diffusion on real digits: train, eval, sample, interpolate, bad input,
and a VAE and a diffusion model trained for the same wall-clock budget."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import eval_json
from PIL import Image

# a T = 100 chain around the tiny UNet, 25-step DDIM inversion: a few seconds of training on a CPU
TINY = [
    "--set",
    "model.unet.preset=tiny",
    "--set",
    "model.T=100",
    "--set",
    "model.encode_steps=25",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.eval_n=64",
    "--set",
    "train.warmup_steps=10",
]
UNIFORM_BPD = math.log2(17)  # every one of the 17 levels equally likely
DIMS = 64  # 8×8 digits


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: networks this small gain nothing from a second, and on a busy machine lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    """A diffusion model trained on digits for 100 CPU steps, through the command line."""
    from elbolab.cli import main

    run = tmp_path_factory.mktemp("runs") / "diffusion"
    with pytest.raises(SystemExit) as exc:
        main(["train", "diffusion", "--data", "digits", "--out", str(run), "--steps", "100", "--quiet", *TINY])
    assert exc.value.code == 0
    return run


def _eval(run_cli, run, *extra):
    """`eval --json --only-bound` on the first 120 test images."""
    return eval_json(run_cli, run, 120, *extra)


def test_eval_json_reports_the_three_terms_with_intervals(diffusion_run, run_cli):
    result = _eval(run_cli, diffusion_run)
    assert result["model"] == "diffusion" and result["data"] == "digits" and result["split"] == "test"
    assert result["n"] == 120 and result["dims"] == DIMS and result["levels"] == 17
    assert set(result["bpd"]["terms"]) == {"prior", "diffusion", "reconstruction"}
    assert set(result["nats"]["terms"]) == {"prior", "diffusion", "reconstruction"}
    bpd = result["bpd"]
    assert math.isfinite(bpd["total"]) and bpd["total"] < UNIFORM_BPD, bpd
    assert bpd["ci95"] > 0
    assert bpd["total"] == pytest.approx(sum(bpd["terms"].values()))
    assert result["nats"]["total"] == pytest.approx(bpd["total"] * DIMS * math.log(2))
    # L_T of a T = 100 cosine chain is tiny but never negative
    assert 0 <= bpd["terms"]["prior"] < 1e-3
    assert result["mc_stderr_nats"] > 0
    assert result["objective"].startswith("L_simple")
    for name in ("config.json", "model.safetensors", "checkpoint.json", "metrics.json", "log.jsonl"):
        assert (diffusion_run / name).is_file(), name


def test_exact_bound_agrees_with_the_monte_carlo_estimate(diffusion_run, run_cli):
    mc = _eval(run_cli, diffusion_run)
    exact = _eval(run_cli, diffusion_run, "--exact")
    assert exact["mc_stderr_nats"] is None and exact["estimator"] == "exact"  # all T terms: no Monte-Carlo error
    # the same images, so only the estimate's noise parts them: the combined standard error of the two
    # means (their ci95s / 1.96; the MC one carries the estimate's noise) is a conservative scale
    diff = abs(mc["nats"]["total"] - exact["nats"]["total"])
    combined = math.hypot(mc["nats"]["ci95"], exact["nats"]["ci95"]) / 1.96
    assert diff < 3 * combined, (mc["nats"], exact["nats"])
    # L_T is exact in both; L_0, one draw of x_1 per term, agrees closely
    assert mc["nats"]["terms"]["prior"] == pytest.approx(exact["nats"]["terms"]["prior"])
    assert mc["nats"]["terms"]["reconstruction"] == pytest.approx(exact["nats"]["terms"]["reconstruction"], rel=0.1)


def test_eval_keeps_the_pilot_fit_in_the_run_and_a_second_eval_reuses_it(diffusion_run, run_cli, monkeypatch):
    """The default estimator of the discrete chain fits its importance proposal on a pilot pass over training
    images; the fit is kept in the run folder (keyed by the weights), and a second eval takes it from there
    (no pilot pass: fitting would fail) and gives the identical bound."""
    from elbolab.diffusion import DiffusionModel

    cache = diffusion_run / "pilot-fits.json"
    cache.unlink(missing_ok=True)
    first = _eval(run_cli, diffusion_run)
    assert "importance" in first["estimator"] and first["passes_per_image"] == 20  # K = 16, L_0 in 4 replicates
    fits = json.loads(cache.read_text())["fits"]
    assert len(fits) == 1 and fits[0]["key"]["weights"]["step"] == 100 and fits[0]["key"]["proposal"] == "importance"
    assert len(fits[0]["state"]["time_proposal"]) == 64 and min(fits[0]["state"]["time_proposal"]) > 0

    def no_pilot_pass(*args, **kwargs):
        raise AssertionError("the pilot pass ran again")

    monkeypatch.setattr(DiffusionModel, "prepare_estimator", no_pilot_pass)
    second = _eval(run_cli, diffusion_run)
    assert second["nats"] == first["nats"] and second["mc_stderr_nats"] == first["mc_stderr_nats"]
    assert json.loads(cache.read_text())["fits"] == fits
    # another T-step form or another pilot is another key: fitted afresh, kept beside
    monkeypatch.undo()
    _eval(run_cli, diffusion_run, "--seed", "3")
    assert len(json.loads(cache.read_text())["fits"]) == 2
    assert len(fits[0]["state"]["control_slopes"]) == 64 * 9  # the control variate's slopes, 9 per bin


def test_a_pilot_fit_kept_by_an_older_version_is_refitted_not_reused(diffusion_run, run_cli):
    """A fit kept before the control variate existed (its key without this version's fit_version, its state
    without slopes) would give a weaker estimator: eval fits afresh and keeps the new fit beside it."""
    cache = diffusion_run / "pilot-fits.json"
    cache.unlink(missing_ok=True)
    _eval(run_cli, diffusion_run)
    fit = json.loads(cache.read_text())["fits"][0]
    old = {
        "key": {k: v for k, v in fit["key"].items() if k != "fit_version"},
        "state": {"time_proposal": fit["state"]["time_proposal"]},
    }
    cache.write_text(json.dumps({"fits": [old]}))
    _eval(run_cli, diffusion_run)
    fits = json.loads(cache.read_text())["fits"]
    assert len(fits) == 2 and fits[1]["key"] == fit["key"] and "control_slopes" in fits[1]["state"]


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpm-solver++"])
def test_sample_with_each_sampler_writes_png_and_npz(diffusion_run, run_cli, tmp_path, sampler):
    code, out, err = run_cli(
        "sample", diffusion_run, "--n", "9", "--sampler", sampler, "--steps", "8", "--out", tmp_path / "x.png"
    )
    assert code == 0, err
    assert "9 samples" in out
    assert Image.open(tmp_path / "x.png").size[0] > 3 * 8
    code, _, err = run_cli(
        "sample",
        diffusion_run,
        "--n",
        "5",
        "--sampler",
        sampler,
        "--steps",
        "8",
        "--out",
        tmp_path / "x.npz",
        "--seed",
        "3",
    )
    assert code == 0, err
    saved = np.load(tmp_path / "x.npz")
    images = saved["images"]
    assert images.shape == (5, 1, 8, 8) and images.dtype == np.uint8
    assert images.min() >= 0 and images.max() <= 16 and int(saved["levels"]) == 17
    assert len(np.unique(images)) > 2  # not a constant or binary image


def test_sampling_is_seeded(diffusion_run, run_cli, tmp_path):
    for name in ("a", "b"):
        code, _, err = run_cli(
            "sample",
            diffusion_run,
            "--n",
            "3",
            "--sampler",
            "ancestral",
            "--steps",
            "5",
            "--seed",
            "7",
            "--out",
            tmp_path / f"{name}.npz",
        )
        assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"])


def test_interpolate_writes_a_grid(diffusion_run, run_cli, tmp_path):
    code, out, err = run_cli("interpolate", diffusion_run, "--out", tmp_path / "i.png", "--pairs", "2", "--frames", "4")
    assert code == 0, err
    assert "2 interpolations of 4 frames" in out
    width, height = Image.open(tmp_path / "i.png").size
    assert width > height > 8


@pytest.mark.parametrize(
    "args",
    [["--sampler", "nosuch"], ["--steps", "0"], ["--steps", "-3"], ["--steps", "101"]],
    ids=["unknown sampler", "zero steps", "negative steps", "more steps than T"],
)
def test_bad_sampling_input_gives_a_one_line_error(diffusion_run, run_cli, tmp_path, args):
    code, out, err = run_cli("sample", diffusion_run, "--n", "2", "--out", tmp_path / "x.png", *args)
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err + out
    assert not (tmp_path / "x.png").exists()


def test_vae_and_diffusion_under_the_same_wall_clock_budget(run_cli, tmp_path):
    seconds = 5
    budget = ["--steps", "100000", "--set", f"train.max_seconds={seconds}", "--quiet"]
    # v-prediction with a higher learning rate: the diffusion setting that learns fastest in the first steps
    fast = [*TINY, "--set", "model.parameterisation=v", "--set", "train.lr=0.005"]
    runs = {
        "vae": (["--set", "model.net=tiny", "--set", "train.eval_every=0"], ["--iwae", "0"]),
        # all T = 100 terms: a young model's Monte-Carlo estimate is heavy-tailed
        "diffusion": (fast, ["--exact"]),
    }
    results = {}
    for kind, (train_args, eval_args) in runs.items():
        code, _out, err = run_cli("train", kind, "--data", "digits", "--out", tmp_path / kind, *budget, *train_args)
        assert code == 0, err
        metrics = json.loads((tmp_path / kind / "metrics.json").read_text())
        assert seconds <= metrics["train_seconds"] < 2 * seconds and 0 < metrics["step"] < 100000
        results[kind] = (_eval(run_cli, tmp_path / kind, *eval_args)["bpd"], metrics["step"])
    for kind, (bpd, steps) in results.items():
        print(
            f"\n{kind:>9} after {seconds} s ({steps} steps): {bpd['total']:.3f} ± {bpd['ci95']:.3f} test bits/dim "
            f"(uniform: {UNIFORM_BPD:.3f})"
        )
        assert math.isfinite(bpd["total"]) and bpd["total"] < UNIFORM_BPD, (kind, bpd)
