"""Test-set likelihood: bound terms in nats and bits/dim, each with a 95% interval."""

from __future__ import annotations

from typing import Any

from elbolab.bounds import Bound, mean_ci95, nats_to_bpd
from elbolab.model import dataset_bound  # noqa: F401  (re-exported: evaluation's entry point)


def summarize_bound(bound: Bound) -> dict[str, Any]:
    """{'nats': {total, terms, ci95}, 'bpd': {...}}: means over examples with 95% half-widths."""
    out: dict[str, Any] = {}
    for unit, scale in (("nats", lambda t: t), ("bpd", lambda t: nats_to_bpd(t, bound.dims))):
        total, ci = mean_ci95(scale(bound.total))
        terms = {k: mean_ci95(scale(v))[0] for k, v in bound.terms.items()}
        terms_ci = {k: mean_ci95(scale(v))[1] for k, v in bound.terms.items()}
        out[unit] = {"total": total, "ci95": ci, "terms": terms, "terms_ci95": terms_ci}
    out["discrete"] = bound.discrete
    if "stderr" in bound.extras:
        # mean Monte-Carlo standard error of one example's estimate (already inside the CI above)
        out["mc_stderr_nats"] = bound.extras["stderr"].double().mean().item()
    return out
