"""The built-in feature network (trained, cached, accurate) and the Inception path with its fallback."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from elbolab.data import ImageData, load_data
from elbolab.errors import DataError
from elbolab.evaluate import features as feat


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", "train"), load_data("digits", "test")


def refuse_training(*args, **kwargs):
    raise AssertionError("the cached feature network should have been reused")


def test_digits_feature_net_is_accurate(digits, tmp_path_factory):
    net = feat.load_or_train_classifier(*digits, tmp_path_factory.getbasetemp() / "digits-features")
    assert net.accuracy >= 0.90
    assert net.name == "elbolab-cnn/digits" and net.dim == net.min_samples == 128


def test_trains_into_the_cache_then_reuses_it(digits, tmp_path, monkeypatch):
    trained = feat.load_or_train_classifier(*digits, tmp_path, steps=30, seed=1)
    weights, meta = tmp_path / "digits-1x8x8-seed1.safetensors", tmp_path / "digits-1x8x8-seed1.json"
    assert not trained.from_cache and weights.is_file() and meta.is_file()
    info = json.loads(meta.read_text())
    assert info["data"] == "digits" and info["shape"] == [1, 8, 8] and info["seed"] == 1 and info["steps"] == 30
    assert 0.0 <= info["test_accuracy"] <= 1.0 and info["feature_scale"] > 0
    monkeypatch.setattr(feat, "train_classifier", refuse_training)
    cached = feat.load_or_train_classifier(*digits, tmp_path, steps=30, seed=1)
    assert cached.from_cache and cached.accuracy == trained.accuracy
    images = digits[1].images[:50]
    torch.testing.assert_close(cached(images, 17), trained(images, 17), rtol=1e-6, atol=1e-6)


def test_changed_training_data_retrains(digits, tmp_path):
    train, test = digits
    feat.load_or_train_classifier(train, test, tmp_path, steps=10)
    smaller = ImageData("digits", train.images[:500], train.levels, train.labels[:500])
    again = feat.load_or_train_classifier(smaller, test, tmp_path, steps=10)
    assert not again.from_cache and again.info["n_train"] == 500


def test_training_is_seeded_and_leaves_the_global_rng_alone(digits):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    net_a, info_a = feat.train_classifier(*digits, steps=5, seed=3)
    after = torch.rand(1)
    net_b, info_b = feat.train_classifier(*digits, steps=5, seed=3)
    assert torch.equal(before, after) and info_a["test_accuracy"] == info_b["test_accuracy"]
    torch.testing.assert_close(net_a.state_dict(), net_b.state_dict())


def test_feature_net_handles_every_supported_shape():
    for shape in [(1, 8, 8), (1, 28, 28), (3, 32, 32)]:
        net = feat.ClassifierNet(shape, classes=10, width=8, dim=16)
        x = torch.zeros(2, *shape)
        assert net.features(x).shape == (2, 16) and net(x).shape == (2, 10)


def test_unlabelled_data_and_wrong_shapes_give_clear_errors(digits, tmp_path):
    train, test = digits
    with pytest.raises(DataError, match="labelled"):
        feat.train_classifier(ImageData("blank", train.images, 17), test, steps=1)
    net = feat.load_or_train_classifier(train, test, tmp_path, steps=2)
    with pytest.raises(DataError, match="shape"):
        net(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 256)


# ---- Inception-v3 through torch-fidelity


def fake_fidelity(monkeypatch, extractor_class) -> None:
    """Install a stand-in `torch_fidelity.feature_extractor_inceptionv3` module."""
    package = types.ModuleType("torch_fidelity")
    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = extractor_class
    monkeypatch.setitem(sys.modules, "torch_fidelity", package)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)


def test_missing_torch_fidelity_gives_one_line_reason_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails as if not installed
    with pytest.raises(feat.FeatureNetUnavailable, match=r"torch-fidelity is not installed.*elbolab\[fid\]") as err:
        feat.inception_features()
    assert "\n" not in str(err.value)
    monkeypatch.setattr(feat, "builtin_features", lambda data, data_dir, cache_dir: ("builtin", data, cache_dir))
    chosen, reason = feat.select_features("digits", cache_dir=tmp_path)
    assert chosen == ("builtin", "digits", tmp_path) and "torch-fidelity is not installed" in reason
    with pytest.raises(feat.FeatureNetUnavailable):
        feat.select_features("digits", kind="inception")


def test_unreachable_inception_weights_give_one_line_reason(monkeypatch, tmp_path):
    class Offline:
        def __init__(self, name, features_list, feature_extractor_weights_path=None):
            raise OSError("<urlopen error [Errno -3] Temporary failure\n in name resolution>")

    fake_fidelity(monkeypatch, Offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # nothing cached
    with pytest.raises(feat.FeatureNetUnavailable, match="weights could not be loaded.*OSError") as err:
        feat.inception_features()
    assert "\n" not in str(err.value)
    with pytest.raises(feat.FeatureNetUnavailable, match="downloading is off"):
        feat.inception_features(allow_download=False)
    with pytest.raises(feat.FeatureNetUnavailable, match="not found"):
        feat.inception_features(weights_path=tmp_path / "missing.pth")


def test_inception_path_feeds_uint8_rgb_and_returns_float64(monkeypatch, tmp_path):
    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self, name, features_list, feature_extractor_weights_path=None):
            super().__init__()
            seen.update(name=name, features=features_list, path=feature_extractor_weights_path)

        def forward(self, x):
            seen.update(dtype=x.dtype, shape=tuple(x.shape), top=int(x.max()))
            return (x.float().mean((2, 3)).repeat(1, 683)[:, :2048],)

    fake_fidelity(monkeypatch, Recorder)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / feat.INCEPTION_WEIGHTS).write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    inception = feat.inception_features()
    images = torch.tensor([[[[0, 16]]], [[[16, 8]]]], dtype=torch.uint8)  # 17 levels, grey
    out = inception(images, 17)
    assert seen["features"] == ["2048"] and seen["path"].endswith(feat.INCEPTION_WEIGHTS)
    assert seen["dtype"] == torch.uint8 and seen["shape"] == (2, 3, 1, 2) and seen["top"] == 255
    assert out.dtype == torch.float64 and out.shape == (2, 2048) and inception.min_samples == 2000
    chosen, reason = feat.select_features("digits")
    assert chosen.name.startswith("inception") and reason is None
