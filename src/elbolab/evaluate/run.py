"""`elbolab eval`: everything measured about one trained run, as one JSON-ready dict."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from elbolab.bounds import mean_ci95, nats_to_bpd
from elbolab.data import load_data
from elbolab.evaluate.likelihood import dataset_bound, summarize_bound


def likelihood_kwargs(kind: str, exact: bool) -> dict[str, Any]:
    """How each model kind is asked for its test bound (diffusion: Monte Carlo unless `exact`)."""
    if kind in ("diffusion", "latent-diffusion"):
        return {"method": "exact" if exact else "mc"}
    return {}


def evaluate_run(run_dir: Path, split: str = "test", n: int | None = None, iwae_k: int = 100, exact: bool = False,
                 seed: int = 0, batch_size: int = 256) -> dict[str, Any]:
    """Bound terms and bits/dim with 95% intervals; the IWAE bound for VAEs."""
    from elbolab.train.run import load_run

    cfg, model = load_run(run_dir)
    data = load_data(cfg.data, split, cfg.data_dir)
    n = len(data) if n is None else min(n, len(data))
    torch.manual_seed(seed)
    started = time.perf_counter()
    bound = dataset_bound(model, data, n, batch_size, **likelihood_kwargs(cfg.kind, exact))
    result: dict[str, Any] = {"model": cfg.kind, "data": cfg.data, "split": split, "n": n, "dims": bound.dims,
                              "levels": cfg.levels, "objective": model.objective, **summarize_bound(bound),
                              "likelihood_seconds": time.perf_counter() - started}
    if cfg.kind == "vae" and iwae_k > 1:
        started = time.perf_counter()
        iwae = dataset_bound(model, data, n, max(1, batch_size // 4), k=iwae_k).total
        mean, ci = mean_ci95(nats_to_bpd(iwae, bound.dims))
        result["iwae"] = {"k": iwae_k, "bpd": mean, "ci95": ci, "nats": mean_ci95(iwae)[0],
                          "seconds": time.perf_counter() - started}
    return result
