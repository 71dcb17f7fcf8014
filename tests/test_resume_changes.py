"""`train --resume --set`: keys that may change mid-run are applied and recorded; others are refused in one line."""

from __future__ import annotations

import json
import shutil

import pytest

from elbolab.train.api import RESUMABLE
from elbolab.train.config import TrainConfig
from elbolab.train.run import CONFIG_FILE, CONFIG_HISTORY_FILE, LOG_FILE

BASE = [
    "--quiet",
    "--set",
    "model.net=tiny",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "train.eval_n=32",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.warmup_steps=0",
]


@pytest.fixture(scope="module")
def four_steps(tmp_path_factory):
    from elbolab.cli import main

    run = tmp_path_factory.mktemp("resume") / "run"
    with pytest.raises(SystemExit) as exc:
        main(["train", "vae", "--out", str(run), "--steps", "4", *BASE])
    assert exc.value.code == 0
    return run


@pytest.fixture
def run(four_steps, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(four_steps, copy)
    return copy


def test_a_new_learning_rate_is_applied_and_recorded(run, run_cli):
    code, out, err = run_cli(
        "train", "vae", "--out", run, "--resume", "--steps", "6", "--set", "train.lr=1e-4", "--quiet"
    )
    assert code == 0 and "step 6" in out, err
    assert "resume at step 4: train.steps 4 → 6, train.lr 0.002 → 0.0001 (recorded in config-history.jsonl)" in err
    assert json.loads((run / CONFIG_FILE).read_text())["train"]["lr"] == 1e-4
    history = [json.loads(ln) for ln in (run / CONFIG_HISTORY_FILE).read_text().splitlines()]
    assert len(history) == 1 and history[0]["step"] == 4
    assert history[0]["changes"] == {"train.lr": [0.002, 0.0001], "train.steps": [4, 6]}
    log = [json.loads(ln) for ln in (run / LOG_FILE).read_text().splitlines()]
    assert [r.get("event") for r in log if r["step"] == 4] == [None, "config-change"]
    after = [r for r in log if r["step"] > 4 and "lr" in r]
    assert after and all(r["lr"] <= 1e-4 for r in after)  # the new rate, cosine-decayed


def test_resuming_with_the_same_values_records_nothing(run, run_cli):
    code, _, err = run_cli("train", "vae", "--out", run, "--resume", "--steps", "4", *BASE)
    assert code == 0, err
    assert not (run / CONFIG_HISTORY_FILE).exists() and "resume at step" not in err


@pytest.mark.parametrize(
    "setting, key",
    [
        (["--set", "model.beta=0.5"], "model.beta"),
        (["--set", "model.latent_dim=3"], "model.latent_dim"),
        (["--set", "train.batch_size=8"], "train.batch_size"),
        (["--seed", "9"], "train.seed"),
    ],
)
def test_a_change_that_would_make_the_checkpoint_meaningless_is_refused(run, run_cli, setting, key):
    before = (run / CONFIG_FILE).read_text()
    code, out, err = run_cli("train", "vae", "--out", run, "--resume", *setting)
    assert code == 1 and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {key} cannot change on --resume")
    assert (run / CONFIG_FILE).read_text() == before


def test_another_data_set_is_refused_on_resume(run, run_cli):
    code, _, err = run_cli("train", "vae", "--out", run, "--resume", "--data", "mnist")
    assert code == 1 and err.strip() == "error: --data mnist cannot change on --resume: the run was trained on digits"


def test_every_resumable_key_is_a_training_key():
    names = {f"train.{k}" for k in TrainConfig.__dataclass_fields__}
    assert RESUMABLE <= names
    assert {"train.batch_size", "train.seed"}.isdisjoint(RESUMABLE)
