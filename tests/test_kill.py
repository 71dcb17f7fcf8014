"""A real `elbolab train` process killed with SIGKILL at seven moments, then resumed: no run is lost and
every resumed run ends bit-identical to an uninterrupted one on the CPU.

Moments inside a file write are forced with the slow-write hook (`ELBOLAB_TEST_SLOW_WRITE=SECONDS:NAME`,
see `elbolab.atomic`), which pauses halfway through writing the named file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from elbolab.atomic import SLOW_WRITE_ENV
from elbolab.train.checkpoint import load_tensors
from elbolab.train.run import CHECKPOINT_DIR, CONFIG_FILE, LOG_FILE, METRICS_FILE, WEIGHTS_FILE

STEPS = 40
ARGS = [
    "--steps",
    str(STEPS),
    "--quiet",
    "--set",
    "model.net=tiny",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.checkpoint_every=10",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.eval_n=64",
    "--set",
    "train.threads=1",
    "--seed",
    "3",
]


def _temp_of(folder: Path, name: str) -> bool:
    return folder.is_dir() and any(p.name.startswith(f".{name}.") for p in folder.iterdir())


def _log_steps(run: Path) -> int:
    path = run / LOG_FILE
    return len(path.read_text().splitlines()) if path.is_file() else 0


# moment -> (slow-write hook, condition on the run folder that says "kill now")
MOMENTS = {
    "writing config.json": ("4:config.json", lambda r: _temp_of(r, CONFIG_FILE)),
    "writing the step-0 checkpoint": ("4:step-000000", lambda r: _temp_of(r / CHECKPOINT_DIR, "step-000000")),
    "writing the step-20 checkpoint": ("4:step-000020", lambda r: _temp_of(r / CHECKPOINT_DIR, "step-000020")),
    "writing checkpoint.json after step 30": (
        "1:checkpoint.json",
        lambda r: (r / CHECKPOINT_DIR / "step-000030.safetensors").is_file() and _temp_of(r, "checkpoint.json"),
    ),
    # (the pause in metrics.json only keeps a late kill on a loaded machine from finding the run finished)
    "training between checkpoints (≥ 25 steps logged)": ("4:metrics.json", lambda r: _log_steps(r) >= 25),
    "writing the final weights": ("4:model.safetensors", lambda r: _temp_of(r, WEIGHTS_FILE)),
    "writing metrics.json": ("4:metrics.json", lambda r: _temp_of(r, METRICS_FILE)),
}


def _kill_at(run: Path, hook: str, ready) -> dict:
    """Start training into `run`, SIGKILL it once `ready(run)` holds; what the folder held at the kill."""
    env = {**os.environ, SLOW_WRITE_ENV: hook}
    proc = subprocess.Popen(
        [sys.executable, "-m", "elbolab.cli", "train", "vae", "--out", str(run), *ARGS],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while not ready(run):
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill: {proc.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                raise AssertionError("the kill moment never came")
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return {
        "steps_logged": _log_steps(run),
        "config": (run / CONFIG_FILE).is_file(),
        "checkpoints": sorted(p.name for p in (run / CHECKPOINT_DIR).glob("step-*"))
        if (run / CHECKPOINT_DIR).is_dir()
        else [],
    }


@pytest.mark.slow
def test_sigkill_at_seven_moments_then_resume_is_bit_identical(tmp_path, run_cli):
    code, _, err = run_cli("train", "vae", "--out", tmp_path / "whole", *ARGS)
    assert code == 0, err
    reference = load_tensors(tmp_path / "whole" / WEIGHTS_FILE)[0]
    whole_metrics = json.loads((tmp_path / "whole" / METRICS_FILE).read_text())

    runs = {name: tmp_path / f"cut{i}" for i, name in enumerate(MOMENTS)}
    with ThreadPoolExecutor(2) as pool:
        killed = dict(zip(MOMENTS, pool.map(lambda n: _kill_at(runs[n], *MOMENTS[n]), MOMENTS)))

    for name, run in runs.items():
        # a run killed before its config was written is not a run yet: it is started again, as a user would
        resume = ["--resume"] if killed[name]["config"] else []
        code, _, err = run_cli("train", "vae", "--out", run, *ARGS, *resume)
        assert code == 0, f"{name}: {err}"
        weights = load_tensors(run / WEIGHTS_FILE)[0]
        assert weights.keys() == reference.keys()
        assert all(weights[k].equal(reference[k]) for k in reference), f"{name}: weights differ"
        metrics = json.loads((run / METRICS_FILE).read_text())
        assert metrics["test_bpd"] == whole_metrics["test_bpd"] and metrics["step"] == STEPS, name
        steps = [json.loads(ln)["step"] for ln in (run / LOG_FILE).read_text().splitlines()]
        assert steps == list(range(1, STEPS + 1)), f"{name}: log {steps}"
        assert not [p for p in run.rglob("*.tmp")], f"{name}: temporary files left"
        assert len(list((run / CHECKPOINT_DIR).glob("step-*"))) == 3
    print(json.dumps(killed, indent=1))  # shown with -s: the state each kill left
    # the moments really differ: what the folder held when each process died
    assert not killed["writing config.json"]["config"]
    assert killed["writing the step-0 checkpoint"]["checkpoints"] == []
    assert killed["writing the step-20 checkpoint"]["checkpoints"][-1] == "step-000010.safetensors"
    assert killed["training between checkpoints (≥ 25 steps logged)"]["steps_logged"] >= 25
    assert killed["writing metrics.json"]["steps_logged"] == STEPS
