"""Bad input of every kind — files, folders, arrays, config values, command-line arguments, unwritable or
full output locations: one line on stderr, exit code 1, no traceback, and the files already there untouched."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = [
    "--quiet",
    "--set",
    "model.net=tiny",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.eval_n=16",
    "--set",
    "train.batch_size=8",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished tiny VAE run on digits, and one on an unlabelled .npz."""
    from elbolab.cli import main

    root = tmp_path_factory.mktemp("runs")
    images = np.random.default_rng(0).integers(0, 17, size=(40, 8, 8), dtype=np.uint8)
    np.savez(root / "unlabelled.npz", images=images, levels=np.array(17))
    for name, data in (("vae", "digits"), ("unlabelled", str(root / "unlabelled.npz"))):
        with pytest.raises(SystemExit) as exc:
            main(["train", "vae", "--data", data, "--out", str(root / name), "--steps", "2", *TINY])
        assert exc.value.code == 0
    return root


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _folder(root: Path, sizes) -> Path:
    root.mkdir(parents=True)
    for i, side in enumerate(sizes):
        Image.fromarray(np.zeros((side, side), np.uint8)).save(root / f"{i}.png")
    return root


def _corrupt_idx(root: Path) -> Path:
    for name in (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ):
        _write(root / "mnist" / name, gzip.compress(b"\x00\x00\x08\x03garbage"))
    return root


def _corrupt_pickle(root: Path) -> Path:
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _write(root / "cifar10" / "cifar-10-batches-py" / name, pickle.dumps({b"data": "not an array"})[:20])
    return root


def _copy_run(runs: Path, t: Path, damage=None) -> Path:
    run = t / "run"
    shutil.copytree(runs / "vae", run)
    if damage:
        damage(run)
    return run


def _train(*extra):
    return lambda t, r: ["train", "vae", "--out", str(t / "out"), "--steps", "1", *TINY, *extra]


# kind -> (arguments given the test's folder t and the runs r, a fragment of the expected message)
CASES = {
    # files and folders as data
    "missing data path": (_train("--data", "{t}/nowhere.npz"), "nowhere.npz: no such file or folder"),
    "unknown data set name": (_train("--data", "imagenet-21k"), "unknown data set 'imagenet-21k'"),
    "empty image folder": (lambda t, r: _train("--data", str((t / "e").mkdir() or t / "e"))(t, r), "no images"),
    "images of mixed sizes": (lambda t, r: _train("--data", str(_folder(t / "m", [8, 9, 8])))(t, r), "is 9×9 but"),
    "corrupt PNG": (
        lambda t, r: _train("--data", str(_write(_folder(t / "f", [8, 8]) / "c.png", b"\x89PNG junk").parent))(t, r),
        "cannot read the image",
    ),
    "corrupt MNIST idx": (
        lambda t, r: _train("--data", "mnist", "--data-dir", str(_corrupt_idx(t / "d")))(t, r),
        "mnist",
    ),
    "corrupt CIFAR pickle": (
        lambda t, r: _train("--data", "cifar10", "--data-dir", str(_corrupt_pickle(t / "d")))(t, r),
        "truncated or corrupt",
    ),
    # arrays
    ".npz that is not a zip": (
        lambda t, r: _train("--data", str(_write(t / "x.npz", b"PK-not-really")))(t, r),
        "not a readable .npz file (not a zip archive",
    ),
    ".npz of floats": (
        lambda t, r: _train("--data", str(_npz(t / "f.npz", images=np.ones((9, 8, 8)))))(t, r),
        "store integer levels",
    ),
    ".npz with a 2-D array": (
        lambda t, r: _train("--data", str(_npz(t / "s.npz", images=np.ones((9, 8), np.uint8))))(t, r),
        "expected [N, H, W]",
    ),
    ".npz with pickled objects": (
        lambda t, r: _train("--data", str(_npz(t / "o.npz", images=np.array([{"a": 1}] * 4, dtype=object))))(t, r),
        "npz",
    ),
    ".npz values above its levels": (
        lambda t, r: _train(
            "--data", str(_npz(t / "l.npz", images=np.full((9, 8, 8), 20, np.uint8), levels=np.array(17)))
        )(t, r),
        "outside 0..16",
    ),
    # config values
    "unknown --set key (typo)": (_train("--set", "train.lrr=0.1"), "did you mean 'train.lr'?"),
    "unknown section": (_train("--set", "trian.lr=0.1"), "did you mean 'train.lr'?"),
    "malformed --set": (_train("--set", "model.beta"), "--set expects key=value"),
    "--set without a value": (_train("--set", "train.lr="), "no value given"),
    "--set of the wrong type": (_train("--set", "train.lr=fast"), "train.lr: cannot read 'fast'; allowed: a finite"),
    "--set NaN": (_train("--set", "train.lr=nan"), "train.lr: cannot read 'nan'"),
    "--set out of range": (_train("--set", "train.ema_decay=1.5"), "train.ema_decay=1.5 is out of range"),
    "--set not among the choices": (_train("--set", "train.precision=fp8"), "choose one of fp32, bf16"),
    "--set given twice": (_train("--set", "train.lr=1", "--set", "train.lr=2"), "given twice"),
    "a model config that builds no model": (
        lambda t, r: ["train", "vae", "--out", str(t / "out"), "--steps", "1", "--set", "model.net=huge"],
        "unknown network size 'huge'",
    ),
    "missing config file": (_train("--config", "{t}/none.yaml"), "config file not found"),
    "unparsable config file": (
        lambda t, r: _train("--config", str(_write(t / "c.yaml", b"a: [1,")))(t, r),
        "cannot parse config",
    ),
    "config file that is a list": (
        lambda t, r: _train("--config", str(_write(t / "c.json", b"[1, 2]")))(t, r),
        "must hold a mapping",
    ),
    # command-line arguments
    "unknown model kind": (
        lambda t, r: ["train", "gan", "--out", str(t / "o")],
        "'gan' is not one of 'vae', 'diffusion'",
    ),
    "--steps 0": (_train("--steps", "0"), "--steps 0: must be at least 1"),
    "--steps not a number": (_train("--steps", "many"), "'many' is not a valid integer"),
    "unknown option": (_train("--learning-rate", "1"), "No such option '--learning-rate'"),
    "eval --n 0": (lambda t, r: ["eval", str(r / "vae"), "--n", "0"], "--n (0) must be at least 1"),
    "sample --batch-size 0": (
        lambda t, r: ["sample", str(r / "vae"), "--out", str(t / "s.npz"), "--batch-size", "0"],
        "must be at least 1",
    ),
    "sample with a VAE sampler": (
        lambda t, r: ["sample", str(r / "vae"), "--out", str(t / "s.npz"), "--sampler", "ddim"],
        "the vae model has no sampler 'ddim'; choose one of decoder",
    ),
    "compare --budget 0": (
        lambda t, r: ["compare", "--out", str(t / "c"), "--budget", "0"],
        "must be a positive number",
    ),
    # run folders
    "eval on a folder that is not a run": (lambda t, r: ["eval", str(t)], "not an elbolab run"),
    "resume with nothing to resume": (_train("--resume"), "nothing to resume"),
    "train into an existing run": (
        lambda t, r: ["train", "vae", "--out", str(r / "vae"), *TINY],
        "already holds a run",
    ),
    "resume with a changed model": (
        lambda t, r: ["train", "vae", "--out", str(_copy_run(r, t)), "--resume", "--set", "model.beta=2"],
        "model.beta cannot change on --resume",
    ),
    "eval with damaged weights": (
        lambda t, r: [
            "eval",
            str(_copy_run(r, t, lambda run: _write(run / "model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"))),
        ],
        "corrupt",
    ),
    "eval with a corrupt run config": (
        lambda t, r: ["eval", str(_copy_run(r, t, lambda run: _write(run / "config.json", b'{"kind": ')))],
        "corrupt run config",
    ),
    "compare over runs on other data": (
        lambda t, r: (
            ["compare", "--data", "digits", "--out", str(t / "c"), "--budget", "1"]
            if shutil.copytree(r / "unlabelled", t / "c" / "runs" / "vae")
            else []
        ),
        "holds a run on",
    ),
    # labels the built-in feature network needs
    "eval quality on unlabelled data": (lambda t, r: ["eval", str(r / "unlabelled")], "has no labels"),
    "compare on unlabelled data": (
        lambda t, r: ["compare", "--data", str(r / "unlabelled.npz"), "--out", str(t / "c")],
        "has no labels",
    ),
    # unwritable or full output locations
    "output under a file": (
        lambda t, r: ["train", "vae", "--out", str(_write(t / "file", b"x") / "run")],
        "is a file, so no folder can be made there",
    ),
    "output in a read-only file system": (
        lambda t, r: ["train", "vae", "--out", "/proc/elbolab-run"],
        "cannot write in /proc",
    ),
    "sample to /dev/full": (
        lambda t, r: ["sample", str(r / "vae"), "--out", "/dev/full"],
        "exists and is not a regular file",
    ),
    "sample into a missing folder": (
        lambda t, r: ["sample", str(r / "vae"), "--out", str(t / "no" / "s.png")],
        "does not exist",
    ),
    "sample to an unknown format": (
        lambda t, r: ["sample", str(r / "vae"), "--out", str(t / "s.gif")],
        "write .png or .npz",
    ),
}


def _edit_config(runs: Path, t: Path, **fields) -> Path:
    """A copy of the finished run with fields of its config.json replaced (raw bytes where given as bytes)."""
    run = _copy_run(runs, t)
    raw = fields.pop("raw", None)
    if raw is not None:
        _write(run / "config.json", raw)
    else:
        config = json.loads((run / "config.json").read_text())
        config.update(fields)
        _write(run / "config.json", json.dumps(config).encode())
    return run


def _not_a_run(t: Path) -> Path:
    _write(t / "mine" / "thesis.tex", b"\\documentclass{article}")
    return t / "mine"


#: settings out of their range, refused where they are defined, before the run folder exists (rc 1, nothing written)
SETTINGS = {
    "β negative": (_train("--set", "model.beta=-1"), "model.beta=-1.0 is out of range"),
    "latent size 0": (_train("--set", "model.latent_dim=0"), "model.latent_dim=0 is out of range"),
    "latent size negative": (_train("--set", "model.latent_dim=-1"), "model.latent_dim=-1 is out of range"),
    "spatial latent channels 0": (
        _train("--set", "model.latent=spatial", "--set", "model.latent_channels=0"),
        "model.latent_channels=0 is out of range",
    ),
    "free bits negative": (_train("--set", "model.free_bits=-1"), "model.free_bits=-1.0 is out of range"),
    "KL warm-up negative": (_train("--set", "model.kl_warmup_steps=-5"), "model.kl_warmup_steps=-5 is out of range"),
    "threads 100000": (_train("--set", "train.threads=100000"), "train.threads=100000 is out of range"),
    "train.device cuda:abc": (_train("--set", "train.device=cuda:abc"), "train.device='cuda:abc' is out of range"),
    "train --device tpu": (_train("--device", "tpu"), "device 'tpu': choose auto, cpu, cuda or cuda:N"),
    "batch size beyond memory": (
        lambda t, r: ["train", "vae", "--out", str(t / "out"), "--set", "train.batch_size=100000000"],
        "lower train.batch_size",
    ),
    "diffusion MC draws 0": (
        lambda t, r: ["train", "diffusion", "--out", str(t / "out"), "--steps", "1", "--set", "model.elbo_samples=0"],
        "model.elbo_samples=0 is out of range",
    ),
    "eval --device tpu": (lambda t, r: ["eval", str(r / "vae"), "--device", "tpu"], "device 'tpu'"),
    "sample --device cuda:abc": (
        lambda t, r: ["sample", str(r / "vae"), "--out", str(t / "s.png"), "--device", "cuda:abc"],
        "device 'cuda:abc'",
    ),
    "sample --n beyond a PNG": (
        lambda t, r: ["sample", str(r / "vae"), "--n", "1000000000", "--out", str(t / "s.png")],
        "more than image readers open",
    ),
    "sample --n beyond the disk": (
        lambda t, r: ["sample", str(r / "vae"), "--n", "1000000000000000", "--out", str(t / "s.npz")],
        "MiB free on that disk",
    ),
    "interpolate --frames beyond a PNG": (
        lambda t, r: ["interpolate", str(r / "vae"), "--frames", "100000000", "--out", str(t / "i.png")],
        "more than image readers open",
    ),
    "compare --budget inf": (
        lambda t, r: ["compare", "--out", str(t / "c"), "--budget", "inf"],
        "write a number with its unit",
    ),
    "compare --budget nan": (
        lambda t, r: ["compare", "--out", str(t / "c"), "--budget", "nan"],
        "write a number with its unit",
    ),
}

#: run folders that are not runs, or runs that do not fit the command
FOLDERS = {
    "--out ''": (lambda t, r: ["train", "vae", "--out", "", "--steps", "1", *TINY], "--out '': give a run folder"),
    "--out a folder of the user's files": (
        lambda t, r: ["train", "vae", "--out", str(_not_a_run(t)), "--steps", "1", *TINY],
        "not empty and not an elbolab run",
    ),
    "--resume in a folder of the user's files": (
        lambda t, r: ["train", "vae", "--out", str(_not_a_run(t)), "--resume", *TINY],
        "not empty and not an elbolab run",
    ),
    "a corrupt run marker": (
        lambda t, r: [
            "train",
            "vae",
            "--out",
            str(_copy_run(r, t, lambda run: _write(run / "elbolab-run.json", b'{"kind": "other"}'))),
            "--resume",
            *TINY,
        ],
        "elbolab-run.json: kind must be 'elbolab-run'",
    ),
}

#: damaged or edited files of a run: one line naming the file and the field
FILES = {
    "config.json not UTF-8": (
        lambda t, r: ["eval", str(_edit_config(r, t, raw=b'{"kind": "vae\xff"}'))],
        "config.json: corrupt run config (not UTF-8",
    ),
    "config.json levels a string": (lambda t, r: ["eval", str(_edit_config(r, t, levels="abc"))], "levels must be"),
    "config.json shape a number": (lambda t, r: ["eval", str(_edit_config(r, t, shape=5))], "shape must be a list"),
    "config.json model a list": (lambda t, r: ["eval", str(_edit_config(r, t, model=[]))], "model must be a JSON"),
    "config.json kind unknown": (lambda t, r: ["eval", str(_edit_config(r, t, kind="gan"))], "kind must be one of"),
    "config.json NaN": (
        lambda t, r: ["eval", str(_edit_config(r, t, raw=b'{"kind": "vae", "levels": NaN}'))],
        "non-finite number NaN",
    ),
    "config.json a list": (lambda t, r: ["eval", str(_edit_config(r, t, raw=b"[1]"))], "must hold a JSON object"),
    "config.json levels 17 → 16": (
        lambda t, r: ["eval", str(_edit_config(r, t, levels=16))],
        "levels is 16 but the data digits has 17 levels",
    ),
    "config.json levels 17 → 1000 on resume": (
        lambda t, r: ["train", "vae", "--out", str(_edit_config(r, t, levels=1000)), "--resume", *TINY],
        "levels is 1000 but the data digits has 17 levels",
    ),
    "config.json train value of the wrong type": (
        lambda t, r: [
            "eval",
            str(_edit_config(r, t, train={**json.loads((r / "vae" / "config.json").read_text())["train"], "lr": []})),
        ],
        "config.json: train.lr",
    ),
}


def _edit_metrics(runs: Path, t: Path, raw: bytes | None = None, **fields) -> Path:
    """A copy of the finished run with its metrics.json replaced by `raw` or with `fields` changed."""
    run = _copy_run(runs, t)
    metrics = json.loads((run / "metrics.json").read_text())
    _write(run / "metrics.json", raw if raw is not None else json.dumps({**metrics, **fields}).encode())
    return run


#: a diffusers folder (config.json and scheduler_config.json side by side) elbolab's checks pass, before any weights
UNET = {"_class_name": "UNet2DModel", "in_channels": 1, "out_channels": 1, "sample_size": 8}
SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 20, "beta_schedule": "linear"}


def _diffusers(t: Path, unet: dict | bytes = UNET, scheduler: dict | bytes = SCHEDULER) -> list[str]:
    """`eval --diffusers` on a folder holding these two configs (raw bytes where given as bytes)."""
    for name, content in (("config.json", unet), ("scheduler_config.json", scheduler)):
        _write(t / "hf" / name, content if isinstance(content, bytes) else json.dumps(content).encode())
    return ["eval", "--diffusers", str(t / "hf"), "--data", "digits", "--only-bound", "--n", "4"]


#: metrics.json of a finished run (read by `report`) and the configs of a diffusers folder: one line naming the file
#: and the field
READ_FILES = {
    "metrics.json not UTF-8": (
        lambda t, r: ["report", str(_edit_metrics(r, t, raw=b'{"step": "\xff"}')), "--out", str(t / "rep")],
        "metrics.json: corrupt metrics (not UTF-8",
    ),
    "metrics.json step a string": (
        lambda t, r: ["report", str(_edit_metrics(r, t, step="abc")), "--out", str(t / "rep")],
        'metrics.json: step must be an integer ≥ 0, not "abc"',
    ),
    "metrics.json train_seconds NaN": (
        lambda t, r: [
            "report",
            str(_edit_metrics(r, t, raw=b'{"step": 2, "train_seconds": NaN}')),
            "--out",
            str(t / "rep"),
        ],
        "metrics.json: corrupt metrics (non-finite number NaN)",
    ),
    "metrics.json a list": (
        lambda t, r: ["report", str(_edit_metrics(r, t, raw=b"[2]")), "--out", str(t / "rep")],
        "metrics.json: must hold a JSON object, not list",
    ),
    "metrics.json without train_seconds": (
        lambda t, r: ["report", str(_edit_metrics(r, t, raw=b'{"step": 2}')), "--out", str(t / "rep")],
        "metrics.json: is missing the key 'train_seconds'",
    ),
    "diffusers config.json not UTF-8": (
        lambda t, r: _diffusers(t, unet=b'{"_class_name": "UNet2DModel\xff"}'),
        "config.json: corrupt diffusers UNet config (not UTF-8",
    ),
    "diffusers config.json a list": (lambda t, r: _diffusers(t, unet=b"[1, 2]"), "must hold a JSON object, not list"),
    "diffusers in_channels a string": (
        lambda t, r: _diffusers(t, unet={**UNET, "in_channels": "one"}),
        'config.json: in_channels must be a positive integer, not "one"',
    ),
    "diffusers sample_size a list of three": (
        lambda t, r: _diffusers(t, unet={**UNET, "sample_size": [8, 8, 8]}),
        "config.json: sample_size must be a positive integer or a list of two",
    ),
    "diffusers scheduler NaN": (
        lambda t, r: _diffusers(
            t, scheduler=b'{"_class_name": "DDPMScheduler", "num_train_timesteps": 20, "beta_end": NaN}'
        ),
        "scheduler_config.json: corrupt diffusers scheduler config (non-finite number NaN)",
    ),
    "diffusers num_train_timesteps a list": (
        lambda t, r: _diffusers(t, scheduler={**SCHEDULER, "num_train_timesteps": [20]}),
        "scheduler_config.json: num_train_timesteps must be a positive integer, not [20]",
    ),
    "diffusers trained_betas holding a string": (
        lambda t, r: _diffusers(t, scheduler={**SCHEDULER, "trained_betas": [0.1, "x"]}),
        "scheduler_config.json: trained_betas must be a list of finite numbers or null",
    ),
    "diffusers thresholding a string": (
        lambda t, r: _diffusers(t, scheduler={**SCHEDULER, "thresholding": "yes"}),
        "scheduler_config.json: thresholding must be true or false",
    ),
    # what the model's capabilities do not offer
    "eval --proposal importance on a VAE": (
        lambda t, r: ["eval", str(r / "vae"), "--proposal", "importance"],
        "the vae model's bound has no 'importance' proposal; it offers uniform",
    ),
}

CASES.update(SETTINGS)
CASES.update(FOLDERS)
CASES.update(FILES)
CASES.update(READ_FILES)


def _snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_there_are_at_least_25_kinds():
    assert len(CASES) >= 25


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_is_one_line_exit_1_and_leaves_files_intact(kind, runs, run_cli, tmp_path):
    make_args, fragment = CASES[kind]
    args = [a.replace("{t}", str(tmp_path)) for a in make_args(tmp_path, runs)]
    before = _snapshot(tmp_path, runs)
    code, out, err = run_cli(*args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err + out
    after = _snapshot(tmp_path, runs)
    assert {k: v for k, v in after.items() if k in before} == before, "an earlier file changed"
    assert not (tmp_path / "out").exists(), "a refused run left a folder behind"


def test_a_full_disk_is_refused_before_training(tmp_path, run_cli, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda _p: usage(10**9, 10**9 - 2**20, 2**20))
    code, _, err = run_cli("train", "vae", "--out", tmp_path / "run", "--steps", "1", *TINY)
    assert code == 1 and "only 1.0 MiB free on that disk; a checkpoint needs about" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args", [["train", "vae", "--out", "{t}/r", "--set", "train.steps=-1"], ["eval", "{t}/missing-run"]]
)
def test_the_console_script_gives_one_line_and_exit_1(tmp_path, args):
    proc = subprocess.run(
        [sys.executable, "-m", "elbolab.cli", *[a.format(t=tmp_path) for a in args]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")


def test_json_to_a_full_device_is_one_line(runs):
    """stdout on /dev/full: the write fails with ENOSPC; still one line and exit 1."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "elbolab.cli", "eval", str(runs / "vae"), "--json", "--only-bound", "--n", "4"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "error: No space left on device"
    assert json.loads((runs / "vae" / "metrics.json").read_text())["step"] == 2


def test_too_few_test_images_for_an_interval_are_said_so_not_nan(run_cli, tmp_path):
    """Two images (one for training, one for the test split): no 95% interval exists, and the lines say so."""
    images = np.random.default_rng(0).integers(0, 17, size=(2, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "two.npz", images=images, levels=np.array(17))
    run = tmp_path / "run"
    tiny = ["--quiet", "--set", "model.net=tiny", "--set", "train.eval_every=0", "--set", "train.batch_size=2"]
    code, out, err = run_cli("train", "vae", "--data", tmp_path / "two.npz", "--out", run, "--steps", "2", *tiny)
    assert code == 0, err
    assert "± n/a (1 image) bits/dim (EMA weights, 1 test image)" in out and "nan" not in out.lower()
    assert json.loads((run / "metrics.json").read_text())["test_bpd_ci95"] is None  # JSON has no NaN
    code, out, err = run_cli("eval", run, "--features", "none", "--only-bound", "--iwae", "2")
    assert code == 0, err
    assert out.count("± n/a (1 image) bits/dim") == 2 and "nan" not in out.lower(), out  # the bound and IWAE


def test_features_none_evaluates_unlabelled_data_without_quality(runs, run_cli):
    code, out, err = run_cli(
        "eval",
        runs / "unlabelled",
        "--features",
        "none",
        "--json",
        "--skip",
        "speed",
        "--skip",
        "information",
        "--n",
        "8",
        "--iwae",
        "0",
        "--n-samples",
        "8",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["samples"]["fd"] is None and result["interpolation"] is None and result["bpd"]["total"] > 0
