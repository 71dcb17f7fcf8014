"""The same seed on the CPU gives bit-identical weights, checkpoints, logs, metrics, bounds and samples."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from elbolab.train.checkpoint import load_tensors
from elbolab.train.run import LOG_FILE, METRICS_FILE, WEIGHTS_FILE, list_checkpoints

ARGS = [
    "--steps",
    "6",
    "--quiet",
    "--set",
    "model.net=tiny",
    "--set",
    "train.eval_every=3",
    "--set",
    "train.eval_n=32",
    "--set",
    "train.checkpoint_every=3",
    "--set",
    "train.batch_size=16",
]
TIMING = {"train_images_per_s", "train_seconds", "images_per_s"}


def _untimed(record):
    """The record without wall-clock figures (seconds, rates), at any depth."""
    if isinstance(record, dict):
        return {
            k: _untimed(v) for k, v in record.items() if k not in TIMING and "seconds" not in k and "per_s" not in k
        }
    if isinstance(record, list):
        return [_untimed(v) for v in record]
    return record


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Runs with seeds 4, 4 and 5."""
    from elbolab.cli import main

    root = tmp_path_factory.mktemp("det")
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        with pytest.raises(SystemExit) as exc:
            main(["train", "vae", "--out", str(root / name), "--seed", str(seed), *ARGS])
        assert exc.value.code == 0
    return root


def test_the_default_thread_count_gives_the_same_weights_beside_a_busy_process(three_runs, tmp_path):
    """One compute thread (train.threads' default, on every machine): a CPU-bound process beside the run
    changes how long it takes, not one bit of what it computes."""
    import torch

    from elbolab.cli import main

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with pytest.raises(SystemExit) as exc:
            main(["train", "vae", "--out", str(tmp_path / "busy"), "--seed", "4", *ARGS])
    finally:
        busy.kill()
        busy.wait()
    assert exc.value.code == 0 and torch.get_num_threads() == 1
    assert json.loads((tmp_path / "busy" / "config.json").read_text())["train"]["threads"] == 1
    assert _same(_tensors(three_runs / "a" / WEIGHTS_FILE), _tensors(tmp_path / "busy" / WEIGHTS_FILE))


def _tensors(path):
    return load_tensors(path)[0]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_one_seed_gives_bit_identical_weights_checkpoints_log_and_metrics(three_runs):
    a, b, c = (three_runs / n for n in "abc")
    assert _same(_tensors(a / WEIGHTS_FILE), _tensors(b / WEIGHTS_FILE))
    for x, y in zip(list_checkpoints(a), list_checkpoints(b)):
        assert _same(_tensors(x), _tensors(y)), x.name
    assert _untimed(json.loads((a / METRICS_FILE).read_text())) == _untimed(json.loads((b / METRICS_FILE).read_text()))
    logs = [[_untimed(json.loads(ln)) for ln in (r / LOG_FILE).read_text().splitlines()] for r in (a, b)]
    assert logs[0] == logs[1] and any("test_bpd" in r for r in logs[0])
    # and the check can fail: another seed gives other weights
    assert not _same(_tensors(a / WEIGHTS_FILE), _tensors(c / WEIGHTS_FILE))


def test_one_seed_gives_bit_identical_samples_and_bounds(three_runs, run_cli, tmp_path):
    a, b = three_runs / "a", three_runs / "b"
    for name, run in (("a1", a), ("a2", a), ("b", b)):
        assert run_cli("sample", run, "--n", "12", "--seed", "1", "--out", tmp_path / f"{name}.npz")[0] == 0
    samples = [np.load(tmp_path / f"{n}.npz")["images"] for n in ("a1", "a2", "b")]
    assert np.array_equal(samples[0], samples[1]) and np.array_equal(samples[0], samples[2])
    bounds = [json.loads(run_cli("eval", r, "--json", "--only-bound", "--n", "40")[1]) for r in (a, a, b)]
    bounds = [_untimed(b) for b in bounds]
    assert bounds[0] == bounds[1] == bounds[2] and bounds[0]["bpd"]["total"] > 0
