"""An exponential moving average of a model's floating-point weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """shadow ← shadow + (1 − d)(θ − shadow), d = min(decay, (1 + n)/(10 + n)) (warm-up as in TF's EMA).

    Only parameters are averaged; buffers (a timestep resampler's history, a measured latent scale) are
    copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.averaged = {name for name, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights one step towards the model's."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        state = model.state_dict()
        averaged = [k for k, v in state.items() if k in self.averaged and v.dtype.is_floating_point]
        # one fused launch per dtype and device for all weights (a loop costs one launch per tensor on a GPU)
        if averaged:
            torch._foreach_lerp_([self.shadow[k] for k in averaged], [state[k] for k in averaged], 1.0 - d)
        for k in state.keys() - set(averaged):
            self.shadow[k].copy_(state[k])

    def state_tensors(self) -> dict[str, Tensor]:
        return {f"ema.{k}": v for k, v in self.shadow.items()}

    def load_tensors(self, tensors: dict[str, Tensor], updates: int) -> None:
        self.updates = updates
        for k in self.shadow:
            self.shadow[k].copy_(tensors[f"ema.{k}"])

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into `model`."""
        model.load_state_dict(self.shadow)
