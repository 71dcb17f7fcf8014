"""A schedule given as a table: the discrete chain's log ᾱ_1 … log ᾱ_T, e.g. another library's betas.

It offers what samplers and bounds ask of a schedule (`log_snr(t)`, `times(i)`, `T`, `betas()`): on the
grid t_i = i/T it is exactly the table, between grid points log ᾱ is linear in t (as the linear
schedule is), and ᾱ(0) = 1. Computed in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elbolab.diffusion.schedule import _as_time, alpha_bar, grid_betas, grid_times, log_snr_from_log_alpha_bar
from elbolab.errors import ConfigError


class TabulatedSchedule:
    """The T-step chain with log ᾱ_i tabulated, i = 1..T."""

    name = "tabulated"

    def __init__(self, log_alpha_bar: Tensor) -> None:
        table = torch.as_tensor(log_alpha_bar, dtype=torch.float64).flatten()
        if table.numel() < 2:
            raise ConfigError(f"a diffusion model needs T ≥ 2 steps, got {table.numel()}")
        if not torch.isfinite(table).all() or not (table < 0).all() or not (table[1:] < table[:-1]).all():
            raise ConfigError("a tabulated schedule needs 1 > ᾱ_1 > … > ᾱ_T > 0 (every β_i in (0, 1))")
        self.T = int(table.numel())
        self._table = torch.cat([table.new_zeros(1), table])  # log ᾱ_0 = 0

    @classmethod
    def from_betas(cls, betas: Tensor) -> TabulatedSchedule:
        """log ᾱ_i = Σ_{j ≤ i} log(1 − β_j) (Ho et al. 2020, eq. 4), in float64."""
        return cls(torch.cumsum(torch.log1p(-torch.as_tensor(betas, dtype=torch.float64)), 0))

    def log_alpha_bar(self, t: Tensor | float) -> Tensor:
        """log ᾱ(t): the table at t_i = i/T, linear in t between."""
        t = _as_time(t)
        table = self._table.to(t.device)
        n = (t * self.T).clamp(0, self.T)
        i = n.floor().long().clamp(max=self.T - 1)
        return table[i] + (n - i) * (table[i + 1] - table[i])

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log(ᾱ/(1 − ᾱ)), float64; +∞ at t = 0."""
        return log_snr_from_log_alpha_bar(self.log_alpha_bar(t))

    # what derives from λ(t) and T alone: the helpers the named schedule uses too
    def times(self, i: Tensor | int) -> Tensor:
        """t_i = i/T, float64."""
        return grid_times(i, self.T)

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """ᾱ(t) = sigmoid(λ(t))."""
        return alpha_bar(self.log_snr(t))

    def betas(self) -> Tensor:
        """β_1..β_T (`schedule.grid_betas`)."""
        return grid_betas(self)
