"""The contract every elbolab model keeps (DESIGN.md, "The contract every model keeps")."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from elbolab.bounds import Bound
from elbolab.data.base import ImageData, to_levels
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
        #: the optimiser step the trainer is on (for schedules inside the loss, e.g. KL warm-up)
        self.train_step = 0

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

    @torch.no_grad()
    def interpolate(self, x0: Tensor, x1: Tensor, frames: int) -> Tensor:
        """Frames along the slerp between encode(x0) and encode(x1), decoded: [B, frames, C, H, W] levels."""
        z0, z1 = self.encode(x0), self.encode(x1)
        weights = torch.linspace(0, 1, frames, device=z0.device)
        return torch.stack([self.decode(slerp(z0, z1, w)) for w in weights], dim=1)


def slerp(z0: Tensor, z1: Tensor, w: Tensor | float) -> Tensor:
    """Spherical interpolation per example (Shoemake 1985); linear where the two are parallel."""
    a, b = z0.flatten(1), z1.flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))[:, None]
    sin = torch.sin(omega)
    w = torch.as_tensor(w, dtype=a.dtype, device=a.device)
    parallel = sin.abs() < 1e-6
    out = torch.where(parallel, (1 - w) * a + w * b,
                      (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.where(parallel, 1.0, sin))
    return out.view_as(z0)


@torch.no_grad()
def dataset_bound(model: GenerativeModel, data: ImageData, n: int | None = None, batch_size: int = 256,
                  **elbo_kwargs: Any) -> Bound:
    """The model's bound on the first n images of `data` (all if n is None), in batches."""
    n = len(data) if n is None else min(n, len(data))
    device = model.device
    return Bound.cat([model.elbo(data.model_range(slice(i, min(i + batch_size, n))).to(device),
                                 **elbo_kwargs).detach() for i in range(0, n, batch_size)])
