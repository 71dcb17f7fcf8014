"""The one atomic file writer: a temporary file beside the target, fsync, rename, fsync of the folder.

The temporary file is created with mode 0666 so that the user's umask decides its permissions (a
`tempfile.mkstemp` file keeps 0600 after the rename). A failure to write (a read-only folder, a full
disk, /dev/full) is one `ElbolabError` naming the file; the target is left as it was.

Test hook: `ELBOLAB_TEST_SLOW_WRITE=SECONDS[:NAME_PART]` pauses SECONDS halfway through writing each
file (only those whose name contains NAME_PART), so a test can kill the process mid-write.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from elbolab.errors import ElbolabError

SLOW_WRITE_ENV = "ELBOLAB_TEST_SLOW_WRITE"
TEMP_SUFFIX = ".tmp"


def _slow_write_pause(path: Path) -> float:
    """Seconds the test hook asks to pause while writing `path` (0 without the hook)."""
    spec = os.environ.get(SLOW_WRITE_ENV, "")
    if not spec:
        return 0.0
    seconds, _, part = spec.partition(":")
    return float(seconds) if part in path.name else 0.0


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """The temporary name a write to `path` uses (hidden, unique per process and call)."""
    return path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}{TEMP_SUFFIX}"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], pause: float | None = None) -> Path:
    """Call `write(file)` on a fresh temporary file, then put it in place of `path` atomically (`pause`: seconds
    to wait before the rename, by default the slow-write test hook's)."""
    path = Path(path)
    pause = _slow_write_pause(path) if pause is None else pause
    if path.exists() and not path.is_file():  # a folder, a device (/dev/full), a pipe: never replace it
        raise ElbolabError(f"{path}: not a regular file; refusing to write over it")
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if pause:
                time.sleep(pause)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ElbolabError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Bytes, written atomically (paused halfway under the slow-write test hook)."""
    pause = _slow_write_pause(Path(path))

    def write(fh: BinaryIO) -> None:
        if pause:
            half = len(data) // 2
            fh.write(data[:half])
            fh.flush()
            time.sleep(pause)
            fh.write(data[half:])
        else:
            fh.write(data)

    return atomic_write(path, write, pause=0.0)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """JSON (sorted keys, indented), written atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Text (UTF-8), written atomically."""
    return atomic_write_bytes(path, text.encode())
