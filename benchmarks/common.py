"""What every benchmark shares: the machine it ran on, a printed table, a JSON result file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from elbolab.evaluate.speed import synchronize
from elbolab.machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on (elbolab.machine.machine_info)."""
    return machine_info()


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """A plain fixed-width table of dict rows."""
    if not rows:
        return
    keys = list(rows[0])
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print(f"\n{title}")
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return "" if value is None else str(value)


def write_results(name: str, payload: dict[str, Any], folder: Path = RESULTS) -> Path:
    """FOLDER/NAME.json (by default benchmarks/results/) with the machine attached."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    staged = path.with_suffix(".json.tmp")  # written whole, then renamed: a killed run leaves the last whole file
    staged.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=float) + "\n")
    staged.replace(path)
    print(f"\nwrote {path}")
    return path


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """(fn(*args, **kwargs), seconds), synchronising CUDA around the call."""
    device = "cuda" if torch.cuda.is_available() else None
    synchronize(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize(device)
    return out, time.perf_counter() - start
