"""The command line end to end on real digits, and bad input as one-line errors."""

import gzip
import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A VAE trained on digits for a few hundred CPU steps, through the command line."""
    from elbolab.cli import main

    run = tmp_path_factory.mktemp("runs") / "vae"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "vae",
                "--data",
                "digits",
                "--out",
                str(run),
                "--steps",
                "300",
                "--quiet",
                "--set",
                "model.net=tiny",
                "--set",
                "train.eval_every=0",
            ]
        )
    assert exc.value.code == 0
    return run


def test_train_and_eval_reach_well_below_the_uniform_baseline(vae_run, run_cli):
    code, out, _ = run_cli(
        "eval",
        vae_run,
        "--json",
        "--iwae",
        "100",
        "--skip",
        "speed",
        "--skip",
        "interpolation",
        "--skip",
        "information",
        "--n-samples",
        "64",
    )
    assert code == 0
    same_n = json.loads(run_cli("eval", vae_run, "--json", "--only-bound", "--n", "200")[1])
    assert code == 0
    result = json.loads(out)
    assert result["model"] == "vae" and result["data"] == "digits" and result["split"] == "test"
    assert result["n"] == 360 and set(result["bpd"]["terms"]) == {"reconstruction", "kl"}
    uniform = math.log2(17)
    assert result["bpd"]["total"] < uniform - 1.5, result["bpd"]
    assert result["bpd"]["ci95"] > 0
    assert result["nats"]["total"] == pytest.approx(result["bpd"]["total"] * 64 * math.log(2))
    assert result["iwae"]["n"] == 200 and same_n["n"] == 200
    assert result["iwae"]["bpd"] <= same_n["bpd"]["total"]  # the IWAE bound is tighter on the same 200 images
    assert result["samples"]["n"] == 64 and result["samples"]["laplacian_ratio"]["value"] > 0
    assert result["samples"]["fd"]["value"] > 0 and len(result["samples"]["fd"]["replicates"]) == 200
    # the run folder holds what DESIGN.md promises
    for name in ("config.json", "model.safetensors", "checkpoint.json", "metrics.json", "log.jsonl"):
        assert (vae_run / name).is_file(), name


def test_eval_prints_what_it_measured_and_only_that(vae_run, run_cli):
    code, out, err = run_cli("eval", vae_run, "--only-bound", "--n", "50", "--estimator", "mc:4")
    assert code == 0, err
    assert "n=50, estimator mc (K=4)" in out and "reconstruction" in out and "kl" in out
    assert "Fréchet" not in out and "sampling" not in out and "sharpness" not in out
    code, out, err = run_cli("eval", vae_run, "--only-bound", "--n", "20", "--estimator", "exact")
    assert code == 1 and err.strip() == "error: the vae model has no 'exact' bound; it offers mc, iwae"


def test_sample_and_interpolate_write_images(vae_run, run_cli, tmp_path):
    code, out, _ = run_cli("sample", vae_run, "--n", "16", "--out", tmp_path / "s.png")
    assert code == 0 and "16 samples" in out
    assert Image.open(tmp_path / "s.png").size[0] > 32
    code, _, _ = run_cli("sample", vae_run, "--n", "5", "--out", tmp_path / "s.npz")
    saved = np.load(tmp_path / "s.npz")
    assert saved["images"].shape == (5, 1, 8, 8) and saved["images"].max() <= 16 and int(saved["levels"]) == 17
    code, _, _ = run_cli("interpolate", vae_run, "--out", tmp_path / "i.png", "--pairs", "2", "--frames", "5")
    assert code == 0 and (tmp_path / "i.png").is_file()


def test_resume_continues_a_finished_run(vae_run, run_cli, tmp_path):
    import shutil

    run = tmp_path / "more"
    shutil.copytree(vae_run, run)
    code, out, _ = run_cli("train", "vae", "--out", run, "--resume", "--steps", "310", "--quiet")
    assert code == 0 and "step 310" in out


def test_config_file_and_set_are_saved_in_the_run(run_cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  latent_dim: 5\n  net: tiny\ntrain:\n  batch_size: 16\n")
    code, _, err = run_cli(
        "train", "vae", "--out", tmp_path / "r", "--steps", "2", "--config", cfg, "--set", "model.beta=0.5", "--quiet"
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["model"]["latent_dim"] == 5 and saved["model"]["beta"] == 0.5 and saved["train"]["batch_size"] == 16


def _mixed_folder(root):
    root.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "b.png")
    return root


def _corrupt_idx(root):
    folder = root / "mnist"
    folder.mkdir(parents=True)
    for name in (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ):
        (folder / name).write_bytes(gzip.compress(b"\x00\x00\x08\x03garbage"))
    return root


def _corrupt_pickle(root):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": "not an array"})[:20])
    return root


BAD_INPUT = {
    "missing path": lambda t: ["--data", str(t / "nowhere.npz")],
    "empty folder": lambda t: ["--data", str((t / "empty").mkdir() or t / "empty")],
    "mixed sizes": lambda t: ["--data", str(_mixed_folder(t / "mixed"))],
    "corrupt idx": lambda t: ["--data", "mnist", "--data-dir", str(_corrupt_idx(t / "d"))],
    "corrupt pickle": lambda t: ["--data", "cifar10", "--data-dir", str(_corrupt_pickle(t / "d"))],
    "unknown data set": lambda t: ["--data", "imagenet-21k"],
    "unknown --set key": lambda t: ["--set", "model.no_such_key=1"],
    "malformed --set": lambda t: ["--set", "model.beta"],
    "bad --set value": lambda t: ["--set", "train.lr=fast"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_gives_a_one_line_error(case, run_cli, tmp_path):
    code, out, err = run_cli(
        "train", "vae", "--out", tmp_path / "run", "--steps", "1", "--quiet", *BAD_INPUT[case](tmp_path)
    )
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "{tmp}/no-run"],
        ["sample", "{tmp}", "--n", "2", "--out", "{tmp}/x.png"],
        ["interpolate", "{tmp}/no-run", "--out", "{tmp}/x.png"],
    ],
)
def test_commands_on_a_folder_that_is_not_a_run(args, run_cli, tmp_path):
    code, _, err = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_the_console_script_exits_non_zero_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "elbolab.cli", "eval", str(tmp_path / "none")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:")
