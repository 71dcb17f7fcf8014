"""CIFAR-10: 32×32 RGB images, 256 levels, labels 0..9, from the python pickle batches.

The batches are pickles, and a pickle can run code; they are read with an unpickler that
resolves only the few globals needed to rebuild NumPy arrays and refuses everything else.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elbolab.data.base import ImageData, register
from elbolab.data.download import ensure_files, split_files
from elbolab.data.problems import data_error
from elbolab.errors import DataError

SHAPE = (3, 32, 32)
LEVELS = 256
CLASSES = 10

try:  # NumPy ≥ 2 keeps these in numpy._core; older pickles still name numpy.core
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef,attr-defined,unused-ignore]
    from numpy.core.numeric import _frombuffer  # type: ignore[attr-defined,no-redef,unused-ignore]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as Python 3 writes bytes into protocol-2 pickles, for latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, bytes, numbers and NumPy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global only if it is on the allow-list."""
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(f"refusing to load {module}.{name}: not allowed in a data pickle") from None


def load_pickle(path: Path) -> object:
    """Unpickle a file with the restricted unpickler (Python 2 strings kept as bytes)."""
    try:
        raw = path.read_bytes()
        return RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError as exc:
        raise data_error(path, str(exc)) from None
    except Exception as exc:  # a corrupt pickle can fail in many ways; all mean "unreadable"
        raise data_error(path, "not a readable pickle (truncated or corrupt?)", exc) from exc


def _entry(batch: object, key: str) -> object:
    """batch[key], whether the pickle stored its keys as bytes (Python 2) or str."""
    if not isinstance(batch, dict):
        raise TypeError("a CIFAR-10 batch is a dict")
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch as (images [n, 3, 32, 32] uint8, labels [n] int64)."""
    batch = load_pickle(path)
    try:
        data, labels = _entry(batch, "data"), np.asarray(_entry(batch, "labels"))
    except (KeyError, TypeError, ValueError):
        raise data_error(path, "not a CIFAR-10 batch (no 'data' and 'labels' entries)") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise data_error(path, "not a CIFAR-10 batch: 'data' must be a uint8 array of shape n×3072")
    if (
        labels.shape != (len(data),)
        or labels.dtype.kind not in "iu"
        or (len(labels) and (labels.min() < 0 or labels.max() >= CLASSES))
    ):
        raise data_error(path, f"not a CIFAR-10 batch: expected {len(data)} labels in 0..{CLASSES - 1}")
    return data.reshape(-1, *SHAPE), labels.astype(np.int64)


@register("cifar10")
def load_cifar10(split: str, data_dir: Path) -> ImageData:
    """CIFAR-10 (Krizhevsky): 50,000 train (five batches) / 10,000 test 32×32 colour images."""
    files = split_files("cifar10", split)
    folder = ensure_files("cifar10", data_dir, files)
    batches = [read_batch(folder / f) for f in files]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return ImageData("cifar10", torch.from_numpy(images), LEVELS, torch.from_numpy(labels))
