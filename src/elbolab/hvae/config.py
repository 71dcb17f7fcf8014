"""The hierarchical VAE's configuration, saved into every run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from elbolab.config import require


@dataclass(frozen=True)
class HVAEConfig:
    """A hierarchical VAE of L stochastic levels z_L (top) … z_1, all at the bottleneck resolution S/2^d.

    `latent`: "bottleneck" gives level l `latent_channels[l]` channels (top level first; one value serves every
    level); "full" gives every level as many values as x (C·4^d channels). `residual_posterior`: NVAE's
    q(z_l|·) = N(μ_p + Δμ, σ_p²·Δσ²) relative to the prior. `skip_threshold`: an update whose gradient norm
    exceeds this many times the run's running scale of the norms is skipped (VDVAE's update skipping, relative
    to the run instead of a fixed norm per data set; 0 = off).
    """

    L: int = 2  # stochastic levels
    latent: Literal["bottleneck", "full"] = "bottleneck"
    latent_channels: tuple[int, ...] = (2,)  # channels of each bottleneck level's z_l ([c_l, S/2^d, S/2^d])
    net: str = "small"  # conv preset of the bottom-up and output networks: tiny | small | base
    likelihood: Literal["logistic", "gaussian", "bernoulli"] = "logistic"
    residual_posterior: bool = False
    beta: float = 1.0  # weight of the KL terms in the training loss
    kl_warmup_steps: int = 0  # β rises linearly from 0 over these steps
    free_bits: float = 0.0  # nats per latent dimension (batch mean) of each level, 0 = off
    skip_threshold: float = 10.0  # skip updates whose ‖∇ loss‖ is above this × its running scale, 0 = off
    conditional: bool = False  # q(z|x, y) and p(z, x | y): learned class maps into the bottom-up input and top state

    def __post_init__(self) -> None:
        require("model.L", self.L, self.L >= 1, "an integer ≥ 1")
        require("model.latent", self.latent, self.latent in ("bottleneck", "full"), "bottleneck or full")
        require(
            "model.latent_channels",
            ",".join(map(str, self.latent_channels)),
            len(self.latent_channels) in (1, self.L) and all(c >= 1 for c in self.latent_channels),
            f"one integer ≥ 1, or L = {self.L} of them",
        )
        require("model.beta", self.beta, self.beta >= 0, "a number ≥ 0")
        require("model.kl_warmup_steps", self.kl_warmup_steps, self.kl_warmup_steps >= 0, "an integer ≥ 0")
        require("model.free_bits", self.free_bits, self.free_bits >= 0, "a number ≥ 0")
        require("model.skip_threshold", self.skip_threshold, self.skip_threshold >= 0, "a number ≥ 0 (0 = off)")

    def channels(self, full_channels: int) -> tuple[int, ...]:
        """Channels of z_L … z_1, top first, given the channel count at which a level holds D values."""
        if self.latent == "full":
            return (full_channels,) * self.L
        return self.latent_channels * self.L if len(self.latent_channels) == 1 else self.latent_channels

    @classmethod
    def sized_for(cls, side: int, device: str = "cpu") -> HVAEConfig:
        """The configuration `compare` starts from for images of this side: the small conv nets, the tiny ones on
        a CPU for images over 16 px (as `VAEConfig.sized_for`)."""
        if side > 16 and not device.startswith("cuda"):
            return cls(net="tiny")
        return cls()
