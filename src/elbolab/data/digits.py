"""scikit-learn's handwritten digits: 1,797 images, 8×8, 17 grey levels (0..16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elbolab.data.base import ImageData, register

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@register("digits")
def load_digits(split: str, data_dir: Path) -> ImageData:
    """The built-in default: shipped with scikit-learn, so it never touches the network."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # [N, 1, 8, 8], levels 0..16
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        index, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=bunch.target
    )
    chosen = np.sort(train_idx if split == "train" else test_idx)
    return ImageData(
        "digits", torch.from_numpy(images[chosen].copy()), 17, torch.from_numpy(bunch.target[chosen].astype(np.int64))
    )
