"""Training: a run stopped after a checkpoint and resumed ends bit-identical to an uninterrupted one."""

import itertools
import json

import pytest
import torch

from elbolab.data import load_data
from elbolab.errors import ElbolabError
from elbolab.train.checkpoint import load_tensors
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer, TrainingInterrupted, lr_at
from elbolab.train.run import LOG_FILE, WEIGHTS_FILE, RunConfig, build_model, checkpoint_path, list_checkpoints
from elbolab.vae import VAEConfig

CFG = TrainConfig(steps=12, batch_size=32, eval_every=6, eval_n=64, checkpoint_every=5, warmup_steps=3, seed=7)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "train").subset(256), load_data("digits", "test").subset(64)


def _trainer(run_dir, digits, callbacks=()):
    train, test = digits
    cfg = RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), CFG)
    torch.manual_seed(CFG.seed)
    return Trainer(build_model(cfg), train, test, CFG, run_dir, callbacks=callbacks, progress=False)


def _weights(run_dir):
    return load_tensors(list_checkpoints(run_dir)[0])[0]


def _stop_at(step, exc):
    def callback(current, _record):
        if current == step:
            raise exc

    return callback


def test_resume_after_a_crash_is_bit_identical(tmp_path, digits):
    _trainer(tmp_path / "whole", digits).fit()
    with pytest.raises(RuntimeError):
        _trainer(tmp_path / "cut", digits, (_stop_at(8, RuntimeError("power cut")),)).fit()
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["step"] == 5
    resumed = _trainer(tmp_path / "cut", digits)
    resumed.load_checkpoint()
    assert resumed.step == 5
    resumed.fit()
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert whole.keys() == cut.keys()
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key
    # the log holds each step once, in order
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / LOG_FILE).read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_ctrl_c_saves_a_checkpoint_and_resumes_identically(tmp_path, digits):
    _trainer(tmp_path / "whole", digits).fit()
    with pytest.raises(TrainingInterrupted, match="step 9"):
        _trainer(tmp_path / "cut", digits, (_stop_at(9, KeyboardInterrupt()),)).fit()
    resumed = _trainer(tmp_path / "cut", digits)
    resumed.load_checkpoint()
    assert resumed.step == 9
    resumed.fit()
    a, b = load_tensors(tmp_path / "whole" / WEIGHTS_FILE)[0], load_tensors(tmp_path / "cut" / WEIGHTS_FILE)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path, digits):
    checkpoint_path(tmp_path, 5).parent.mkdir()
    checkpoint_path(tmp_path, 5).write_bytes(b"not a safetensors file")
    with pytest.raises(ElbolabError, match="corrupt or unreadable checkpoint"):
        _trainer(tmp_path, digits).load_checkpoint()


def test_no_temporary_files_are_left_behind(tmp_path, digits):
    _trainer(tmp_path, digits).fit()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_loss_that_stays_nan_stops_with_one_line_after_the_rollbacks(tmp_path, digits):
    trainer = _trainer(tmp_path, digits)
    trainer.model.loss = lambda x, step, total_steps: torch.full((x.shape[0],), float("nan"))
    with pytest.raises(ElbolabError, match="diverged.*after 3 rollbacks.*lower train.lr") as exc:
        trainer.fit()
    assert len(str(exc.value).splitlines()) == 1


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))  # decays after the warm-up
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_a_resumed_budgeted_run_keeps_the_time_already_spent(tmp_path, digits):
    from dataclasses import replace

    from elbolab.train import loop

    train, test = digits
    cfg = replace(CFG, steps=1000, max_seconds=100.0, checkpoint_every=3)
    run = RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg)
    clock = [0.0]

    def trainer(callbacks=()):
        torch.manual_seed(0)
        model = build_model(run)
        loss = model.loss

        def slow_loss(x, step, total_steps):  # every training step "takes" 10 s of wall-clock time
            clock[0] += 10.0
            return loss(x, step, total_steps)

        model.loss = slow_loss
        return Trainer(model, train, test, cfg, tmp_path, callbacks=callbacks, progress=False)

    real = loop.time.perf_counter
    loop.time.perf_counter = lambda: clock[0]
    try:
        with pytest.raises(RuntimeError):
            trainer((_stop_at(7, RuntimeError("cut")),)).fit()
        resumed = trainer()
        resumed.load_checkpoint()
        assert resumed.step == 6 and resumed.seconds_before == pytest.approx(60.0)
        metrics = resumed.fit()
    finally:
        loop.time.perf_counter = real
    # 6 steps before the cut and 4 after fill the 100 s budget: the resumed run does not get a fresh one
    assert metrics["step"] == 10 and metrics["train_seconds"] == pytest.approx(100.0)


def test_a_run_paused_in_turns_ends_as_one_trained_straight_through(tmp_path, digits):
    from dataclasses import replace

    from elbolab.train import loop

    train, test = digits
    cfg = replace(CFG, steps=1000, max_seconds=100.0, eval_every=0, eval_n=8)
    run = RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg)
    clock = [0.0]

    def trainer(run_dir):
        torch.manual_seed(0)
        model = build_model(run)
        loss = model.loss

        def slow_loss(x, step, total_steps):  # every training step "takes" 10 s; the lr decays with the clock
            clock[0] += 10.0
            return loss(x, step, total_steps)

        model.loss = slow_loss
        return Trainer(model, train, test, cfg, run_dir, progress=False)

    real = loop.time.perf_counter
    loop.time.perf_counter = lambda: clock[0]
    try:
        whole = trainer(tmp_path / "whole").fit()
        turns = trainer(tmp_path / "turns")
        first = turns.fit(pause_at=30.0)
        clock[0] += 500.0  # time spent elsewhere between turns is not training time
        second = turns.fit(pause_at=70.0)
        last = turns.fit(pause_at=200.0)  # past the budget: the run ends as usual
    finally:
        loop.time.perf_counter = real
    assert first == {"step": 3, "train_seconds": pytest.approx(30.0), "paused": True}
    assert second == {"step": 7, "train_seconds": pytest.approx(70.0), "paused": True}
    assert last["step"] == whole["step"] == 10 and last["train_seconds"] == pytest.approx(100.0)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "turns")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_real_ctrl_c_stops_at_a_step_boundary(tmp_path, digits):
    import os
    import signal

    handler = signal.getsignal(signal.SIGINT)  # the default one, or SIG_IGN in a job started in the background
    _trainer(tmp_path / "whole", digits).fit()

    def send_sigint(step, _record):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-run; the loop finishes the step it is in

    with pytest.raises(TrainingInterrupted, match="step 4"):
        _trainer(tmp_path / "cut", digits, (send_sigint,)).fit()
    resumed = _trainer(tmp_path / "cut", digits)
    resumed.load_checkpoint()
    resumed.fit()
    a, b = load_tensors(tmp_path / "whole" / WEIGHTS_FILE)[0], load_tensors(tmp_path / "cut" / WEIGHTS_FILE)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert signal.getsignal(signal.SIGINT) is handler  # put back as it was


def test_a_first_stage_leaves_the_rest_of_the_budget_to_the_trainer(tmp_path):
    import json
    from dataclasses import replace

    from elbolab.latent import LatentDiffusionConfig
    from elbolab.train.stages import AUTOENCODER_DIR, Spent, stage_budget, stage_one_spent

    budget = replace(CFG, max_seconds=60.0)
    assert stage_budget(budget, Spent(seconds=25.0)).max_seconds == pytest.approx(35.0)
    assert stage_budget(budget, Spent()).max_seconds == 60.0  # one-stage models
    assert stage_budget(CFG, Spent(25.0, 1e9)) == CFG  # no budget, nothing to split
    flops = replace(CFG, max_flops=4e12)
    assert stage_budget(flops, Spent(25.0, 1.5e12)) == replace(flops, max_flops=2.5e12)  # seconds not budgeted
    (tmp_path / AUTOENCODER_DIR).mkdir()
    (tmp_path / AUTOENCODER_DIR / "metrics.json").write_text(
        json.dumps({"step": 40, "train_images_per_s": 900.0, "train_seconds": 25.0, "train_flops": 3e11})
    )
    assert stage_one_spent(LatentDiffusionConfig(), tmp_path) == Spent(25.0, 3e11)
    assert stage_one_spent(LatentDiffusionConfig(autoencoder=str(tmp_path)), tmp_path) == Spent()  # reused VAE
