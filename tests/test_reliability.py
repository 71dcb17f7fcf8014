"""Run folders under real processes: SIGTERM and SIGHUP stop training with a checkpoint and a resume is bit-identical;
one process writes a run at a time (an flock, named by PID); readers of a live run say which step they read; a run
folder is marked, and a checkpoint of another run is never used."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from elbolab.train.checkpoint import load_tensors
from elbolab.train.run import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    LOCK_FILE,
    LOG_FILE,
    MARKER_FILE,
    WEIGHTS_FILE,
    lock_holder,
    read_marker,
)

STEPS = 30
ARGS = [
    "--quiet",
    "--set",
    "model.net=tiny",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.eval_n=32",
    "--set",
    "train.threads=1",
    "--seed",
    "5",
]


def _logged(run: Path) -> int:
    path = run / LOG_FILE
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _start(run: Path, steps: int, *extra: str) -> subprocess.Popen:
    """`elbolab train vae --out run` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "elbolab.cli", "train", "vae", "--out", str(run), "--steps", str(steps), *ARGS, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, ready, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()[-500:]}")
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(0.005)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_checkpoints_the_current_step_and_resumes_bit_identical(tmp_path, run_cli, signum):
    rare = ("--set", "train.checkpoint_every=100")
    code, _, err = run_cli("train", "vae", "--out", tmp_path / "whole", "--steps", STEPS, *ARGS, *rare)
    assert code == 0, err
    reference = load_tensors(tmp_path / "whole" / WEIGHTS_FILE)[0]

    run = tmp_path / "cut"
    proc = _start(run, STEPS, *rare)
    _wait_for(proc, lambda: _logged(run) >= 7, "step 7")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: interrupted ({signal.Signals(signum).name}) at step ")
    step = int(lines[0].split(" at step ")[1].split(";")[0])
    assert 7 <= step < STEPS  # no checkpoint was due before step 100: this one is the signal's
    assert json.loads((run / CHECKPOINT_FILE).read_text())["step"] == step
    assert (run / CHECKPOINT_DIR / f"step-{step:06d}.safetensors").is_file()

    code, _, err = run_cli("train", "vae", "--out", run, "--steps", STEPS, *ARGS, *rare, "--resume")
    assert code == 0, err
    weights = load_tensors(run / WEIGHTS_FILE)[0]
    assert all(weights[k].equal(reference[k]) for k in reference), "the resumed run's weights differ"
    steps = [json.loads(ln)["step"] for ln in (run / LOG_FILE).read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))


def test_a_second_writer_is_refused_naming_the_pid_and_a_reader_names_the_step(tmp_path, run_cli):
    run = tmp_path / "live"
    proc = _start(run, 100_000, "--set", "train.checkpoint_every=5")
    try:
        _wait_for(proc, lambda: (run / CHECKPOINT_DIR / "step-000005.safetensors").is_file(), "the step-5 checkpoint")
        assert lock_holder(run) == proc.pid
        for extra in ((), ("--resume",)):
            second = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "elbolab.cli",
                    "train",
                    "vae",
                    "--out",
                    str(run),
                    "--steps",
                    "10",
                    *ARGS,
                    *extra,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert second.returncode == 1, second.stderr
            assert second.stderr.strip() == (
                f"error: {run}: another process (PID {proc.pid}) is training this run; wait for it or stop it"
            )
        assert proc.poll() is None, "the first writer was disturbed"

        code, out, err = run_cli("eval", run, "--json", "--only-bound", "--n", "4")
        assert code == 0, err
        notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
        assert len(notes) == 1 and f"is still training (PID {proc.pid}); reading its checkpoint at step" in notes[0]
        assert json.loads(out)["bpd"]["total"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert lock_holder(run) is None  # released with the process


def test_the_lock_dies_with_its_process(tmp_path, run_cli):
    """SIGKILL: no handler runs, yet the kernel drops the flock, and the run resumes."""
    run = tmp_path / "killed"
    proc = _start(run, 100_000, "--set", "train.checkpoint_every=5")
    _wait_for(proc, lambda: (run / CHECKPOINT_DIR / "step-000005.safetensors").is_file(), "the step-5 checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert (run / LOCK_FILE).is_file() and lock_holder(run) is None
    code, _, err = run_cli("train", "vae", "--out", run, "--steps", "12", *ARGS, "--resume")
    assert code == 0, err


def test_a_checkpoint_of_another_run_is_never_used(tmp_path, run_cli):
    for name in ("a", "b"):
        code, _, err = run_cli("train", "vae", "--out", tmp_path / name, "--steps", "4", *ARGS)
        assert code == 0, err
    a, b = tmp_path / "a", tmp_path / "b"
    assert read_marker(a)["run_id"] != read_marker(b)["run_id"]
    # b's newer checkpoint dropped into a: discovery sees it first, and passes over it
    shutil.copy(b / CHECKPOINT_DIR / "step-000004.safetensors", a / CHECKPOINT_DIR / "step-000009.safetensors")
    code, _, err = run_cli("train", "vae", "--out", a, "--steps", "6", *ARGS, "--resume")
    assert code == 0, err
    assert "step-000009.safetensors: a checkpoint of another run" in err
    assert "falling back to the older checkpoint" in err


def test_a_run_from_before_markers_resumes_and_is_marked(tmp_path, run_cli):
    run = tmp_path / "old"
    code, _, err = run_cli("train", "vae", "--out", run, "--steps", "4", *ARGS)
    assert code == 0, err
    (run / MARKER_FILE).unlink()  # as a run written before markers: id-less checkpoints, no marker
    for path in (run / CHECKPOINT_DIR).glob("*.safetensors"):
        tensors, state = load_tensors(path)
        del state["run_id"], state["sha256"]
        from elbolab.train.checkpoint import save_tensors

        save_tensors(path, tensors, state)
    code, _, err = run_cli("train", "vae", "--out", run, "--steps", "6", *ARGS, "--resume")
    assert code == 0, err
    assert "a run from before run markers; marked as one" in err
    assert read_marker(run)["legacy"] is True
    assert json.loads((run / CHECKPOINT_FILE).read_text())["step"] == 6


def test_stale_checkpoints_without_an_index_block_a_fresh_run(tmp_path, run_cli):
    """A folder whose checkpoint.json is gone but whose old checkpoints remain: a fresh `train` would prune its own
    newer-looking files against them; it is refused instead, and nothing is written."""
    run = tmp_path / "r"
    code, _, err = run_cli("train", "vae", "--out", run, "--steps", "4", *ARGS)
    assert code == 0, err
    (run / CHECKPOINT_FILE).unlink()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = run_cli("train", "vae", "--out", run, "--steps", "2", *ARGS)
    assert code == 1 and "already holds a run; pass --resume" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_sigterm_outside_training_removes_the_temporary_file(tmp_path, runs_for_sampling):
    """`sample` stopped by SIGTERM while it writes: rc 143 and no hidden temporary file left."""
    out = tmp_path / "s.npz"
    env = {**os.environ, "ELBOLAB_TEST_SLOW_WRITE": "30:s.npz"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "elbolab.cli", "sample", str(runs_for_sampling), "--n", "8", "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(proc, lambda: any(p.name.startswith(".s.npz.") for p in tmp_path.iterdir()), "the temporary file")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def runs_for_sampling(tmp_path_factory, run_cli):
    run = tmp_path_factory.mktemp("sampling") / "vae"
    code, _, err = run_cli("train", "vae", "--out", run, "--steps", "2", *ARGS)
    assert code == 0, err
    return run


def test_report_md_escapes_html_from_a_data_path_and_writes_every_file_whole(tmp_path):
    from dataclasses import replace

    from synthetic import synthetic_results

    from elbolab.report.render import write_report

    results, images, reference = synthetic_results()
    hostile = "/data/<img src=x onerror=alert(1)>|cats"
    results = replace(results, data=replace(results.data, name=hostile))
    paths = write_report(results, tmp_path, images, reference)
    md = paths["markdown"].read_text()
    assert "<img src=x" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "<img src=x" not in paths["html"].read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"
    assert json.loads(paths["json"].read_text())["data"]["name"] == hostile


def test_a_downloaded_file_damaged_since_is_refused_and_a_users_own_only_warned(tmp_path, monkeypatch):
    import hashlib
    import warnings

    from elbolab.data import download
    from elbolab.errors import DataError

    name = "t10k-labels-idx1-ubyte.gz"
    good = b"\x00\x00\x08\x01official labels"
    monkeypatch.setitem(download.SOURCES["mnist"].md5, name, hashlib.md5(good).hexdigest())
    ours, mine = tmp_path / "ours", tmp_path / "mine"
    for folder in (ours, mine):
        folder.mkdir()
        (folder / name).write_bytes(good)
    download.remember_md5(ours, name, hashlib.md5(good).hexdigest(), create=True)  # as `download_file` leaves it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        download.check_present(ours, name, download.SOURCES["mnist"].md5[name])  # official: silent

    for folder in (ours, mine):
        (folder / name).write_bytes(good[:-1] + b"X")
    with pytest.raises(DataError, match=rf"damaged since it was downloaded .* remove it \(rm '{ours / name}'\)"):
        download.check_present(ours, name, download.SOURCES["mnist"].md5[name])
    with pytest.raises(DataError):  # the damaged hash was not remembered as good: refused again
        download.check_present(ours, name, download.SOURCES["mnist"].md5[name])
    with pytest.warns(download.DataWarning, match="differs from the official file"):
        download.check_present(mine, name, download.SOURCES["mnist"].md5[name])


def test_an_untrained_model_asking_for_too_many_draws_is_capped_and_says_so():
    """An untrained diffusion model's per-draw variance is large: a standard error of 1e-4 bits/dim would need
    far more draws than the cap; the estimate stops at the cap and warns that the precision was not reached."""
    import warnings

    import torch

    from elbolab.data import load_data
    from elbolab.evaluate.precision import MAX_PRECISION_DRAWS, PrecisionWarning
    from elbolab.evaluate.run import EvalConfig, draws_for_precision, summarize
    from elbolab.nets.unet import UNetConfig
    from elbolab.registry import model_classes
    from elbolab.train.run import RunConfig, build_model

    torch.manual_seed(0)
    test = load_data("digits", "test")
    cfg_cls, _ = model_classes("diffusion")
    model = build_model(
        RunConfig("diffusion", "digits", None, test.shape, test.levels, cfg_cls(unet=UNetConfig(preset="tiny")))
    ).eval()
    estimator = model.check_estimator(None)
    assert draws_for_precision(model, test, 8, estimator, 1e-4).samples == MAX_PRECISION_DRAWS
    with pytest.warns(PrecisionWarning, match=rf"above the 0.0001 asked for.*cap of {MAX_PRECISION_DRAWS} draws"):
        summary = summarize(model, test, 8, None, seed=0, cfg=EvalConfig(bpd_se=1e-4, proposal="uniform"))
    assert f"{MAX_PRECISION_DRAWS}" in summary.estimator and summary.mean_stderr_bpd > 1e-4
    # a precision the cap does reach: no warning, and the standard error reached is within it
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        loose = summarize(model, test, 8, None, seed=0, cfg=EvalConfig(bpd_se=0.5, proposal="uniform"))
    assert loose.mean_stderr_bpd <= 0.5


def test_a_pilot_fit_full_of_nan_is_refitted_saying_so_and_a_garbage_cache_is_one_line(tmp_path):
    from dataclasses import replace

    import torch

    from elbolab.data import load_data
    from elbolab.evaluate.pilot_cache import PilotCacheError
    from elbolab.evaluate.run import Pilot, prepare_estimator
    from elbolab.nets.unet import UNetConfig
    from elbolab.registry import model_classes
    from elbolab.train.run import RunConfig, build_model

    torch.manual_seed(0)
    data = load_data("digits", "train")
    cfg_cls, _ = model_classes("diffusion")
    model = build_model(
        RunConfig("diffusion", "digits", None, data.shape, data.levels, cfg_cls(unet=UNetConfig(preset="tiny")))
    )
    estimator = replace(model.check_estimator(None), proposal="importance")
    pilot = Pilot(data, tmp_path / "pilot-fits.json", {"weights": "w"})
    assert prepare_estimator(model, estimator, pilot, 16, 0) is False  # fitted
    assert prepare_estimator(model, estimator, pilot, 16, 0) is True  # from the cache
    cache = json.loads(pilot.cache.read_text())
    name = next(iter(cache["fits"][0]["state"]))
    cache["fits"][0]["state"][name] = [float("nan")] * len(cache["fits"][0]["state"][name])
    pilot.cache.write_text(json.dumps(cache))
    with pytest.warns(UserWarning, match=f"cached pilot fit's {name} is not all finite numbers; fitting it again"):
        assert prepare_estimator(model, estimator, pilot, 16, 0) is False
    fits = json.loads(pilot.cache.read_text(), parse_constant=lambda c: pytest.fail(f"{c} kept in the cache"))["fits"]
    assert len(fits) == 1
    pilot.cache.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(PilotCacheError, match="pilot-fits.json: corrupt pilot cache"):
        prepare_estimator(model, estimator, pilot, 16, 0)


def test_a_stop_signal_to_compare_stops_its_training_processes_with_checkpoints(tmp_path):
    """SIGTERM to `compare` while its runs train in worker processes: the queued runs are dropped, the running
    ones checkpoint and stop, and the job exits 143 at once, rather than after training every queued run."""
    out = tmp_path / "cmp"
    args = ["compare", "--quick", "--out", str(out), "--budget", "1000000steps", "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "elbolab.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so that a failure here kills its workers too
    )
    try:
        _wait_for(proc, lambda: len(list(out.rglob(LOG_FILE))) >= 2, "two runs training")
        _wait_for(proc, lambda: all(_logged(p.parent) >= 3 for p in out.rglob(LOG_FILE)), "three steps of each")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 143, err[-800:]
    started = [p.parent for p in out.rglob(LOG_FILE)]
    assert len(started) == 2, "a queued run started after the stop"
    for run in started:
        assert lock_holder(run) is None  # its worker has exited
        assert (run / CHECKPOINT_FILE).is_file(), f"{run.name} stopped without a checkpoint"
