"""The `Bound` record: a negative ELBO as named per-example terms, in nats."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, overload

import torch
from torch import Tensor

from elbolab.errors import ConfigError

LN2 = math.log(2.0)


@overload
def nats_to_bpd(nats: Tensor, dims: int) -> Tensor: ...
@overload
def nats_to_bpd(nats: float, dims: int) -> float: ...
def nats_to_bpd(nats: Tensor | float, dims: int) -> Tensor | float:
    """Bits per dimension: nats / (D ln 2)."""
    return nats / (dims * LN2)


#: model range [−1, 1] → 0..255, the scale distortions are reported on (Ho et al. 2020, Fig. 5)
RMSE_SCALE = 127.5


def rmse_255(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-example root-mean-square error on the 0–255 scale, [B]."""
    return (x_hat - x).pow(2).flatten(1).mean(1).sqrt() * RMSE_SCALE


def sum_per_example(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: elementwise log-terms → one value per example, [B]."""
    return x.flatten(1).sum(1)


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) Σ_k exp(x_k), computed stably along `dim`."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def mean_ci95(values: Tensor) -> tuple[float, float]:
    """Sample mean and the half-width of its normal-approximation 95% interval."""
    values = values.detach().double().flatten()
    n = values.numel()
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value")
    mean = values.mean().item()
    if n == 1:
        return mean, float("nan")
    return mean, 1.959963984540054 * values.std(unbiased=True).item() / math.sqrt(n)


def plus_minus(ci95: float | None, n: int, digits: int = 4) -> str:
    """ "± h" for the half-width h of a 95% interval (`mean_ci95`); "± n/a (1 image)" where too few images give none."""
    if ci95 is None or not math.isfinite(ci95):
        return f"± n/a ({n} image{'' if n == 1 else 's'})"
    return f"± {ci95:.{digits}f}"


def json_ready(obj: Any) -> Any:
    """Replace NaN and ±inf by None (JSON has no such numbers), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


@dataclass(frozen=True, eq=False)
class Bound:
    """−ELBO per example as named terms, each of shape [B], in nats.

    `per_step` holds per-timestep detail ([B, T]) where a model has one.
    `discrete` is False when the terms are densities of continuous data.
    """

    terms: Mapping[str, Tensor]
    dims: int
    per_step: Tensor | None = None
    discrete: bool = True
    extras: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("a Bound needs at least one term")
        shapes = {tuple(t.shape) for t in self.terms.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"every term must have the same shape [B]; got {shapes}")

    @property
    def total(self) -> Tensor:
        """The whole negative ELBO, Σ of the terms, shape [B]."""
        return torch.stack(list(self.terms.values())).sum(0)

    def bits_per_dim(self) -> Tensor:
        """total / (D ln 2), shape [B]."""
        return nats_to_bpd(self.total, self.dims)

    def detach(self) -> Bound:
        """The same record with every tensor detached."""
        return Bound(
            {k: v.detach() for k, v in self.terms.items()},
            self.dims,
            None if self.per_step is None else self.per_step.detach(),
            self.discrete,
            {k: v.detach() for k, v in self.extras.items()},
        )

    @staticmethod
    def cat(bounds: list[Bound]) -> Bound:
        """Concatenate records of the same model along the batch dimension."""
        first = bounds[0]
        per_step = None
        if first.per_step is not None:
            per_step = torch.cat([b.per_step for b in bounds if b.per_step is not None])
        return Bound(
            {k: torch.cat([b.terms[k] for b in bounds]) for k in first.terms},
            first.dims,
            per_step,
            first.discrete,
            {k: torch.cat([b.extras[k] for b in bounds]) for k in first.extras},
        )


#: the ways `elbo` can estimate a bound (see `Estimator`)
ESTIMATOR_METHODS = ("exact", "mc", "iwae")
#: where a Monte-Carlo bound over diffusion time draws t (see `Estimator`)
PROPOSALS = ("uniform", "stratified", "importance")


@dataclass(frozen=True)
class Estimator:
    """How a model's `elbo` estimates its bound: one record every model accepts.

    "exact": every term computed (diffusion: all T steps); "mc": Monte Carlo with `samples`
    draws per example and a standard error in `Bound.extras["stderr"]`; "iwae": the
    importance-weighted bound with k = `samples` (Burda et al. 2016). `samples=None` takes the
    model's default. A model refuses, with a clear error, a method it does not offer.
    `proposal` (mc only): t drawn iid "uniform", "stratified" (low-discrepancy), or "importance"
    (stratified from a density fitted on a pilot pass; for the discrete chain a density over its steps, the first
    ones each a bin of their own, e.g. "mc:28:importance"). `steps`: a continuous-time diffusion model's
    bound in its T-step form with T = `steps` (None: the model's own time).
    """

    method: str = "exact"
    samples: int | None = None
    proposal: str = "uniform"
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ESTIMATOR_METHODS:
            raise ConfigError(f"unknown bound estimator {self.method!r}; choose one of {', '.join(ESTIMATOR_METHODS)}")
        if self.method == "exact" and self.samples is not None:
            raise ConfigError("the exact bound takes no number of samples")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"an estimator needs at least 1 sample, got {self.samples}")
        if self.proposal not in PROPOSALS:
            raise ConfigError(f"unknown proposal {self.proposal!r}; choose one of {', '.join(PROPOSALS)}")
        if self.proposal != "uniform" and self.method != "mc":
            raise ConfigError(f"the {self.proposal} proposal is for Monte-Carlo bounds (mc), not {self.method}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"a T-step bound needs T ≥ 1, got {self.steps}")

    @classmethod
    def parse(cls, text: str) -> Estimator:
        """ "exact", "mc", "mc:16", "iwae:100", "mc:64:importance", "exact:T=1000" → an Estimator (the command
        line's form: the method, then any of a count, a proposal and T=steps, separated by colons)."""
        method, *parts = text.strip().split(":")
        samples, proposal, steps = None, "uniform", None
        try:
            for part in parts:
                if part in PROPOSALS:
                    proposal = part
                elif part.startswith("T="):
                    steps = int(part[2:])
                else:
                    samples = int(part)
            return cls(method, samples, proposal, steps)
        except ValueError:
            raise ConfigError(
                f"cannot read the estimator {text!r}; write exact, mc, mc:K, iwae:K, mc:K:importance or exact:T=1000"
            ) from None

    def describe(self) -> str:
        """A short name for reports: "exact", "mc (K=16)", "iwae (k=100)", "mc (K=64, importance, T=1000)"."""
        letter = "k" if self.method == "iwae" else "K"
        details = [] if self.samples is None else [f"{letter}={self.samples}"]
        if self.proposal != "uniform":
            details.append(self.proposal)
        if self.steps is not None:
            details.append(f"T={self.steps}")
        return self.method if not details else f"{self.method} ({', '.join(details)})"
