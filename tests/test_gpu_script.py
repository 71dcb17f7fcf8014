"""The GPU check's CPU side: `train.log_every` (no host read in the steps between) changes no weight and rolls a
spoiled window back; benchmarks/gpu.py's cifar and compare parts run end to end on the CPU with --quick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from elbolab.train.checkpoint import nonfinite_tensors
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer
from elbolab.train.run import LOG_FILE, RunConfig, build_model
from elbolab.vae import VAEConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
CFG = TrainConfig(steps=8, batch_size=16, eval_every=0, eval_n=32, checkpoint_every=5, warmup_steps=2, seed=3)


@pytest.fixture(scope="module")
def digits():
    from elbolab.data import load_data

    return load_data("digits", "train").subset(128), load_data("digits", "test").subset(32)


def _trainer(
    run_dir: Path, digits, cfg: TrainConfig, nan_calls: set[int] = frozenset(), said: list[str] | None = None
) -> Trainer:
    """A tiny VAE on digits whose loss is NaN on the `nan_calls`-th calls; its warnings into `said`."""
    train, test = digits
    run = RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(run)
    loss, calls = model.loss, [0]

    def faulty(x, step=0, total_steps=None):
        calls[0] += 1
        out = loss(x, step, total_steps)
        return out * float("nan") if calls[0] in nan_calls else out

    model.loss = faulty
    say = (lambda _: None) if said is None else said.append
    return Trainer(model, train, test, cfg, run_dir, progress=False, say=say)


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / LOG_FILE).read_text().splitlines()]


def test_log_every_changes_no_weight_and_logs_each_window_mean(tmp_path, digits):
    each = _trainer(tmp_path / "each", digits, CFG)
    each.fit()
    fourth = _trainer(tmp_path / "fourth", digits, replace(CFG, log_every=4))
    fourth.fit()
    for name, value in each.model.state_dict().items():
        assert torch.equal(value, fourth.model.state_dict()[name]), name
    per_step = [r["loss"] for r in _log(tmp_path / "each") if "loss" in r]
    logged = {r["step"]: r["loss"] for r in _log(tmp_path / "fourth") if "loss" in r}
    assert len(per_step) == 8 and list(logged) == [4, 8]
    assert logged[4] == pytest.approx(sum(per_step[:4]) / 4, rel=1e-6)
    assert logged[8] == pytest.approx(sum(per_step[4:]) / 4, rel=1e-6)


def test_a_nan_inside_a_deferred_window_rolls_back_to_the_last_good_checkpoint(tmp_path, digits):
    cfg = replace(CFG, steps=12, log_every=4, checkpoint_every=10)
    said: list[str] = []
    trainer = _trainer(tmp_path, digits, cfg, nan_calls={7}, said=said)  # step 6 (the first call counts FLOPs)
    trainer.fit()
    log = _log(tmp_path)  # the rollback cut the log back to its checkpoint's step, then went on
    assert said[0] == "warning: step 8 skipped: 3 non-finite of the last 4 steps"  # 6, and 7, 8 on its weights
    rollback = [r for r in log if r.get("event") == "rollback"]
    assert len(rollback) == 1 and rollback[0]["from_step"] == 8 and trainer.lr_scale == 0.5
    assert trainer.step == 12 and not nonfinite_tensors(trainer.model.state_dict())


def test_log_every_below_one_is_refused_naming_the_key():
    from elbolab.errors import ConfigError

    with pytest.raises(ConfigError, match="train.log_every"):
        TrainConfig(log_every=0)


def _script(tmp_path: Path, shared_data: Path, *parts: str, extra: tuple[str, ...] = ()) -> dict[str, dict]:
    """benchmarks/gpu.py --quick on the CPU with these parts (and `extra` arguments); their JSON files."""
    env = {**os.environ, "ELBOLAB_DATA": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--parts", ",".join(parts)]
    argv += ["--results-dir", str(tmp_path), "--cifar-dir", str(shared_data / "cifar-10-subset"), *extra]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not list(tmp_path.glob("*.tmp"))  # each file was renamed into place whole
    return {part: json.loads((tmp_path / f"gpu-{part}.json").read_text()) for part in parts}


@pytest.mark.slow
def test_cifar_part_measures_a_curve_beside_the_published_table(tmp_path, shared_data):
    result = _script(tmp_path, shared_data, "cifar")["cifar"]
    assert "error" not in result and result["partial"] is False
    assert "the subset" in result["data"] and result["published_bpd_at_convergence"]["VDM (Kingma et al. 2021)"] == 2.65
    points = result["points"]
    assert len(points) == 2 and points[0]["step"] < points[1]["step"]
    assert [p["samples"] for p in points] == [16, 24]
    for p in points:
        assert 0 < p["test_bpd_mc_stderr"] < p["test_bpd_ci95"] and "importance" in p["bpd_estimator"]
        low, high = p["fd_builtin_ci95"]
        assert low <= p["fd_builtin"] <= high


def test_mfu_part_times_the_sync_free_step_and_both_diffusers_ratios(tmp_path, shared_data):
    result = _script(tmp_path, shared_data, "mfu")["mfu"]
    rows = {r["variant"]: r for r in result["variants"]}
    assert {"bf16", "bf16 channels_last log_every=100"} <= set(rows)  # compiled variants: GPU only
    for name, row in rows.items():
        if name != "bf16 network only":
            assert row["pipelined_step_ms"] > 0 and row["mfu_pipelined"] == pytest.approx(
                result["gflop_per_training_image"]
                * 1e9
                * result["batch"]
                / (row["pipelined_step_ms"] / 1e3)
                / result["matmul_peak_flops"]
            )
    if result["diffusers"] is not None:  # diffusers installed
        assert result["diffusers"]["ratio"] > 0 and result["diffusers"]["ratio_no_ema"] > 0
