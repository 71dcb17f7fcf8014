"""Feature networks for sample quality: Inception-v3 (torch-fidelity) or a small CNN trained per data set.

Every extractor maps uint8 levels [N, C, H, W] (+ the number of levels) to float64 features
[N, dim] and carries `name`, `dim` and `min_samples` (the sample count below which
Fréchet distance and friends are visibly biased).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from elbolab.atomic import atomic_write_bytes, atomic_write_text
from elbolab.data.base import ImageData, default_data_dir, load_data, to_model
from elbolab.errors import DataError, ElbolabError

CACHE_FORMAT = 2
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_MIN_SAMPLES = 2000


class FeatureNetUnavailable(ElbolabError):
    """A feature network cannot be used here; the message is one line saying why."""


class FeatureExtractor(Protocol):
    """What the quality metrics need from a feature network."""

    @property
    def name(self) -> str:
        """The network's name in reports."""
        ...

    @property
    def dim(self) -> int:
        """The length of one image's feature vector."""
        ...

    @property
    def min_samples(self) -> int:
        """The fewest images whose Fréchet distance is not biased by a rank-deficient covariance."""
        ...

    def __call__(self, images: Tensor, levels: int) -> Tensor: ...


def check_levels(images: Tensor, levels: int) -> None:
    """A clear error unless `images` are uint8 levels [N, C, H, W] below `levels`."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DataError(f"expected uint8 levels of shape [N, C, H, W], got {images.dtype} {list(images.shape)}")
    if images.numel() and int(images.max()) >= levels:
        raise DataError(f"image values reach {int(images.max())}, beyond the {levels} levels declared")


# ---- the built-in classifier ---------------------------------------------------------------


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3×3 convolution (strided to downsample), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class ClassifierNet(nn.Module):
    """Small CNN classifier whose `dim`-wide penultimate layer gives the features.

    Three 3×3 conv layers, strided rather than max-pooled (cheap on CPU): images of 16 pixels or more
    are halved twice, smaller ones once; then average-pooled to 4×4 and a linear layer.
    """

    def __init__(self, shape: tuple[int, int, int], classes: int, width: int = 32, dim: int = 128) -> None:
        super().__init__()
        c, h, w = shape
        first_stride = 2 if min(h, w) >= 16 else 1
        self.dim = dim
        self.body = nn.Sequential(
            _conv_block(c, width, first_stride),
            _conv_block(width, 2 * width, 2),
            _conv_block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, classes))

    def features(self, x: Tensor) -> Tensor:
        """The penultimate layer's activations, [B, dim]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, [B, classes]."""
        return self.head(self.body(x))


def default_steps(n_train: int, batch_size: int) -> int:
    """About 8 epochs, clamped to 300..800 optimiser steps (a few seconds on digits, a minute on MNIST)."""
    return int(min(800, max(300, math.ceil(8 * n_train / batch_size))))


def fingerprint(data: ImageData) -> str:
    """A short SHA-256 of the images and labels, to tell cached nets of different data apart."""
    digest = hashlib.sha256(data.images.contiguous().numpy().tobytes())
    if data.labels is not None:
        digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _require_labels(data: ImageData) -> Tensor:
    """The labels of `data`, or a clear error when it has none."""
    if data.labels is None:
        raise DataError(f"{data.name}: the built-in feature network is a classifier and needs labelled data")
    return data.labels


def _fit(net: ClassifierNet, train: ImageData, steps: int, batch_size: int, generator: torch.Generator) -> None:
    """Adam with a one-cycle learning rate on cross-entropy, minibatches drawn without replacement."""
    x_all, y_all = train.model_range(), _require_labels(train)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    order, cursor = torch.randperm(len(train), generator=generator), 0
    net.train()
    for _ in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(train), generator=generator), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    net.eval()


@torch.no_grad()
def accuracy(net: ClassifierNet, data: ImageData, batch_size: int = 1000) -> float:
    """Fraction of `data` the classifier labels correctly."""
    labels, correct = _require_labels(data), 0
    net.eval()
    for start in range(0, len(data), batch_size):
        logits = net(data.model_range(slice(start, start + batch_size)))
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / len(data)


@torch.no_grad()
def feature_rms(net: ClassifierNet, data: ImageData, batch_size: int = 1000) -> float:
    """Root-mean-square penultimate activation over `data`: the scale that makes features O(1)."""
    net.eval()
    total = sum(
        net.features(data.model_range(slice(i, i + batch_size))).double().pow(2).sum().item()
        for i in range(0, len(data), batch_size)
    )
    return math.sqrt(total / (len(data) * net.dim))


def train_classifier(
    train: ImageData,
    test: ImageData,
    *,
    steps: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    width: int = 32,
    dim: int = 128,
) -> tuple[ClassifierNet, dict[str, Any]]:
    """Train the feature classifier on `train`; return it with its metadata (test accuracy included)."""
    labels = _require_labels(train)
    if test.shape != train.shape:
        raise DataError(f"train images are {train.shape} but test images are {test.shape}")
    steps = default_steps(len(train), batch_size) if steps is None else int(steps)
    classes = int(max(int(labels.max()), int(_require_labels(test).max()))) + 1
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ClassifierNet(train.shape, classes, width, dim)
        _fit(net, train, steps, min(batch_size, len(train)), torch.Generator().manual_seed(seed))
    info = {
        "format": CACHE_FORMAT,
        "data": train.name,
        "shape": list(train.shape),
        "levels": train.levels,
        "classes": classes,
        "width": width,
        "dim": dim,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "n_train": len(train),
        "n_test": len(test),
        "train_fingerprint": fingerprint(train),
        "test_accuracy": accuracy(net, test),
        "feature_scale": feature_rms(net, train),
        "train_seconds": round(time.perf_counter() - start, 3),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    return net, info


@dataclass(eq=False)
class ClassifierFeatures:
    """The built-in feature extractor: penultimate activations of a classifier trained on the data set."""

    net: ClassifierNet
    info: dict[str, Any]
    from_cache: bool = False
    batch_size: int = 1000
    min_samples: int = field(init=False)

    def __post_init__(self) -> None:
        self.min_samples = self.dim

    @property
    def name(self) -> str:
        """The feature network's name in reports: elbolab-cnn/DATA."""
        return f"elbolab-cnn/{self.info['data']}"

    @property
    def dim(self) -> int:
        """The length of one image's feature vector."""
        return int(self.info["dim"])

    @property
    def accuracy(self) -> float:
        """The classifier's accuracy on the held-out test split."""
        return float(self.info["test_accuracy"])

    @torch.no_grad()
    def __call__(self, images: Tensor, levels: int) -> Tensor:
        """Penultimate-layer features of uint8 level images over their training-set RMS, float64 [N, dim].

        Unit scale keeps KID's kernel (x·y/d + 1)³ in the range it was designed for.
        """
        check_levels(images, levels)
        if tuple(images.shape[1:]) != tuple(self.info["shape"]):
            raise DataError(f"{self.name} takes images of shape {self.info['shape']}, got {list(images.shape[1:])}")
        self.net.eval()
        chunks = [
            self.net.features(to_model(images[i : i + self.batch_size], levels))
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(chunks).double() / self.info["feature_scale"]

    @torch.no_grad()
    def class_probabilities(self, images: Tensor, levels: int) -> Tensor:
        """The classifier's softmax over its classes for uint8 level images, float64 [N, classes]."""
        check_levels(images, levels)
        self.net.eval()
        chunks = [
            self.net(to_model(images[i : i + self.batch_size], levels)) for i in range(0, len(images), self.batch_size)
        ]
        return torch.softmax(torch.cat(chunks).double(), -1)


def _cache_paths(cache_dir: Path, train: ImageData, seed: int) -> tuple[Path, Path]:
    """Weights and metadata file names for one data set, shape and seed."""
    c, h, w = train.shape
    stem = f"{train.name}-{c}x{h}x{w}-seed{seed}"
    return cache_dir / f"{stem}.safetensors", cache_dir / f"{stem}.json"


def _load_cached(weights: Path, meta: Path, expected: dict[str, Any]) -> ClassifierFeatures | None:
    """The cached classifier if its metadata matches `expected`, else None."""
    if not (weights.exists() and meta.exists()):
        return None
    from safetensors.torch import load_file

    info = json.loads(meta.read_text())
    if any(info.get(key) != value for key, value in expected.items()):
        return None
    net = ClassifierNet(tuple(info["shape"]), info["classes"], info["width"], info["dim"])
    net.load_state_dict(load_file(str(weights)))
    return ClassifierFeatures(net.eval(), info, from_cache=True)


def _save(net: ClassifierNet, info: dict[str, Any], weights: Path, meta: Path) -> None:
    """Write weights (safetensors) and metadata (JSON); warn instead of failing on a read-only folder."""
    from safetensors.torch import save

    try:
        weights.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(weights, save({k: v.contiguous() for k, v in net.state_dict().items()}))
        atomic_write_text(meta, json.dumps(info, indent=2) + "\n")
    except (OSError, ElbolabError) as err:
        warnings.warn(f"could not cache the feature network in {weights.parent}: {err}", stacklevel=3)


def load_or_train_classifier(
    train: ImageData,
    test: ImageData,
    cache_dir: str | Path | None = None,
    *,
    steps: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    retrain: bool = False,
) -> ClassifierFeatures:
    """The built-in feature network for this data: from the cache folder, or trained and cached there."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_data_dir() / "features"
    weights, meta = _cache_paths(cache_dir, train, seed)
    expected = {
        "format": CACHE_FORMAT,
        "data": train.name,
        "shape": list(train.shape),
        "seed": seed,
        "train_fingerprint": fingerprint(train),
    }
    if steps is not None:
        expected["steps"] = int(steps)
    cached = None if retrain else _load_cached(weights, meta, expected)
    if cached is not None:
        return cached
    net, info = train_classifier(train, test, steps=steps, batch_size=batch_size, seed=seed)
    _save(net, info, weights, meta)
    return ClassifierFeatures(net, info, from_cache=False)


def builtin_features(
    data: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    *,
    steps: int | None = None,
    seed: int = 0,
) -> ClassifierFeatures:
    """The built-in feature network of a registered data set, trained on its train split."""
    train, test = load_data(data, "train", data_dir), load_data(data, "test", data_dir)
    return load_or_train_classifier(train, test, cache_dir, steps=steps, seed=seed)


# ---- Inception-v3 through torch-fidelity ---------------------------------------------------


def _one_line(err: BaseException) -> str:
    """An exception as `Type: message` on a single line."""
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text}"


def _inception_weights_path(weights_path: str | Path | None) -> str | None:
    """The weights file to load: the one given, else torch hub's cached copy, else None (download)."""
    if weights_path is not None:
        if not Path(weights_path).is_file():
            raise FeatureNetUnavailable(f"Inception-v3 weights not found at {weights_path}")
        return str(weights_path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    return str(cached) if cached.is_file() else None


@dataclass(eq=False)
class InceptionFeatures:
    """Inception-v3 pool3 features (2048-d) of torch-fidelity, the standard FID network."""

    net: nn.Module
    device: str = "cpu"
    batch_size: int = 64
    name: str = "inception-v3-compat (torch-fidelity)"
    dim: int = 2048
    min_samples: int = INCEPTION_MIN_SAMPLES

    @torch.no_grad()
    def __call__(self, images: Tensor, levels: int) -> Tensor:
        """2048-d features of level images, rescaled to 0..255 RGB (grey repeated); float64 [N, 2048]."""
        check_levels(images, levels)
        if images.shape[1] not in (1, 3):
            raise DataError(f"Inception-v3 takes 1- or 3-channel images, got {images.shape[1]} channels")
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size].float() * (255.0 / (levels - 1))
            batch = batch.round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous().to(self.device)
            chunks.append(self.net(batch)[0].double().cpu())
        return torch.cat(chunks)


def inception_features(
    weights_path: str | Path | None = None, device: str = "cpu", allow_download: bool = True
) -> InceptionFeatures:
    """torch-fidelity's Inception-v3, or FeatureNetUnavailable with a one-line reason."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise FeatureNetUnavailable(
            f"torch-fidelity is not installed ({_one_line(err)}); pip install 'elbolab[fid]'"
        ) from err
    path = _inception_weights_path(weights_path)
    os.environ.setdefault("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")  # torch-fidelity's torch.load: tensors only, no pickle
    if path is None and not allow_download:
        raise FeatureNetUnavailable(
            f"Inception-v3 weights {INCEPTION_WEIGHTS} are not in the torch hub cache and downloading is off"
        )
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    except Exception as err:
        raise FeatureNetUnavailable(f"Inception-v3 weights could not be loaded ({_one_line(err)})") from err
    return InceptionFeatures(net.to(device).eval(), device=device)


def select_features(
    data: str,
    kind: str = "auto",
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    inception_weights: str | Path | None = None,
    device: str = "cpu",
) -> tuple[FeatureExtractor, str | None]:
    """The feature network to use and, when Inception was wanted but unusable, the reason.

    kind: "inception" (fail if unusable), "builtin", or "auto" (Inception, else the built-in CNN).
    """
    if kind not in ("auto", "inception", "builtin"):
        raise ElbolabError(f"unknown feature network {kind!r}; choose auto, inception or builtin")
    reason = None
    if kind != "builtin":
        try:
            return inception_features(inception_weights, device), None
        except FeatureNetUnavailable as err:
            if kind == "inception":
                raise
            reason = str(err)
    return builtin_features(data, data_dir, cache_dir), reason
