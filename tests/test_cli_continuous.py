"""The command line end to end for continuous-time diffusion on real digits: train with model.time=continuous,
then eval reports the bound with its standard error, spread and cost, for every proposal over t and a
requested precision; the same model's T-step bound is never below its continuous one."""

import json
import math

import pytest
from conftest import eval_json

TINY = [
    "--set",
    "model.time=continuous",
    "--set",
    "model.unet.preset=tiny",
    "--set",
    "model.T=100",
    "--set",
    "model.encode_steps=10",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.eval_n=64",
    "--set",
    "train.warmup_steps=10",
]
UNIFORM_BPD = math.log2(17)
DIMS = 64


from test_cli_diffusion import _one_thread  # noqa: F401  (one torch thread, autouse)


@pytest.fixture(scope="module")
def continuous_run(tmp_path_factory):
    """A continuous-time model with learned end points, trained on the ELBO for 60 CPU steps."""
    from elbolab.cli import main

    run = tmp_path_factory.mktemp("runs") / "continuous"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "diffusion",
                "--data",
                "digits",
                "--out",
                str(run),
                "--steps",
                "60",
                "--quiet",
                *TINY,
                "--set",
                "model.loss=vlb",
            ]
        )
    assert exc.value.code == 0
    return run


def _eval(run_cli, run, *extra):
    """`eval --json --only-bound` on the first 60 test images."""
    return eval_json(run_cli, run, 60, *extra)


def test_eval_reports_bound_standard_error_spread_and_cost(continuous_run, run_cli):
    config = json.loads((continuous_run / "config.json").read_text())
    assert config["model"]["time"] == "continuous"
    results = {
        p: _eval(run_cli, continuous_run, "--estimator", f"mc:16:{p}") for p in ("uniform", "stratified", "importance")
    }
    for proposal, r in results.items():
        assert r["estimator"] == ("mc (K=16)" if proposal == "uniform" else f"mc (K=16, {proposal})")
        assert set(r["bpd"]["terms"]) == {"prior", "diffusion", "reconstruction"}
        assert 0 < r["bpd"]["total"] < UNIFORM_BPD
        assert r["passes_per_image"] == 16
        assert 0 < r["mean_stderr_bpd"] < r["per_image_sd_bpd"]
    # three unbiased estimates of the same 60 images' bound agree within their standard errors
    totals = [r["bpd"]["total"] for r in results.values()]
    se = max(r["mean_stderr_bpd"] for r in results.values())
    assert max(totals) - min(totals) < 6 * se
    assert results["importance"]["mean_stderr_bpd"] < results["uniform"]["mean_stderr_bpd"]


def test_a_requested_precision_chooses_the_draws(continuous_run, run_cli):
    r = _eval(run_cli, continuous_run, "--proposal", "importance", "--bpd-se", "0.02")
    assert r["estimator"].startswith("mc (K=") and "importance" in r["estimator"]
    assert r["mean_stderr_bpd"] < 0.03  # the rule aims at 0.02 from a 60-image probe
    assert r["passes_per_image"] % 4 == 0


def test_the_T_step_bound_of_the_same_model_is_looser(continuous_run, run_cli):
    steps = _eval(run_cli, continuous_run, "--estimator", "mc:32:importance:T=10")
    cont = _eval(run_cli, continuous_run, "--estimator", "mc:32:importance")
    assert steps["estimator"] == "mc (K=32, importance, T=10)"
    gap = steps["bpd"]["total"] - cont["bpd"]["total"]
    assert gap > -3 * math.hypot(steps["mean_stderr_bpd"], cont["mean_stderr_bpd"])


def test_samples_on_any_grid(continuous_run, run_cli, tmp_path):
    for sampler in ("ancestral", "ddim", "dpm-solver++"):
        out = tmp_path / f"{sampler}.npz"
        code, _, err = run_cli(
            "sample", continuous_run, "--n", "3", "--sampler", sampler, "--steps", "250", "--out", str(out)
        )
        assert code == 0, err
        assert out.is_file()
