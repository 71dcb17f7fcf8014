"""Non-finite values: a NaN/Inf loss or gradient skips its step; N in a row roll back to the newest good
checkpoint with the learning rate halved and a fresh random stream; M rollbacks stop the run in one line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from short_training import short_training
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from elbolab.train.checkpoint import load_tensors, nonfinite_tensors
from elbolab.train.loop import Trainer, TrainingDiverged, lr_at
from elbolab.train.run import LOG_FILE, WEIGHTS_FILE, RunConfig, build_model, list_checkpoints
from elbolab.vae import VAEConfig

CFG = short_training(14, 16, 5, 2, eval_n=32, nonfinite_patience=3, max_rollbacks=2)


@pytest.fixture(scope="module")
def digits():
    from elbolab.data import load_data

    return load_data("digits", "train").subset(128), load_data("digits", "test").subset(32)


def _trainer(run_dir, digits, bad_calls=(), grad_calls=(), cfg=CFG, said=None):
    """A tiny VAE whose loss is NaN on the `bad_calls`-th calls and whose gradient is Inf on `grad_calls`."""
    train, test = digits
    run = RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(run)
    loss, calls = model.loss, [0]

    def faulty_loss(x, step=0, total_steps=None, **labels):
        out = loss(x, step, total_steps, **labels)
        if any(type(mode).__name__.endswith("FlopCounterMode") for mode in _get_current_dispatch_mode_stack()):
            return out  # the trainer's count of a step's FLOPs (train.budget.step_flops), not a training step
        calls[0] += 1
        if calls[0] in bad_calls:
            return out * float("nan")
        if calls[0] in grad_calls:  # a one-shot hook: this backward pass gets an infinite gradient
            p, handles = next(model.parameters()), []

            def infinite(g):
                handles[0].remove()
                return torch.full_like(g, float("inf"))

            handles.append(p.register_hook(infinite))
        return out

    model.loss = faulty_loss
    say = said.append if said is not None else (lambda _: None)
    return Trainer(model, train, test, cfg, run_dir, progress=False, say=say)


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / LOG_FILE).read_text().splitlines()]


def test_a_single_nan_loss_or_inf_gradient_skips_that_step(tmp_path, digits):
    said = []
    trainer = _trainer(tmp_path, digits, bad_calls={4}, grad_calls={9}, said=said)
    trainer.fit()
    log = _log(tmp_path)
    skipped = {r["step"]: r["skipped"] for r in log if "skipped" in r}
    assert list(skipped) == [4, 9]
    assert skipped[4].startswith("non-finite loss") and skipped[9].startswith("non-finite gradient")
    assert [r["step"] for r in log] == list(range(1, 15)) and not [r for r in log if r.get("event")]
    assert "warning: step 4 skipped: non-finite loss" in said[0]
    assert not nonfinite_tensors(load_tensors(tmp_path / WEIGHTS_FILE)[0])


def test_patience_in_a_row_rolls_back_with_half_the_rate_and_the_run_finishes(tmp_path, digits):
    said = []
    # calls 7, 8, 9 are steps 7, 8, 9: three in a row → back to the step-5 checkpoint
    trainer = _trainer(tmp_path, digits, bad_calls={7, 8, 9}, said=said)
    metrics = trainer.fit()
    assert metrics["step"] == 14
    events = [r for r in _log(tmp_path) if r.get("event")]
    assert len(events) == 1 and events[0]["event"] == "rollback"
    assert events[0]["from_step"] == 9 and events[0]["step"] == 5 and events[0]["lr_scale"] == 0.5
    assert events[0]["checkpoint"] == "step-000005.safetensors"
    assert any("rolled back to step 5" in s and "fresh random stream" in s for s in said)
    steps = [r for r in _log(tmp_path) if "event" not in r]
    assert [r["step"] for r in steps] == list(range(1, 15))  # the abandoned steps 6–9 are gone
    assert all(r["lr"] == pytest.approx(0.5 * lr_at(r["step"] - 1, CFG)) for r in steps[5:])
    _, state = load_tensors(list_checkpoints(tmp_path)[0])
    assert state["lr_scale"] == 0.5 and state["rollbacks"] == 1


def test_a_rollback_draws_a_fresh_random_stream(tmp_path, digits):
    batches = []
    trainer = _trainer(tmp_path, digits, bad_calls={7, 8, 9})
    draw = trainer.micro_batch

    def record(slot):
        x, y = draw(slot)
        batches.append(x.clone())
        return batches[-1], y

    trainer.micro_batch = record
    trainer.fit()
    # batches 6..9 were drawn before the rollback; the 6th after it (index 9) continues from step 5 anew
    assert not torch.equal(batches[5], batches[9])


def test_max_rollbacks_stop_the_run_with_one_line(tmp_path, digits):
    trainer = _trainer(tmp_path, digits, bad_calls=set(range(3, 100)))
    with pytest.raises(TrainingDiverged) as exc:
        trainer.fit()
    message = str(exc.value)
    assert len(message.splitlines()) == 1
    assert "after 2 rollbacks (train.max_rollbacks=2, learning rate × 0.25)" in message
    rollbacks = [r for r in _log(tmp_path) if r.get("event") == "rollback"]
    assert [r["lr_scale"] for r in rollbacks] == [0.5, 0.25]
    for path in list_checkpoints(tmp_path):
        assert not nonfinite_tensors(load_tensors(path)[0])


def test_non_finite_weights_are_never_checkpointed(tmp_path, digits):
    trainer = _trainer(tmp_path, digits, cfg=replace(CFG, nonfinite_patience=10))

    poisoned = []

    def poison(step, _record):
        if step == 3 and not poisoned:
            poisoned.append(step)
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    trainer.callbacks = (poison,)
    trainer.fit()
    events = [r for r in _log(tmp_path) if r.get("event") == "rollback"]
    assert events and events[0]["reason"] == "non-finite weights" and events[0]["step"] == 0
    for path in list_checkpoints(tmp_path) + [tmp_path / WEIGHTS_FILE]:
        assert not nonfinite_tensors(load_tensors(path)[0]), path


def test_an_fp16_overflow_lowers_the_loss_scale_and_is_not_a_fault(tmp_path, digits):
    """With fp16 and its grad scaler an infinite gradient is an overflow: the step is skipped, the scale drops,
    nothing counts towards a rollback; the same gradient in fp32 is a fault."""
    fp16 = _trainer(tmp_path / "fp16", digits, grad_calls={2}, cfg=replace(CFG, precision="fp16"))
    scale = fp16.scaler.get_scale()
    records = [fp16.train_step() for _ in range(3)]
    assert "overflow" in records[1] and "skipped" not in records[1] and fp16.nonfinite_in_a_row == 0
    assert fp16.scaler.get_scale() <= scale / 2  # (a fresh scaler's 65536 also overflows on its own at first)
    fp32 = _trainer(tmp_path / "fp32", digits, grad_calls={2})
    assert "skipped" in [fp32.train_step() for _ in range(2)][1] and fp32.nonfinite_in_a_row == 1
