"""MNIST and Fashion-MNIST: 28×28 grey images, 256 levels, labels 0..9, from the four idx files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elbolab.data.base import ImageData, register
from elbolab.data.download import ensure_files, split_files
from elbolab.data.idx import read_idx
from elbolab.data.problems import data_error

SHAPE = (1, 28, 28)
LEVELS = 256
CLASSES = 10


def load_idx_set(name: str, split: str, data_dir: Path) -> ImageData:
    """One split of an MNIST-like set: images [N, 1, 28, 28] uint8 and labels int64."""
    images_file, labels_file = split_files(name, split)
    folder = ensure_files(name, data_dir, (images_file, labels_file))
    images = read_idx(folder / images_file)
    labels = read_idx(folder / labels_file)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != SHAPE[1:]:
        raise data_error(
            folder / images_file,
            f"expected uint8 images N×28×28, got {images.dtype} {'×'.join(map(str, images.shape))}",
        )
    if labels.ndim != 1 or len(labels) != len(images) or (len(labels) and int(labels.max()) >= CLASSES):
        raise data_error(
            folder / labels_file, f"expected {len(images)} labels in 0..{CLASSES - 1}, got shape {labels.shape}"
        )
    return ImageData(name, torch.from_numpy(images[:, None]), LEVELS, torch.from_numpy(labels.astype(np.int64)))


@register("mnist")
def load_mnist(split: str, data_dir: Path) -> ImageData:
    """MNIST (LeCun et al.): 60,000 train / 10,000 test handwritten digits."""
    return load_idx_set("mnist", split, data_dir)


@register("fashion-mnist")
def load_fashion_mnist(split: str, data_dir: Path) -> ImageData:
    """Fashion-MNIST (Xiao et al.): 60,000 train / 10,000 test Zalando article images."""
    return load_idx_set("fashion-mnist", split, data_dir)
