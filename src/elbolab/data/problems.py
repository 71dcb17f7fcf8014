"""One-line DataError messages that name the file at fault."""

from __future__ import annotations

from pathlib import Path

from elbolab.errors import DataError


def one_line(text: object) -> str:
    """Collapse any whitespace (newlines included) in `text` to single spaces."""
    return " ".join(str(text).split())


def data_error(path: Path | str, what: str, cause: BaseException | None = None) -> DataError:
    """A DataError reading "PATH: WHAT (Cause: detail)" on one line."""
    detail = f" ({type(cause).__name__}: {one_line(cause)})" if cause is not None else ""
    return DataError(one_line(f"{path}: {what}{detail}"))
