"""Checkpoints: kept K deep, written with the umask's permissions, verified on load; every kind of damage is
one line naming the file and the fault, and resuming falls back to the newest good checkpoint."""

from __future__ import annotations

import json
import os
import stat
import struct

import pytest
import torch
from safetensors.torch import save as save_bytes

from elbolab.atomic import atomic_write_json
from elbolab.errors import ElbolabError
from elbolab.train.checkpoint import CheckpointError, content_hash, load_tensors, save_tensors
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer
from elbolab.train.run import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    RunConfig,
    build_model,
    checkpoint_path,
    list_checkpoints,
)
from elbolab.vae import VAEConfig

CFG = TrainConfig(steps=10, batch_size=16, eval_every=0, eval_n=32, checkpoint_every=5, warmup_steps=2, seed=5)


@pytest.fixture(scope="module")
def digits():
    from elbolab.data import load_data

    return load_data("digits", "train").subset(128), load_data("digits", "test").subset(32)


def _trainer(run_dir, digits, cfg=CFG, said=None):
    train, test = digits
    run = RunConfig("vae", "digits", None, train.shape, train.levels, VAEConfig(net="tiny"), cfg)
    torch.manual_seed(cfg.seed)
    say = said.append if said is not None else (lambda _: None)
    return Trainer(build_model(run), train, test, cfg, run_dir, progress=False, say=say)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, digits):
    """A run trained to step 10 with checkpoints at 0, 5 and 10."""
    run = tmp_path_factory.mktemp("finished")
    _trainer(run, digits).fit()
    return run


def _rewrite(path, tensors, state):
    """Write a checkpoint the way save_tensors would, but without its checks (a hand-made bad file)."""
    state = {k: v for k, v in state.items() if k != "sha256"}
    state["sha256"] = content_hash(tensors, state)
    path.write_bytes(save_bytes(tensors, metadata={"state": json.dumps(state)}))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


def _damage(kind, path):
    raw = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flipped byte in a tensor":
        path.write_bytes(_flip(raw, len(raw) - 100))
    elif kind == "flipped byte in the header":
        path.write_bytes(_flip(raw, 8 + struct.unpack("<Q", raw[:8])[0] // 2))
    else:
        tensors, state = load_tensors(path)
        name = next(k for k in tensors if k.startswith("model.") and tensors[k].dim() == 2)
        if kind == "wrong shape":
            tensors[name] = tensors[name][:, :-1].contiguous()
        elif kind == "missing tensor":
            del tensors[name]
        elif kind == "unexpected tensor":
            tensors["model.extra.weight"] = torch.zeros(2)
        elif kind == "non-finite tensor":
            tensors[name] = tensors[name].clone()
            tensors[name][0, 0] = float("nan")
        elif kind == "no training state":
            state = {}
        _rewrite(path, tensors, state)


DAMAGE = {
    "truncated": "corrupt or unreadable",
    "empty": "corrupt or unreadable",
    "flipped byte in a tensor": "content hash mismatch",
    "flipped byte in the header": "corrupt",
    "wrong shape": "does not fit the model",
    "missing tensor": "missing tensors",
    "unexpected tensor": "tensors the model does not have: model.extra.weight",
    "non-finite tensor": "non-finite values",
    "no training state": "no training state",
}


def test_the_newest_k_checkpoints_are_kept_and_indexed(finished):
    assert [p.name for p in list_checkpoints(finished)] == [
        "step-000010.safetensors",
        "step-000005.safetensors",
        "step-000000.safetensors",
    ]
    index = json.loads((finished / CHECKPOINT_FILE).read_text())
    assert index["step"] == 10 and index["file"] == "checkpoints/step-000010.safetensors"
    _, state = load_tensors(checkpoint_path(finished, 10))
    assert state["step"] == 10 and len(state["sha256"]) == 64


def test_only_k_checkpoints_remain_after_a_long_run(tmp_path, digits):
    from dataclasses import replace

    _trainer(tmp_path, digits, replace(CFG, steps=12, checkpoint_every=2, keep_checkpoints=2)).fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000012.safetensors", "step-000010.safetensors"]


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_is_one_line_and_resume_falls_back(kind, finished, tmp_path, digits):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    newest = checkpoint_path(run, 10)
    _damage(kind, newest)
    with pytest.raises(CheckpointError) as exc:
        _trainer(tmp_path / "x", digits)._read(newest)
    message = str(exc.value)
    assert len(message.splitlines()) == 1 and message.startswith(str(newest)) and DAMAGE[kind] in message, message
    said = []
    resumed = _trainer(run, digits, said=said)
    assert resumed.load_checkpoint() == checkpoint_path(run, 5)
    assert resumed.step == 5
    assert said[0].startswith(f"warning: {newest}") and DAMAGE[kind] in said[0]
    assert said[1] == f"falling back to the older checkpoint {checkpoint_path(run, 5)} (step 5)"
    good = load_tensors(checkpoint_path(run, 5))[0]
    assert all(v.equal(good[f"model.{k}"]) for k, v in resumed.model.state_dict().items())


def test_every_checkpoint_damaged_is_one_line(finished, tmp_path, digits):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for path in list_checkpoints(run):
        _damage("truncated", path)
    with pytest.raises(ElbolabError, match="no usable checkpoint; all 3 are damaged") as exc:
        _trainer(run, digits).load_checkpoint()
    assert len(str(exc.value).splitlines()) == 1


def test_resume_on_the_command_line_says_it_falls_back(tmp_path, run_cli):
    run = tmp_path / "run"
    args = [
        "train",
        "vae",
        "--out",
        run,
        "--quiet",
        "--set",
        "model.net=tiny",
        "--set",
        "train.eval_every=0",
        "--set",
        "train.checkpoint_every=3",
        "--set",
        "train.eval_n=32",
        "--set",
        "train.batch_size=16",
    ]
    assert run_cli(*args, "--steps", "6")[0] == 0
    _damage("flipped byte in a tensor", checkpoint_path(run, 6))
    code, out, err = run_cli(*args, "--steps", "8", "--resume")
    assert code == 0 and "step 8" in out
    assert "content hash mismatch" in err and "falling back to the older checkpoint" in err and "(step 3)" in err


def test_a_non_finite_tensor_is_never_written(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.ones(3)})
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="not written, non-finite values in b"):
        save_tensors(path, {"a": torch.ones(3), "b": torch.tensor([1.0, float("inf")])})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_get_the_permissions_of_the_umask(tmp_path, digits, umask):
    old = os.umask(umask)
    try:
        _trainer(tmp_path, digits, TrainConfig(steps=2, batch_size=8, eval_every=0, eval_n=8, checkpoint_every=2)).fit()
        atomic_write_json(tmp_path / CONFIG_FILE, {"a": 1})
    finally:
        os.umask(old)
    files = [
        tmp_path / CONFIG_FILE,
        tmp_path / METRICS_FILE,
        tmp_path / WEIGHTS_FILE,
        tmp_path / CHECKPOINT_FILE,
        *list_checkpoints(tmp_path),
    ]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"old": True})

    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(ElbolabError, match=r"m.json: cannot write \(No space left on device\)"):
        atomic_write_json(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True} and [p.name for p in tmp_path.iterdir()] == ["m.json"]
