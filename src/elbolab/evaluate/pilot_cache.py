"""The pilot cache (`pilot-fits.json` in a run folder), read with checks: a damaged file is one line naming it, and a
fit holding a non-finite number is not used (the proposal is fitted again, with a warning)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from elbolab.errors import ElbolabError


class PilotCacheError(ElbolabError):
    """The pilot cache file cannot be read or does not have its shape."""


def read_pilot_fits(path: Path | None) -> list[dict[str, Any]]:
    """The cache's fits, each {"key": {...}, "state": {name: [numbers]}}; none where there is no file."""
    if path is None or not Path(path).is_file():
        return []
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PilotCacheError(f"{path}: corrupt pilot cache ({str(exc)[:80]}); delete it to fit afresh") from None
    fits = data.get("fits") if isinstance(data, dict) else None
    if not isinstance(fits, list) or not all(
        isinstance(f, dict) and isinstance(f.get("key"), dict) and isinstance(f.get("state"), dict) for f in fits
    ):
        raise PilotCacheError(f"{path}: fits must be a list of {{key, state}} objects; delete it to fit afresh")
    return fits


def finite_fit(fit: dict[str, Any], path: Path | None) -> bool:
    """Whether every value of a cached fit's state is a finite number; if not, say the fit will be redone."""
    for name, values in fit["state"].items():
        ok = isinstance(values, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )
        if not ok:
            warnings.warn(f"{path}: the cached pilot fit's {name} is not all finite numbers; fitting it again")
            return False
    return True
