"""`sample` in batches: an .npz streamed entry by entry and a folder of PNGs hold the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from elbolab.sampling import sample_batches, to_8bit, write_npz


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from elbolab.cli import main

    out = tmp_path_factory.mktemp("sample") / "vae"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "vae",
                "--out",
                str(out),
                "--steps",
                "3",
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
        )
    assert exc.value.code == 0
    return out


def test_npz_and_png_folder_hold_the_same_batched_samples(run, run_cli, tmp_path):
    for out in ("s.npz", "pngs"):
        code, text, err = run_cli(
            "sample", run, "--n", "23", "--batch-size", "5", "--seed", "2", "--out", tmp_path / out
        )
        assert code == 0 and "wrote 23 samples" in text, err
    with np.load(tmp_path / "s.npz") as saved:
        images, levels = saved["images"], int(saved["levels"])
    assert images.shape == (23, 1, 8, 8) and levels == 17 and 0 <= images.min() and images.max() <= 16
    files = sorted((tmp_path / "pngs").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(23)]
    pngs = np.stack([np.asarray(Image.open(f)) for f in files])
    assert np.array_equal(pngs, to_8bit(images, levels)[..., 0])


def test_one_batch_draws_what_a_single_call_draws(run, run_cli, tmp_path):
    from elbolab.train.run import load_run

    _, model = load_run(run)
    direct = model.sample(10, generator=torch.Generator().manual_seed(0)).numpy()
    assert run_cli("sample", run, "--n", "10", "--out", tmp_path / "s.npz")[0] == 0
    assert np.array_equal(np.load(tmp_path / "s.npz")["images"], direct)


def test_the_npz_writer_checks_the_count_and_leaves_nothing_on_failure(tmp_path):
    batches = iter([np.zeros((3, 1, 2, 2), np.uint8)])
    with pytest.raises(Exception, match="3 samples drawn, 5 expected"):
        write_npz(tmp_path / "x.npz", batches, 5, 17)
    assert list(tmp_path.iterdir()) == []


def test_batches_cover_n_exactly():
    class Model:
        device = torch.device("cpu")

        def sample(self, n, generator):
            return torch.zeros(n, 1, 2, 2, dtype=torch.uint8)

    assert [len(b) for b in sample_batches(Model(), 11, 4, 0)] == [4, 4, 3]
