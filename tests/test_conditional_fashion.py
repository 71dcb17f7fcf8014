"""Conditional models on Fashion-MNIST through the command line (the shared copy; skipped where it is absent): a
conditional diffusion model and a conditional VAE trained for a few steps, sampled by class (with guidance) and
evaluated per class. The built-in feature net is trained on Fashion-MNIST once and cached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

K = 10  # Fashion-MNIST's classes
SKIP = ("--skip", "speed", "--skip", "interpolation", "--skip", "information", "--iwae", "0")


def train_conditional(run_cli, kind: str, out: Path, data_dir: Path, *sets: str) -> None:
    """`elbolab train KIND --data fashion-mnist --set model.conditional=true` for 20 steps at one thread."""
    common = ("--data", "fashion-mnist", "--data-dir", data_dir, "--steps", "20", "--quiet")
    keys = ("model.conditional=true", "train.threads=1", "train.eval_every=0", "train.eval_n=32", "train.batch_size=16")
    keys += sets
    code, _, err = run_cli("train", kind, "--out", out, *common, *(a for key in keys for a in ("--set", key)))
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["classes"] == K and saved["data"] == "fashion-mnist"


def per_class_eval(run_cli, run: Path, *extra: str) -> dict:
    """`elbolab eval RUN --json` on 32 test images and 20 samples (2 of each class), as the JSON object it prints."""
    code, out, err = run_cli("eval", run, "--json", "--n", "32", "--n-samples", "20", *SKIP, *extra)
    assert code == 0, err
    found = json.loads(out)
    assert found["data"] == "fashion-mnist" and found["classes"] == K
    assert found["bpd"]["total"] == pytest.approx(sum(found["bpd"]["terms"].values()))
    by_class = found["class_bounds"]  # the bound over each class's test images: their mean is the bound's total
    n, means = np.array(by_class["n"]), np.array([f["mean"] for f in by_class["bpd"]])
    assert len(n) == K and n.sum() == found["n"] == 32
    assert (n * np.nan_to_num(means)).sum() / n.sum() == pytest.approx(found["bpd"]["total"])
    accuracy = found["class_accuracy"]
    assert accuracy["n_per_class"] == 2 and len(accuracy["per_class"]) == K
    assert all(0 <= a <= 1 for a in accuracy["per_class"])
    assert accuracy["overall"] == pytest.approx(np.mean(accuracy["per_class"]))
    return found


def sampled(run_cli, run: Path, out: Path, *args: str) -> np.ndarray:
    """`elbolab sample RUN ... --out FILE.npz`, its images."""
    code, _, err = run_cli("sample", run, *args, "--out", out)
    assert code == 0, err
    return np.load(out)["images"]


def test_a_conditional_diffusion_model_on_fashion_mnist(run_cli, shared_data, tmp_path):
    run = tmp_path / "diffusion"
    train_conditional(run_cli, "diffusion", run, shared_data, "model.T=20", "model.unet.preset=tiny")
    guided = sampled(run_cli, run, tmp_path / "guided.npz", "--class", "3", "--guidance", "2", "--n", "4")
    assert guided.shape == (4, 1, 28, 28) and guided.min() >= 0 and guided.max() <= 255
    png = tmp_path / "grid.png"
    code, _, err = run_cli("sample", run, "--class", "3", "--guidance", "2", "--n", "4", "--out", png)
    assert code == 0 and png.is_file(), err
    found = per_class_eval(run_cli, run)
    assert found["unconditional"]["bpd"]["total"] > 0  # the null class bounds −log p(x) with the same weights
    code, _, err = run_cli("sample", run, "--class", "10", "--n", "2", "--out", tmp_path / "x.png")
    assert code != 0 and "--class 10 is out of range: the run's classes are 0..9" in err
    assert err.strip().count("\n") == 0


def test_a_conditional_vae_on_fashion_mnist(run_cli, shared_data, tmp_path):
    run = tmp_path / "vae"
    train_conditional(run_cli, "vae", run, shared_data, "model.net=tiny")
    rows = sampled(run_cli, run, tmp_path / "rows.npz", "--class", "1,2,7", "--n", "5")
    assert rows.shape == (15, 1, 28, 28)
    found = per_class_eval(run_cli, run)
    assert found["unconditional"] is None  # a VAE has no null class
    code, _, err = run_cli("sample", run, "--class", "1", "--guidance", "2", "--n", "2", "--out", tmp_path / "x.png")
    assert code != 0 and "--guidance is classifier-free guidance" in err
