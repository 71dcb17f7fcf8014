"""The small pieces of markup every section of the report shares: escaping, numbers as readers read them, and
the verdict badge."""

from __future__ import annotations

import html
import math
from typing import Any

from elbolab.records import Power

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


def power_text(p: Power | None) -> str:
    """What the design could detect, and, for an inconclusive verdict, the seeds it would need."""
    if p is None:
        return ""
    text = f"smallest effect detectable with 80% power over {p.seeds} seed{'s' if p.seeds > 1 else ''}: {num(p.detectable)}"
    if p.seeds_needed is not None:
        least = "at least " if p.seeds == 1 else ""
        text += f"; an effect of the size measured needs {least}{p.seeds_needed} seeds (--seeds {p.seeds_needed})"
    return text


def fraction_text(f: float) -> str:
    """A budget fraction as readers read it: ¼, ½, ¾ or its decimal."""
    return {0.25: "¼", 0.5: "½", 0.75: "¾"}.get(f, f"{f:g}")
