"""What the network predicts: ε, x_0 or v, and the conversions between them.

x_t = α x_0 + σ ε and v = α ε − σ x_0 (Salimans & Ho 2022, §4); given x_t, any one of
the three determines the others.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from elbolab.errors import ConfigError

Parameterisation = Literal["eps", "x0", "v"]
PARAMETERISATIONS = ("eps", "x0", "v")


def eps_to_x0(eps_hat: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """x̂_0 = (x_t − σ ε̂)/α (Ho et al. 2020, eq. 15)."""
    return (x_t - sigma * eps_hat) / alpha


def x0_to_eps(x0_hat: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """ε̂ = (x_t − α x̂_0)/σ."""
    return (x_t - alpha * x0_hat) / sigma


def v_to_x0(v_hat: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """x̂_0 = α x_t − σ v̂ (Salimans & Ho 2022, §4; α² + σ² = 1)."""
    return alpha * x_t - sigma * v_hat


def v_to_eps(v_hat: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """ε̂ = σ x_t + α v̂ (α² + σ² = 1)."""
    return sigma * x_t + alpha * v_hat


def to_v(x0_hat: Tensor, eps_hat: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """v = α ε − σ x_0 (Salimans & Ho 2022, §4)."""
    return alpha * eps_hat - sigma * x0_hat


def x0_and_eps(
    output: Tensor, parameterisation: str, x_t: Tensor, alpha: Tensor, sigma: Tensor
) -> tuple[Tensor, Tensor]:
    """(x̂_0, ε̂) from a network output that predicts `parameterisation` ∈ {eps, x0, v}."""
    if parameterisation == "eps":
        return eps_to_x0(output, x_t, alpha, sigma), output
    if parameterisation == "x0":
        return output, x0_to_eps(output, x_t, alpha, sigma)
    if parameterisation == "v":
        return v_to_x0(output, x_t, alpha, sigma), v_to_eps(output, x_t, alpha, sigma)
    raise ConfigError(f"unknown parameterisation {parameterisation!r}; choose one of {', '.join(PARAMETERISATIONS)}")
