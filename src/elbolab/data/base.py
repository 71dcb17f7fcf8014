"""The image-data record, the registry of named data sets, and level scaling."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from elbolab.errors import DataError
from elbolab.likelihoods import level_of

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class ImageData:
    """Images stored as integer levels 0..K-1, shape [N, C, H, W], with labels if any."""

    name: str
    images: Tensor  # uint8 (levels ≤ 256) [N, C, H, W]
    levels: int
    labels: Tensor | None = None  # int64 [N]

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"{self.name}: images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.images.shape[0] == 0:
            raise DataError(f"{self.name}: the data set is empty")
        if not 2 <= self.levels <= 256:
            raise DataError(f"{self.name}: levels must be between 2 and 256, got {self.levels}")
        if self.labels is not None:
            check_labels(self.labels, len(self), None, f"{self.name}: labels")

    @property
    def classes(self) -> int | None:
        """K, the number of classes the labels name (the largest label + 1); None without labels."""
        return None if self.labels is None else int(self.labels.max()) + 1

    def require_labels(self, why: str) -> Tensor:
        """The labels, or a one-line error saying that `why` needs them and this data set has none."""
        if self.labels is None:
            raise DataError(
                f"{why} needs labels, and {self.name} has none (an image folder takes its subfolders "
                "as classes, an .npz a `labels` array)"
            )
        return self.labels

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return c, h, w

    @property
    def dims(self) -> int:
        """D, the number of pixel values in one image (the bits/dim denominator)."""
        c, h, w = self.shape
        return c * h * w

    def __len__(self) -> int:
        return self.images.shape[0]

    def model_range(self, index: Tensor | slice | None = None) -> Tensor:
        """Images (all, or those at `index`) as floats in the model's range [-1, 1]."""
        images = self.images if index is None else self.images[index]
        return to_model(images, self.levels)

    def subset(self, n: int) -> ImageData:
        """The first n images (all of them if n exceeds the size)."""
        labels = None if self.labels is None else self.labels[:n]
        return ImageData(self.name, self.images[:n], self.levels, labels)


def check_labels(labels: Tensor, n: int | None, classes: int | None, what: str = "labels") -> None:
    """A one-line DataError unless `labels` are n integers (any n if None) in 0..classes−1 (any K ≥ 0 if None)."""
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise DataError(f"{what} must be a 1-D tensor of integers, got {labels.dtype} of shape {list(labels.shape)}")
    if n is not None and labels.shape[0] != n:
        raise DataError(f"{what}: {labels.shape[0]} labels for {n} images")
    if labels.numel() and (int(labels.min()) < 0 or (classes is not None and int(labels.max()) >= classes)):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        allowed = "≥ 0" if classes is None else f"in 0..{classes - 1}"
        raise DataError(f"{what}: label {bad} is out of range; labels must be {allowed}")


def to_model(levels_tensor: Tensor, levels: int) -> Tensor:
    """Integer levels 0..K-1 → floats in [-1, 1]: x = 2k/(K-1) - 1."""
    return levels_tensor.float() * (2.0 / (levels - 1)) - 1.0


def to_levels(x: Tensor, levels: int) -> Tensor:
    """Floats in [-1, 1] → the nearest integer level, as uint8."""
    return level_of(x, levels).to(torch.uint8)


Loader = Callable[[str, Path], ImageData]
_REGISTRY: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    """Register a named data set's loader(split, data_dir) -> ImageData."""

    def deco(fn: Loader) -> Loader:
        _REGISTRY[name] = fn
        return fn

    return deco


def dataset_names() -> list[str]:
    """Names of the registered data sets."""
    return sorted(_REGISTRY)


def default_data_dir() -> Path:
    """The cache folder for downloaded data: $ELBOLAB_DATA, else ~/.cache/elbolab/data."""
    env = os.environ.get("ELBOLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "elbolab" / "data"


def load_data(spec: str, split: str = "train", data_dir: str | Path | None = None) -> ImageData:
    """Load a registered data set by name, or images from a path (folder or .npz)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if spec in _REGISTRY:
        return _REGISTRY[spec](split, root)
    path = Path(spec).expanduser()
    if path.suffix == ".npz" or path.is_dir():
        from elbolab.data.files import load_path

        return load_path(path, split)
    if not path.exists() and os.sep not in spec and "." not in spec:
        raise DataError(
            f"unknown data set {spec!r}; choose one of {', '.join(dataset_names())}, a folder of images or an .npz file"
        )
    raise DataError(f"{spec}: no such data set, folder or .npz file")
