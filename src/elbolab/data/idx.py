"""The idx format of MNIST and Fashion-MNIST: a 4-byte magic, big-endian sizes, then the values."""

from __future__ import annotations

import gzip
import struct
import zlib
from math import prod
from pathlib import Path

import numpy as np

from elbolab.data.problems import data_error

# The third magic byte names the element type; all multi-byte values are big-endian.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an idx file, gzip-compressed if its name ends in .gz."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise data_error(path, "cannot read the file", exc) from exc
    if path.suffix == ".gz":
        raw = gunzip(raw, path)
    return parse_idx(raw, path)


def gunzip(raw: bytes, path: Path) -> bytes:
    """The decompressed bytes of a gzip file, or a DataError if it is not one or is cut short."""
    if not raw.startswith(GZIP_MAGIC):
        raise data_error(path, "not a gzip file")
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise data_error(path, "truncated or corrupt gzip data", exc) from exc


def parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """Decode idx bytes: magic 0x00 0x00 <type> <ndim>, ndim uint32 sizes, then the values."""
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise data_error(path, f"not an idx file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise data_error(path, f"truncated idx header ({len(raw)} bytes, needs {start})")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    needed = prod(dims) * dtype.itemsize
    if len(raw) - start != needed:
        raise data_error(
            path,
            f"truncated or corrupt idx data: {len(raw) - start} bytes after the header, "
            f"sizes {'x'.join(map(str, dims))} need {needed}",
        )
    values = np.frombuffer(raw, dtype=dtype, offset=start).reshape(dims)
    return values.astype(dtype.newbyteorder("="))
