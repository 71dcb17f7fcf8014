"""Many samples in bounded memory: drawn in batches and streamed to an .npz or a folder of PNGs.

The .npz is written entry by entry (the `images` array's header first, then each batch's bytes) into
a temporary file renamed into place, so only one batch is held at a time and a crash leaves no half file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elbolab.atomic import atomic_write
from elbolab.errors import ElbolabError


def sample_batches(
    model: Any, n: int, batch_size: int, seed: int, y: torch.Tensor | None = None, **kwargs: Any
) -> Iterator[np.ndarray]:
    """`n` samples as level arrays [b, C, H, W], `batch_size` at a time, from one seeded generator; a conditional
    model's given labels y [n], each batch its own slice."""
    generator = torch.Generator(model.device).manual_seed(seed)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        labels = {} if y is None else {"y": y[start:stop]}
        with torch.no_grad():
            images = model.sample(stop - start, generator=generator, **labels, **kwargs)
        yield images.cpu().numpy()


def write_npz(path: str | Path, batches: Iterator[np.ndarray], n: int, levels: int) -> Path:
    """An .npz with `images` [n, C, H, W] (levels) and `levels`, written batch by batch, atomically."""

    def write(fh: Any) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            first = next(batches)
            header = {
                "descr": np.lib.format.dtype_to_descr(first.dtype),
                "fortran_order": False,
                "shape": (n, *first.shape[1:]),
            }
            written = 0
            with archive.open("images.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_1_0(out, header)
                for batch in _chain(first, batches):
                    out.write(np.ascontiguousarray(batch, dtype=first.dtype).tobytes())
                    written += len(batch)
            if written != n:
                raise ElbolabError(f"{path}: {written} samples drawn, {n} expected")
            with archive.open("levels.npy", "w") as out:
                np.lib.format.write_array(out, np.array(levels))

    return atomic_write(path, write)


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def to_8bit(batch: np.ndarray, levels: int) -> np.ndarray:
    """Levels [b, C, H, W] → uint8 [b, H, W, C] over 0..255."""
    scaled = np.rint(batch.astype(np.float32) * (255.0 / (levels - 1)))
    return np.clip(scaled, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def write_png_folder(folder: str | Path, batches: Iterator[np.ndarray], levels: int) -> int:
    """Each sample as `folder/000000.png` at its own size; returns how many were written."""
    from PIL import Image

    folder = Path(folder)
    count = 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for batch in batches:
            for image in to_8bit(batch, levels):
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{count:06d}.png")
                count += 1
    except OSError as exc:
        raise ElbolabError(f"{folder}: cannot write ({exc.strerror or exc})") from None
    return count
