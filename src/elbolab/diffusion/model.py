"""The diffusion model over images (Ho et al. 2020; Nichol & Dhariwal 2021): a UNet around the Gaussian chain."""

from __future__ import annotations

import torch
from torch import Tensor

from elbolab.bounds import Bound
from elbolab.diffusion.chain import GaussianDiffusion
from elbolab.diffusion.config import DiffusionConfig
from elbolab.model import GenerativeModel
from elbolab.nets.unet import UNet

OBJECTIVES = {"simple": "L_simple (ε-MSE)", "vlb": "L_vlb (the bound, bits/dim)",
              "hybrid": "L_hybrid = L_simple + λ L_vlb (learned variance)"}


class DiffusionModel(GenerativeModel):
    """Images in [−1, 1] with `levels` levels; the decoder p_θ(x_0|x_1) is a Gaussian binned over the levels."""

    kind = "diffusion"

    def __init__(self, config: DiffusionConfig, shape: tuple[int, int, int], levels: int) -> None:
        super().__init__(config, shape, levels)
        c, h, w = self.shape
        out_channels = 2 * c if config.variance == "learned" else c
        net = UNet(c, out_channels, config.unet, image_size=max(h, w))
        self.diffusion = GaussianDiffusion(config, net, levels)

    @property
    def objective(self) -> str:  # type: ignore[override]
        """The name of what `loss` optimises."""
        return OBJECTIVES[self.config.loss]

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The configured objective per example, [B] (see `GaussianDiffusion.loss`)."""
        self.check_input(x)
        return self.diffusion.loss(x, generator)

    def elbo(self, x: Tensor, method: str | None = None, samples: int | None = None, discrete: bool = True,
             generator: torch.Generator | None = None) -> Bound:
        """−ELBO per example in nats: terms prior (L_T), diffusion (Σ_{t≥2} L_{t−1}), reconstruction (L_0);
        `method` "exact" (all T steps, with per_step [B, T]) or "mc" (with extras["stderr"]).

        It bounds the model `sample` draws from: x̂_0 clipped to [−1, 1] in every reverse step."""
        self.check_input(x)
        return self.diffusion.elbo(x, method, samples, discrete, generator, clip=True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, sampler: str | None = None,
               steps: int | None = None, eta: float | None = None, variance: str | None = None,
               **_: object) -> Tensor:
        """n images as uint8 levels: x_T ~ N(0, I), then `sampler` ("ancestral" | "ddim" | "dpm-solver++")
        over `steps` network evaluations, x̂_0 clipped to [−1, 1] at every step."""
        x = self.diffusion.sample((n, *self.shape), sampler, steps, eta, variance, clip=True, generator=generator,
                                  device=self.device)
        return self.to_levels(x)

    @torch.no_grad()
    def encode(self, x: Tensor, steps: int | None = None) -> Tensor:
        """x_0 → x_T by deterministic DDIM inversion (`steps`, default config.encode_steps)."""
        self.check_input(x)
        return self.diffusion.encode(x, steps, clip=True)

    @torch.no_grad()
    def decode(self, z: Tensor, steps: int | None = None) -> Tensor:
        """x_T → image levels by DDIM with η = 0."""
        return self.to_levels(self.diffusion.decode(z, steps, clip=True))
