"""Image grids as PNG (bytes or files), and sample arrays as .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from elbolab.atomic import atomic_write, atomic_write_bytes
from elbolab.errors import ElbolabError


def grid_array(images: Tensor, levels: int, nrow: int, pad: int = 1) -> np.ndarray:
    """uint8 levels [N, C, H, W] → one 8-bit [rows·H, nrow·W, C] canvas, white padding."""
    images = images.detach().cpu().to(torch.float32) * (255.0 / (levels - 1))
    n, c, h, w = images.shape
    ncol = max(1, min(nrow, n))
    rows = -(-n // ncol)
    canvas = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y : y + h, x : x + w] = images[i].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(np.uint8)
    return canvas


def grid_png(images: Tensor, levels: int, nrow: int = 8, scale: int | None = None) -> bytes:
    """Images as one PNG grid (small images enlarged, pixels kept square), as bytes."""
    import io

    from PIL import Image

    canvas = grid_array(images, levels, nrow)
    scale = scale or max(1, 64 // images.shape[-1])
    img = Image.fromarray(canvas[..., 0] if canvas.shape[2] == 1 else canvas)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="png")
    return buffer.getvalue()


def save_images(images: Tensor, levels: int, path: str | Path, nrow: int = 8, scale: int | None = None) -> Path:
    """Write images as a PNG grid (small images are enlarged) or as an .npz of levels."""
    path = Path(path)
    if not path.parent.exists():
        raise ElbolabError(f"{path.parent}: output folder does not exist")
    if path.suffix == ".npz":
        return atomic_write(
            path, lambda fh: np.savez_compressed(fh, images=images.cpu().numpy(), levels=np.array(levels))
        )
    if path.suffix.lower() != ".png":
        raise ElbolabError(f"{path}: write .png or .npz")
    return atomic_write_bytes(path, grid_png(images, levels, nrow, scale))
