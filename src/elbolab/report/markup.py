"""The small pieces of markup every section of the report shares: escaping, numbers as readers read them, and
the verdict badge."""

from __future__ import annotations

import html
import math
from typing import Any

esc = html.escape


def num(value: Any, digits: int = 3) -> str:
    """A number as a reader reads it: `digits` significant digits, "–" for missing or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"


def badge(verdict: str) -> str:
    """The verdict as a CSS-drawn badge: a shape, a colour and the word (screen readers hear "verdict: …")."""
    return f'<span class="badge {verdict.replace(" ", "-")}"><span class="sr">verdict: </span>{esc(verdict)}</span>'
