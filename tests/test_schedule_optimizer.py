"""The optimiser and a learned noise schedule: weight decay never reaches the schedule's parameters (end points
and shape), the groups keep the parameters in `model.parameters()` order (which checkpoints index by), and a
checkpoint written before the schedule had a group of its own resumes with its moments where they belong."""

from __future__ import annotations

import torch

from elbolab.diffusion import DiffusionConfig
from elbolab.nets.unet import UNetConfig
from elbolab.train.checkpoint import load_tensors, save_tensors
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer, parameter_groups
from elbolab.train.run import RunConfig, build_model, checkpoint_path

CFG = TrainConfig(
    steps=6, batch_size=16, eval_every=0, eval_n=16, checkpoint_every=3, warmup_steps=1, seed=2, weight_decay=0.1
)


def _data():
    from elbolab.data import load_data

    return load_data("digits", "train").subset(64), load_data("digits", "test").subset(16)


def _run(schedule: str = "learned") -> RunConfig:
    train, _ = _data()
    model = DiffusionConfig(unet=UNetConfig(preset="tiny"), time="continuous", T=50, schedule=schedule, loss="simple")
    return RunConfig("diffusion", "digits", None, train.shape, train.levels, model, CFG)


def _trainer(run_dir, cfg=CFG):
    train, test = _data()
    torch.manual_seed(cfg.seed)
    return Trainer(build_model(_run()), train, test, cfg, run_dir, progress=False)


def test_the_schedule_gets_no_weight_decay_and_the_order_is_the_models():
    model = build_model(_run())
    groups = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [p for g in groups for p in g["params"]] == list(model.parameters())
    for g in groups:
        for p in g["params"]:
            assert g["decay"] == (".schedule." not in f".{names[id(p)]}")
            assert g["weight_decay"] == (0.1 if g["decay"] else 0.0)
    assert any(not g["decay"] for g in groups) and any(g["decay"] for g in groups)


def test_decay_leaves_the_schedule_where_the_bound_puts_it(tmp_path):
    """With the bound's gradient zeroed, a decayed parameter shrinks while the schedule's stay put."""
    trainer = _trainer(tmp_path / "r")
    model = trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    for g in trainer.optimizer.param_groups:
        g["lr"] = 0.1
    trainer.optimizer.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(p.detach(), before[n])
        assert moved == (".schedule." not in f".{n}" and bool(before[n].abs().sum() > 0)), n


def test_an_old_single_group_checkpoint_resumes_with_its_moments_in_place(tmp_path):
    run_dir = tmp_path / "r"
    trainer = _trainer(run_dir, CFG)
    trainer.fit()
    path = checkpoint_path(run_dir, 6)
    tensors, state = load_tensors(path)
    groups = state["optimizer"]["param_groups"]
    assert len(groups) > 1
    # the layout of a checkpoint written before: one group holding every parameter, in the same order
    one = {k: v for k, v in groups[0].items() if k not in ("params", "decay")}
    state["optimizer"]["param_groups"] = [{**one, "params": [i for g in groups for i in g["params"]]}]
    save_tensors(path, tensors, {k: v for k, v in state.items() if k != "sha256"})
    resumed = _trainer(run_dir, TrainConfig(**{**CFG.__dict__, "steps": 6}))
    resumed.load_checkpoint()
    assert [g["decay"] for g in resumed.optimizer.param_groups] == [g["decay"] for g in trainer.optimizer.param_groups]
    for g in resumed.optimizer.param_groups:
        assert g["weight_decay"] == (0.1 if g["decay"] else 0.0)
    for p, q in zip(resumed.model.parameters(), trainer.model.parameters()):
        torch.testing.assert_close(resumed.optimizer.state[p]["exp_avg"], trainer.optimizer.state[q]["exp_avg"])
