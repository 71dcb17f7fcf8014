"""`train.tensorboard`: event files with the loss, learning rate, gradient norm, test bits/dim and its terms and a
sample grid; a one-line hint where TensorBoard is not installed."""

import sys

import pytest

from elbolab.errors import ConfigError
from elbolab.train.api import train_run

TINY_VAE = {
    "model.net": "tiny",
    "train.batch_size": 16,
    "train.eval_every": 3,
    "train.eval_n": 16,
    "train.warmup_steps": 2,
}


def _events(folder):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (pip install 'elbolab[tensorboard]')",
    )
    events = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


@pytest.mark.parametrize(
    "kind, overrides",
    [
        ("vae", TINY_VAE),
        (
            "diffusion",
            {
                "model.unet.preset": "tiny",
                "model.T": 20,
                "model.elbo_samples": 2,
                "model.encode_steps": 4,
                "train.batch_size": 16,
                "train.eval_every": 3,
                "train.eval_n": 16,
                "train.warmup_steps": 2,
            },
        ),
    ],
)
def test_training_writes_scalars_terms_and_sample_grids(kind, overrides, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'elbolab[tensorboard]')")
    cfg, _ = train_run(
        kind, "digits", tmp_path / "run", overrides={**overrides, "train.tensorboard": "true"}, steps=7, progress=False
    )
    assert cfg.train.tensorboard
    events = _events(tmp_path / "run" / "tensorboard")
    tags = events.Tags()
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm", "train/images_per_s"):
        assert [e.step for e in events.Scalars(tag)] == list(range(1, 8)), tag
    assert [e.step for e in events.Scalars("test/bpd")] == [3, 6]  # the evaluations before the last step
    terms = {t for t in tags["scalars"] if t.startswith("test/bpd_")}
    expected = {
        "vae": {"test/bpd_reconstruction", "test/bpd_kl"},
        "diffusion": {"test/bpd_prior", "test/bpd_diffusion", "test/bpd_reconstruction"},
    }[kind]
    assert terms == expected, terms
    for e in events.Scalars("test/bpd"):  # the terms add up to the bound
        parts = sum(events.Scalars(t)[[x.step for x in events.Scalars(t)].index(e.step)].value for t in terms)
        assert parts == pytest.approx(e.value, rel=1e-4, abs=1e-4)
    lr = [e.value for e in events.Scalars("train/learning_rate")]
    assert lr[0] < lr[1] and all(v > 0 for v in lr)  # the warm-up is visible
    grids = events.Images("samples")
    assert [g.step for g in grids] == [3, 6] and grids[0].width > 8 and grids[0].height > 8
    assert grids[0].encoded_image_string.startswith(b"\x89PNG")


def test_without_tensorboard_a_one_line_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(
        ConfigError,
        match=r"^train.tensorboard needs the tensorboard package: pip install "
        r"'elbolab\[tensorboard\]'$",
    ):
        train_run(
            "vae",
            "digits",
            tmp_path / "run",
            overrides={**TINY_VAE, "train.tensorboard": "true"},
            steps=2,
            progress=False,
        )
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
