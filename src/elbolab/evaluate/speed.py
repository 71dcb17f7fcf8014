"""Wall-clock speed: seconds per sampled image (with the caller's NFE) and training images per second."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from elbolab.records import Record


def synchronize(device: str | torch.device | None) -> None:
    """Wait for queued GPU work so that the clock measures it."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(
    fn: Callable[[], Any], calls: int, warmup: int = 1, device: str | torch.device | None = None
) -> list[float]:
    """Seconds taken by each of `calls` calls of fn, after `warmup` untimed calls (time.perf_counter)."""
    if calls < 1:
        raise ValueError("time at least one call")
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def _machine(device: str | torch.device | None) -> dict[str, Any]:
    """Where the timing ran: device and torch's CPU thread count."""
    return {"device": str(device or "cpu"), "torch_threads": torch.get_num_threads()}


def time_sampling(
    sample: Callable[[int], Any],
    n: int,
    *,
    nfe: int | None = None,
    repeats: int = 3,
    warmup: int = 1,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Seconds per image and images/s of `sample(n)` (median over repeats); NFE is the caller's figure."""
    if n < 1:
        raise ValueError("sample at least one image")
    per_call = statistics.median(timed_calls(lambda: sample(n), repeats, warmup, device))
    return {
        "n": n,
        "repeats": repeats,
        "seconds_per_call": per_call,
        "seconds_per_image": per_call / n,
        "images_per_second": n / per_call if per_call > 0 else float("inf"),
        "nfe": nfe,
        "seconds_per_image_per_nfe": per_call / n / nfe if nfe else None,
        **_machine(device),
    }


def time_training(
    step: Callable[[], Any],
    batch_size: int,
    *,
    steps: int = 10,
    warmup: int = 2,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Training throughput of one optimiser step on `batch_size` images: seconds per step and images/s."""
    total = sum(timed_calls(step, steps, warmup, device))
    return {
        "steps": steps,
        "batch_size": batch_size,
        "seconds_per_step": total / steps,
        "images_per_second": steps * batch_size / total if total > 0 else float("inf"),
        **_machine(device),
    }


class PassCounter:
    """Images sent through a network's forward (a forward pre-hook), and the calls: what a figure costs in
    network passes."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.images = 0
        self.calls = 0
        self._handle = net.register_forward_pre_hook(self._count)

    def _count(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self.images += int(args[0].shape[0])
        self.calls += 1

    def reset(self) -> None:
        self.images = self.calls = 0

    def remove(self) -> None:
        self._handle.remove()


@dataclass(frozen=True)
class PairedTiming(Record):
    """Seconds of two calls `a` and `b`, timed alternately (a, b, a, b, …) after one warm-up call of each, so that
    a changing machine load falls on both; their ratio b/a per repeat pairs the two."""

    a: str
    b: str
    seconds_a: tuple[float, ...]
    seconds_b: tuple[float, ...]
    load_average: float | None = None

    def ratios(self) -> tuple[float, ...]:
        """b's seconds over a's, per repeat."""
        return tuple(b / a for a, b in zip(self.seconds_a, self.seconds_b))


def paired_timing(
    a: str,
    fn_a: Callable[[], Any],
    b: str,
    fn_b: Callable[[], Any],
    repeats: int = 5,
    device: str | torch.device | None = None,
) -> PairedTiming:
    """Time fn_a and fn_b alternately, `repeats` times each (one untimed warm-up call of each first)."""
    fn_a(), fn_b()
    pairs = [(timed_calls(fn_a, 1, 0, device)[0], timed_calls(fn_b, 1, 0, device)[0]) for _ in range(repeats)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return PairedTiming(a, b, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), load)
