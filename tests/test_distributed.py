"""Many processes, one run: DDP under torchrun reproduces the one-process loss curve at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import elbolab
from elbolab.errors import ConfigError
from elbolab.train import distributed
from elbolab.train.api import train_run
from elbolab.train.checkpoint import load_tensors

SETTINGS = {
    "model.unet.preset": "tiny",
    "model.T": "50",
    "train.batch_size": "8",
    "train.eval_every": "0",
    "train.eval_n": "8",
    "train.warmup_steps": "1",
    "train.checkpoint_every": "2",
}


def _losses(run: Path) -> list[float]:
    """Each logged step's loss and gradient norm, in order (event lines, e.g. a config change, left out)."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [value for r in records if "loss" in r for value in (r["loss"], r["grad_norm"])]


def test_two_gloo_processes_reproduce_the_one_process_loss_curve_and_resume_on_one(tmp_path):
    """Steps 1-2 on two gloo processes, steps 3-4 resumed on one process (grad_accum 2: the same global batch
    in the same two micro-batches) = four steps on one process: the same losses, gradient norms and weights."""
    src = str(Path(elbolab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    sets = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "elbolab",
        "train",
        "diffusion",
        "--data",
        "digits",
        "--out",
        str(tmp_path / "two"),
        "--steps",
        "2",
        "--quiet",
        *sets,
    ]
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(_losses(tmp_path / "two")) == 4
    torch.set_num_threads(1)
    train_run(
        "diffusion",
        None,
        tmp_path / "two",
        overrides={"train.grad_accum": "2"},
        steps=4,
        resume=True,
        progress=False,
        say=lambda _: None,
    )
    train_run(
        "diffusion",
        "digits",
        tmp_path / "one",
        overrides={**SETTINGS, "train.grad_accum": "2"},
        steps=4,
        progress=False,
    )
    two, one = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert len(two) == len(one) == 8
    assert two == pytest.approx(one, rel=1e-4)
    assert len(set(one[::2])) == 4  # the steps differ: a real curve, not one number repeated
    w_two, _ = load_tensors(tmp_path / "two" / "model.safetensors")
    w_one, _ = load_tensors(tmp_path / "one" / "model.safetensors")
    assert all(torch.allclose(w_two[k], w_one[k], atol=1e-5) for k in w_one)


def test_gradient_accumulation_splits_the_batch_into_the_same_draws(tmp_path):
    """grad_accum 2 and one process = the 8-image batch in two seeded halves; grad_accum 1 = one different draw."""
    base = {**SETTINGS, "train.checkpoint_every": "10"}
    for name, accum in (("a1", "1"), ("a2", "2"), ("a2b", "2")):
        train_run(
            "diffusion",
            "digits",
            tmp_path / name,
            overrides={**base, "train.grad_accum": accum},
            steps=2,
            progress=False,
        )
    assert _losses(tmp_path / "a2") == _losses(tmp_path / "a2b")
    assert _losses(tmp_path / "a1") != pytest.approx(_losses(tmp_path / "a2"), rel=1e-6)


def test_the_global_batch_must_split_evenly():
    world = distributed.World(rank=1, size=3)
    assert distributed.micro_batch(12, 2, world) == 2
    with pytest.raises(ConfigError, match="does not split"):
        distributed.micro_batch(8, 1, world)


def test_slot_seeds_depend_on_seed_step_and_slot_only():
    seeds = {distributed.slot_seed(s, n, k) for s in range(2) for n in range(3) for k in range(4)}
    assert len(seeds) == 24 and all(0 <= v < 2**63 for v in seeds)
    assert distributed.slot_seed(0, 5, 1) == distributed.slot_seed(0, 5, 1)
