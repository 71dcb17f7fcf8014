"""The contract every elbolab model keeps (DESIGN.md, "The contract every model keeps")."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from elbolab.bounds import Bound
from elbolab.data.base import to_levels
from elbolab.errors import DataError


class GenerativeModel(nn.Module):
    """A latent-variable model over images x given in the model's range [-1, 1].

    Subclasses set `kind`, take `(config, shape, levels)` and implement `elbo`,
    `loss` and `sample`; `encode`/`decode` where the model has them. Everything that
    returns images returns integer levels (uint8, [N, C, H, W]), the data's own scale.
    """

    kind: ClassVar[str] = ""
    #: the name of the objective `loss` optimises, for reports ("β-ELBO", "L_simple", ...)
    objective: ClassVar[str] = ""

    def __init__(self, config: Any, shape: tuple[int, int, int], levels: int) -> None:
        super().__init__()
        self.config = config
        self.shape = tuple(int(s) for s in shape)
        self.levels = int(levels)

    @property
    def dims(self) -> int:
        """D: pixel values per image."""
        c, h, w = self.shape
        return c * h * w

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_input(self, x: Tensor) -> None:
        """A clear error for images of the wrong shape or with NaNs."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise DataError(f"{self.kind} model expects images of shape [B, {', '.join(map(str, self.shape))}], "
                            f"got {list(x.shape)}")
        if not torch.isfinite(x).all():
            raise DataError("input images contain NaN or infinite values")

    def to_levels(self, x: Tensor) -> Tensor:
        """Model-range images → integer levels."""
        return to_levels(x, self.levels)

    # ---- the contract
    def elbo(self, x: Tensor, **kwargs: Any) -> Bound:
        """The negative ELBO per example, in nats, as named terms."""
        raise NotImplementedError

    def loss(self, x: Tensor) -> Tensor:
        """The training objective per example, shape [B]."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """n images as integer levels."""
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.kind} has no encoder")

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.kind} has no decoder")
