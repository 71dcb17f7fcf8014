"""Compute budgets (steps, counted FLOPs, seconds) and the best weights kept on a validation split."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from short_training import short_training
from torch import Tensor, nn

from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.errors import ConfigError
from elbolab.train import loop, validation
from elbolab.train.budget import STEP_CAP, Budget, step_flops, steps_in_budget
from elbolab.train.checkpoint import load_tensors
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer, lr_at
from elbolab.train.run import (
    LOG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    RunConfig,
    build_model,
    checkpoint_path,
    load_snapshot,
    save_run_config,
)
from elbolab.train.validation import split_validation, validation_bpd
from elbolab.vae import VAEConfig

CFG = short_training(
    steps=16,
    batch_size=32,
    checkpoint_every=4,
    seed=7,
    eval_n=64,
    keep_checkpoints=20,
    ema_decay=0.0,  # the EMA weights are the weights: the validation curve follows the learning rate at once
    lr=1e-2,
    min_lr_ratio=1.0,
    validation_fraction=0.25,
    validate_every=4,
    keep_best=True,
)


@pytest.fixture(scope="module")
def digits() -> tuple[ImageData, ImageData]:
    return load_data("digits", "train").subset(256), load_data("digits", "test").subset(64)


def _trainer(run_dir: Path, digits: tuple[ImageData, ImageData], cfg: TrainConfig, callbacks=()) -> Trainer:
    train, test = digits
    run = RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg)
    torch.manual_seed(cfg.seed)
    return Trainer(build_model(run), train, test, cfg, run_dir, callbacks=callbacks, progress=False)


def _stop_at(step: int):
    def callback(current: int, _record: dict) -> None:
        if current == step:
            raise RuntimeError("power cut")

    return callback


# ---------------------------------------------------------------- budgets


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [("1200steps", 1200, "steps"), ("2.5e13flop", 2.5e13, "flop"), ("3E12 FLOPs", 3e12, "flop"), ("60s", 60, "s")],
)
def test_a_budget_is_read_with_its_unit(text, amount, unit):
    budget = Budget.parse(text)
    assert (budget.amount, budget.unit, budget.machine_dependent) == (amount, unit, unit == "s")
    assert Budget.from_json(asdict(budget)) == budget


def test_a_bare_number_is_seconds_as_before():
    assert Budget.parse("1.5") == Budget(1.5, "s")


@pytest.mark.parametrize("text", ["12parsecs", "-3steps", "0flop", "steps", "1.5steps", "inf s"])
def test_a_bad_budget_is_a_one_line_error(text):
    with pytest.raises(ConfigError) as exc:
        Budget.parse(text)
    assert len(str(exc.value).splitlines()) == 1


def test_a_budget_becomes_the_train_keys_that_impose_it_and_scales():
    assert Budget(1200, "steps").train_keys() == {"steps": 1200, "max_flops": 0.0, "max_seconds": 0.0}
    assert Budget(3e12, "flop").train_keys() == {"steps": STEP_CAP, "max_flops": 3e12, "max_seconds": 0.0}
    assert Budget(60, "s").train_keys() == {"steps": STEP_CAP, "max_flops": 0.0, "max_seconds": 60}
    assert Budget(1000, "steps").scaled(0.15) == Budget(150, "steps")
    assert Budget(3, "steps").scaled(0.01) == Budget(1, "steps")  # never less than a step
    assert Budget(3e12, "flop").scaled(0.5) == Budget(1.5e12, "flop")
    for budget in (Budget(1200, "steps"), Budget(3e12, "flop"), Budget(60, "s")):
        assert Budget.of(replace(CFG, **budget.train_keys())) == budget


class Linear(nn.Module):
    """loss(x) = ‖W x + b‖² per example; with random t, a loss whose draws change nothing of its cost."""

    def __init__(self, d_in: int, d_out: int, random_t: bool = False) -> None:
        super().__init__()
        self.lin, self.random_t = nn.Linear(d_in, d_out), random_t

    def loss(self, x: Tensor, step: int = 0, total_steps: int | None = None) -> Tensor:
        scale = torch.rand(x.shape[0], 1) if self.random_t else 1.0
        return (self.lin(x * scale) ** 2).sum(1)


def test_a_steps_flops_are_the_matrix_products_of_its_forward_and_backward_pass():
    b, d_in, d_out = 8, 12, 5
    model = Linear(d_in, d_out, random_t=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(b, d_in)
    rng = torch.get_rng_state()
    # forward W x: 2·B·in·out; backward: the weight's gradient, 2·B·in·out (x needs none)
    assert step_flops(model, x) == 4 * b * d_in * d_out
    assert torch.equal(torch.get_rng_state(), rng)  # no random stream moved
    torch.rand(3)
    assert step_flops(model, x) == 4 * b * d_in * d_out  # other draws, the same cost
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_flop_budget_buys_whole_steps():
    assert steps_in_budget(1000, 0.0, 7) == 1000  # no FLOP limit
    assert steps_in_budget(1000, 70.0, 7) == 10
    assert steps_in_budget(1000, 76.9, 7) == 10  # never more than the budget
    assert steps_in_budget(5, 70.0, 7) == 5  # the step limit, where it is smaller
    assert steps_in_budget(1000, 3.0, 7) == 1  # at least one step


def test_a_flop_budget_stops_training_on_any_machine_and_holds_on_resume(tmp_path, digits):
    probe = _trainer(tmp_path / "probe", digits, CFG)
    per_step = probe.count_flops()
    cfg = replace(CFG, steps=STEP_CAP, max_flops=7.5 * per_step, keep_best=False)
    whole = _trainer(tmp_path / "whole", digits, cfg).fit()
    assert whole["step"] == 7 and whole["train_flops_per_step"] == per_step
    assert whole["train_flops"] == 7 * per_step <= cfg.max_flops
    # the learning rate's cosine ends at the budget's last step, as for a budget of 7 steps
    last = [json.loads(line) for line in (tmp_path / "whole" / LOG_FILE).read_text().splitlines()][-1]
    assert last["lr"] == pytest.approx(lr_at(6, replace(cfg, steps=7)))
    with pytest.raises(RuntimeError, match="power cut"):
        _trainer(tmp_path / "cut", digits, cfg, (_stop_at(6),)).fit()
    resumed = _trainer(tmp_path / "cut", digits, cfg)
    resumed.load_checkpoint()
    assert resumed.step == 4
    assert resumed.fit()["step"] == 7
    a, b = (load_tensors(tmp_path / run / WEIGHTS_FILE)[0] for run in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- the validation split and the kept weights


def test_the_validation_split_is_a_seeded_part_of_the_training_images(digits):
    train, _ = digits
    kept, held = split_validation(train, 0.25, seed=3)
    assert held is not None and (len(kept), len(held)) == (192, 64)
    again = split_validation(train, 0.25, seed=3)[1]
    assert again is not None and torch.equal(again.images, held.images)
    other = split_validation(train, 0.25, seed=4)[1]
    assert other is not None and not torch.equal(other.images, held.images)
    rows = lambda d: sorted(tuple(im.flatten().tolist()) for im in d.images)
    assert sorted(rows(kept) + rows(held)) == rows(train)  # a partition of the training images
    assert split_validation(train, 0.0, seed=3) == (train, None)
    capped_kept, capped = split_validation(train, 0.25, seed=3, most=10)  # at most 10 images, the rest trained on
    assert capped is not None and (len(capped_kept), len(capped)) == (246, 10)
    assert TrainConfig().validation_max == 512
    with pytest.raises(ConfigError, match="train.validation_max"):
        TrainConfig(validation_max=0)


def test_keep_best_needs_a_validation_split():
    with pytest.raises(ConfigError, match="train.keep_best"):
        TrainConfig(keep_best=True)


def _rising_run(tmp_path: Path, digits, cut_at: int | None = None) -> dict:
    """16 steps at a learning rate that lowers the validation bound, then 16 at one (30×) that raises it,
    changed on resume; with `cut_at`, the second session dies there and a third one finishes the run."""
    run_dir = tmp_path / ("cut" if cut_at else "whole")
    _trainer(run_dir, digits, CFG).fit()
    late = replace(CFG, steps=32, lr=0.3)
    second = _trainer(run_dir, digits, late, (_stop_at(cut_at),) if cut_at else ())
    second.load_checkpoint()
    if cut_at is None:
        return second.fit()
    with pytest.raises(RuntimeError, match="power cut"):
        second.fit()
    third = _trainer(run_dir, digits, late)
    third.load_checkpoint()
    return third.fit()


def test_the_kept_weights_are_the_best_on_validation_and_survive_resume(tmp_path, digits):
    metrics = _rising_run(tmp_path, digits)
    curve = metrics["validation"]
    assert curve["steps"] == list(range(4, 33, 4)) and curve["images"] == 64
    best = min(range(len(curve["bpd"])), key=lambda i: curve["bpd"][i])
    assert curve["bpd"][-1] > curve["bpd"][best]  # the bound rose: the last weights are not the best
    assert metrics["kept_step"] == curve["kept_step"] == curve["steps"][best] == 16
    assert curve["kept_bpd"] == curve["bpd"][best]
    kept = load_tensors(tmp_path / "whole" / WEIGHTS_FILE)[0]
    at_16 = load_tensors(checkpoint_path(tmp_path / "whole", 16))[0]
    assert all(torch.equal(v, at_16[f"ema.{k}"]) for k, v in kept.items())  # the EMA weights of step 16
    last = load_tensors(checkpoint_path(tmp_path / "whole", 32))[0]
    assert not all(torch.equal(v, last[f"ema.{k}"]) for k, v in kept.items())
    # what eval, sample and compare load: the kept weights, whose validation bound is the kept one
    trainer = _trainer(tmp_path / "probe", digits, CFG)
    trainer.eval_model.load_state_dict(kept)
    assert validation_bpd(trainer.eval_model, trainer.validation, CFG.batch_size) == curve["kept_bpd"]
    # cut at step 26 (checkpoint 24, after the best) and resumed: the same best, the same weights
    cut = _rising_run(tmp_path, digits, cut_at=26)
    assert cut["validation"] == curve and cut["kept_step"] == 16
    again = load_tensors(tmp_path / "cut" / WEIGHTS_FILE)[0]
    assert all(torch.equal(v, again[k]) for k, v in kept.items())
    assert json.loads((tmp_path / "cut" / METRICS_FILE).read_text())["kept_step"] == 16


def _bound_reads(monkeypatch, trainer: Trainer) -> list[tuple[str, int]]:
    """Every bound the trainer computes, as (which data, steps trained when it was read)."""
    reads: list[tuple[str, int]] = []
    names = {id(trainer.test_data): "test", id(trainer.validation): "validation", id(trainer.train_data): "train"}
    for module in (loop, validation):
        real = module.dataset_bound

        def watched(model, data, *args, _real=real, **kw):
            reads.append((names.get(id(data), "other"), trainer.step))
            return _real(model, data, *args, **kw)

        monkeypatch.setattr(module, "dataset_bound", watched)
    return reads


def test_the_test_split_is_read_only_after_training(tmp_path, digits, monkeypatch):
    cfg = replace(CFG, eval_every=4)  # with keep_best, no periodic test bound
    trainer = _trainer(tmp_path / "best", digits, cfg)
    reads = _bound_reads(monkeypatch, trainer)
    trainer.fit()
    assert [r for r in reads if r[0] == "test"] == [("test", 16)]  # the final measurement of the kept weights
    assert reads[-1] == ("test", 16) and {name for name, _ in reads[:-1]} == {"validation"}
    # the instrument sees a periodic test bound where there is one
    plain = _trainer(tmp_path / "plain", digits, replace(cfg, keep_best=False))
    plain_reads = _bound_reads(monkeypatch, plain)
    plain.fit()
    assert ("test", 4) in plain_reads


def test_a_plain_run_keeps_its_last_weights_and_reads_no_validation_split(tmp_path, digits):
    plain = replace(CFG, validation_fraction=0.0, keep_best=False)
    trainer = _trainer(tmp_path, digits, plain)
    assert trainer.validation is None and len(trainer.train_data) == 256
    metrics = trainer.fit()
    assert metrics["validation"] is None and metrics["kept_step"] == 16
    assert not math.isnan(metrics["test_bpd"])


# ---------------------------------------------------------------- the command line and latent diffusion's stages


def test_train_takes_a_budget_and_records_its_flops(tmp_path, run_cli):
    args = ["--set", "model.net=tiny", "--set", "train.batch_size=16", "--set", "train.eval_n=16", "--quiet"]
    code, _, err = run_cli("train", "vae", "--out", tmp_path / "s", "--budget", "3steps", *args)
    assert code == 0, err
    metrics = json.loads((tmp_path / "s" / METRICS_FILE).read_text())
    assert metrics["step"] == 3 and metrics["train_flops"] == 3 * metrics["train_flops_per_step"] > 0
    code, _, err = run_cli(
        "train", "vae", "--out", tmp_path / "f", "--budget", f"{4.5 * metrics['train_flops_per_step']}flop", *args
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "f" / "config.json").read_text())["train"]
    assert saved["max_flops"] == 4.5 * metrics["train_flops_per_step"] and saved["threads"] == 1
    assert json.loads((tmp_path / "f" / METRICS_FILE).read_text())["step"] == 4
    code, _, err = run_cli("train", "vae", "--out", tmp_path / "x", "--budget", "3steps", "--steps", "4", *args)
    assert code == 1 and "--steps and --budget" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("train", "vae", "--out", tmp_path / "y", "--budget", "3 fortnights", *args)
    assert code == 1 and "--budget '3 fortnights'" in err and len(err.strip().splitlines()) == 1


def test_latent_diffusion_splits_a_flop_budget_between_its_stages(tmp_path):
    from elbolab.train.api import train_run

    budget = 1e10
    overrides = {
        "model.vae.net": "tiny",
        "model.diffusion.unet.channels": "16",
        "train.batch_size": "128",
        "train.eval_every": "0",
        "train.eval_n": "64",
        **{f"train.{k}": str(v) for k, v in Budget(budget, "flop").train_keys().items()},
    }
    _, main = train_run("latent-diffusion", "digits", tmp_path, overrides=overrides, progress=False)
    first = json.loads((tmp_path / "autoencoder" / METRICS_FILE).read_text())
    # stage 1: whole steps within stage_one_fraction (½) of the budget; stage 2: whole steps within the rest
    assert first["step"] == math.floor(budget / 2 / first["train_flops_per_step"]) >= 1
    assert main["step"] == math.floor((budget - first["train_flops"]) / main["train_flops_per_step"]) >= 1
    assert first["train_flops"] + main["train_flops"] <= budget


# ---------------------------------------------------------------- compare's budgets


def test_compare_budgets_are_compute_and_keep_the_best_weights():
    from elbolab.experiments.compare import (
        CORE_RUNS,
        CompareConfig,
        budgeted_run,
        estimated_seconds,
        job_plan,
        planned_points,
        preset_for,
        with_preset,
    )

    test = load_data("digits", "test")
    cfg = with_preset(CompareConfig(device="cpu"), 8)
    assert cfg.budget == Budget(1.75e12, "flop") and not cfg.budget.machine_dependent
    vae = budgeted_run("vae", cfg, test, cfg.budget).train
    assert (vae.max_flops, vae.max_seconds, vae.steps) == (1.75e12, 0.0, STEP_CAP)
    assert vae.keep_best and vae.validation_fraction == 0.1 and vae.threads == 1
    latent = budgeted_run("latent-diffusion", cfg, test, Budget(300, "steps"))
    assert (latent.model.autoencoder_steps, latent.train.steps) == (150, 150)  # stage_one_fraction ½ of the steps
    seconds = with_preset(CompareConfig(device="cpu", budget=Budget.parse("60s")), 8)
    assert asdict(seconds)["budget"] == {"amount": 60.0, "unit": "s", "machine_dependent": True}
    assert CompareConfig(budget=4.0).budget == Budget(4.0, "s")  # a number is seconds, as before
    preset = preset_for(8, "cpu")
    plan = job_plan(cfg, 8)
    one_thread = preset.flop_rate / preset.thread_factor  # compare trains each model at one thread
    assert plan[0] == ("train", "vae", pytest.approx(1.75e12 / one_thread))
    points = planned_points(cfg)
    fractions = sum(p.budget for p in points)  # the design's models at 1, the β-sweep and objective pair at 0.15
    assert fractions == pytest.approx(len([p for p in points if p.budget == 1]) + 0.15 * 4)
    measured = preset.measure_seconds / CORE_RUNS * 2  # a run's measurement in one of the two processes
    per_seed = (1.75e12 / one_thread * fractions + measured * len(points)) / 2  # two processes share the runs
    assert estimated_seconds(cfg, 8) == pytest.approx(per_seed)
    in_turn = replace(cfg, jobs=1)
    assert estimated_seconds(in_turn, 8) == pytest.approx(2 * per_seed)


def test_a_run_cut_short_loads_its_kept_weights(tmp_path, digits):
    from elbolab.train.run import load_run, save_run_config

    train, _ = digits
    cfg = replace(CFG, steps=32, lr=0.3, warmup_steps=32, validate_every=2)  # a rising learning rate
    with pytest.raises(RuntimeError, match="power cut"):
        _trainer(tmp_path, digits, cfg, (_stop_at(14),)).fit()
    save_run_config(tmp_path, RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg))
    newest = load_tensors(checkpoint_path(tmp_path, 12))[0]
    best = {k[5:]: v for k, v in newest.items() if k.startswith("best.")}
    assert best and not all(torch.equal(v, newest[f"ema.{k}"]) for k, v in best.items())
    model = load_run(tmp_path, "cpu")[1]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- snapshots along the budget


def _save_config(run_dir: Path, digits: tuple[ImageData, ImageData], cfg: TrainConfig) -> None:
    """The run's config, as `elbolab train` writes it (the Trainer alone does not)."""
    train = digits[0]
    save_run_config(run_dir, RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg))


def _validations(run_dir: Path) -> dict[int, float]:
    """step → validation bits/dim, from the run's log."""
    rows = [json.loads(line) for line in (run_dir / LOG_FILE).read_text().splitlines()]
    return {r["step"]: r["validation_bpd"] for r in rows if "validation_bpd" in r}


def test_a_snapshot_holds_the_best_weights_so_far_at_its_fraction_of_the_budget(tmp_path, digits):
    cfg = replace(CFG, validate_every=3, snapshots=(0.25, 0.5))
    trainer = _trainer(tmp_path / "run", digits, cfg)
    trainer.fit()
    _save_config(tmp_path / "run", digits, cfg)
    seen = _validations(tmp_path / "run")
    assert 4 in seen and 8 in seen  # validated at each snapshot's step, off the every-3 cadence
    for fraction, step in ((0.25, 4), (0.5, 8)):
        model, state = load_snapshot(tmp_path / "run", fraction, "cpu")
        best = min((s for s in seen if s <= step), key=lambda s: (seen[s], s))
        assert (state["fraction"], state["step"], state["kept_step"]) == (fraction, step, best)
        assert state["train_flops"] == step * trainer.flops_per_step
        # its weights are those whose validation bound was the best so far: measured again, the same number
        assert validation_bpd(model, trainer.validation, cfg.batch_size) == seen[best]


def test_without_keep_best_a_snapshot_is_the_ema_weights_of_its_step(tmp_path, digits):
    cfg = replace(CFG, keep_best=False, validation_fraction=0.0, snapshots=(0.5,))
    _trainer(tmp_path / "run", digits, cfg).fit()
    _save_config(tmp_path / "run", digits, cfg)
    model, state = load_snapshot(tmp_path / "run", 0.5, "cpu")
    at_8 = load_tensors(checkpoint_path(tmp_path / "run", 8))[0]
    assert state["step"] == state["kept_step"] == 8
    assert all(torch.equal(v.contiguous(), at_8[f"ema.{k}"]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("bad", [(0.0,), (1.0,), (0.5, 0.5), (-0.25,)])
def test_snapshot_fractions_outside_the_budget_are_refused(bad):
    with pytest.raises(ConfigError, match="train.snapshots"):
        TrainConfig(snapshots=bad)
