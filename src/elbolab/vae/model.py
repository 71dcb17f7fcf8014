"""The VAE: Gaussian encoder q(z|x), N(0, I) prior, discretised decoder p(x|z)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from elbolab.bounds import Bound, Estimator, sum_per_example
from elbolab.config import require
from elbolab.data.base import ImageData
from elbolab.errors import DataError
from elbolab.information import InformationCurve, code_information
from elbolab.likelihoods import pixel_likelihood
from elbolab.model import DECODER, Capabilities, DesignLevels, Encoding, GenerativeModel, class_count
from elbolab.nets.conv import ClassMap, ConvDecoder, ConvEncoder, full_latent_channels
from elbolab.records import Information
from elbolab.vae.bound import free_bits_kl, iwae_bound, kl_per_dim, kl_weight, reconstruction_draws, reparameterize
from elbolab.vae.information import latent_rate


@dataclass(frozen=True)
class VAEConfig:
    """The VAE's architecture and objective."""

    latent: Literal["flat", "spatial", "full"] = "flat"  # full: a spatial z with as many values as x (C·4^d channels)
    latent_dim: int = 16  # size of z for flat latents
    latent_channels: int = 4  # channels of z for spatial latents ([c, S/2^d, S/2^d])
    net: str = "small"  # conv preset: tiny | small | base
    likelihood: Literal["logistic", "gaussian", "bernoulli"] = "logistic"
    beta: float = 1.0  # weight of the KL term in the training loss
    kl_warmup_steps: int = 0  # β rises linearly from 0 over these steps
    free_bits: float = 0.0  # nats per latent dimension (batch mean), 0 = off
    conditional: bool = False  # q(z|x, y) and p(x|z, y): a learned class embedding into encoder and decoder

    def __post_init__(self) -> None:
        require("model.latent", self.latent, self.latent in ("flat", "spatial", "full"), "flat, spatial or full")
        require("model.latent_dim", self.latent_dim, self.latent_dim >= 1, "an integer ≥ 1")
        require("model.latent_channels", self.latent_channels, self.latent_channels >= 1, "an integer ≥ 1")
        require("model.beta", self.beta, self.beta >= 0, "a number ≥ 0")
        require("model.kl_warmup_steps", self.kl_warmup_steps, self.kl_warmup_steps >= 0, "an integer ≥ 0")
        require("model.free_bits", self.free_bits, self.free_bits >= 0, "a number ≥ 0")

    @classmethod
    def sized_for(cls, side: int, device: str = "cpu") -> VAEConfig:
        """The configuration `compare` starts from for images of this side on this device: the small conv net,
        but on a CPU for images over 16 px the tiny one (a quarter of small's FLOPs at 28×28), so that a
        minutes-long budget buys enough steps."""
        if side > 16 and not device.startswith("cuda"):
            return cls(net="tiny")
        return cls()


class VAE(GenerativeModel):
    """Kingma & Welling (2014), with a discretised decoder so the bound is in bits of the stored data."""

    kind = "vae"
    objective = "β-ELBO (reconstruction + β·KL, with KL warm-up and free bits)"

    def __init__(self, config: VAEConfig, shape: tuple[int, int, int], levels: int, classes: int | None = None) -> None:
        super().__init__(config, shape, levels)
        c, h, w = self.shape
        if h != w:
            raise DataError(f"the VAE's networks need square images, got {h}×{w}")
        self.likelihood = pixel_likelihood(config.likelihood, levels)
        flat = config.latent == "flat"
        channels = full_latent_channels(c, h) if config.latent == "full" else config.latent_channels
        enc_out = 64 if flat else 2 * channels
        self.encoder = ConvEncoder(c, h, enc_out, config.net)
        r = self.encoder.resolution
        dec_in = 64 if flat else channels
        self.decoder = ConvDecoder(dec_in, h, c * self.likelihood.params_per_channel, config.net)
        if flat:
            self.to_posterior = nn.Linear(enc_out * r * r, 2 * config.latent_dim)
            self.from_latent = nn.Sequential(nn.Linear(config.latent_dim, dec_in * r * r), nn.SiLU())
        # spatial and full: z is [c, S/2^d, S/2^d]; full has C·4^d channels, so z holds D values, as many as x
        self.latent_shape: tuple[int, ...] = (config.latent_dim,) if flat else (channels, r, r)
        self.classes = class_count(config.conditional, classes)
        if self.classes is not None:  # y enters as learned maps added to the encoder's input and decoder's input
            self.encoder_class = ClassMap(self.classes, (c, h, w))
            self.decoder_class = ClassMap(self.classes, (dec_in, r, r))

    # ---- q(z|x) and p(x|z)
    def posterior(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x) (q(z|x, y) for a conditional model)."""
        h = self.encoder(x if y is None else x + self.encoder_class(y))
        if self.config.latent == "flat":
            h = self.to_posterior(h.flatten(1))
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decoder_params(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Per-pixel parameters of p(x|z) (p(x|z, y) for a conditional model)."""
        if self.config.latent == "flat":
            r = self.encoder.resolution
            z = self.from_latent(z).view(z.shape[0], -1, r, r)
        return self.decoder(z if y is None else z + self.decoder_class(y))

    def log_likelihood(self, x: Tensor, z: Tensor, y: Tensor | None = None) -> Tensor:
        """log p(x|z) (or log p(x|z, y)) summed over pixels, [B]."""
        return sum_per_example(self.likelihood.log_prob(x, self.decoder_params(z, y)))

    # ---- the contract
    @property
    def capabilities(self) -> Capabilities:
        """One decoder pass; the ELBO by Monte Carlo over z (K draws) or the IWAE bound; a one-pass encoder."""
        encoder = sum(p.numel() for n, p in self.named_parameters() if n.startswith(("encoder.", "to_posterior.")))
        return Capabilities(
            samplers=(DECODER,),
            max_steps=1,
            sample_options=("mean",) if self.classes is None else ("mean", "y"),
            estimators=("mc", "iwae"),
            default_estimator=Estimator("mc", 1),
            encoding=Encoding(encoder, 1),
            design=self.design_levels(),
            classes=self.classes,
        )

    @torch.no_grad()
    def information_curve(self, x: Tensor, draws: int = 256, seed: int = 0) -> InformationCurve:
        """I(x; z) of the code q(z|x) for x uniform over the images x."""
        mean, logvar = self.posterior(x.to(self.device))
        return code_information(mean.cpu(), logvar.cpu(), draws, seed)

    def design_levels(self) -> DesignLevels:
        """A learned one-step encoder and one-pass decoder around z (latent fraction 1.0 for latent=full); the ELBO
        where β = 1 without free bits."""
        elbo = self.config.beta == 1 and self.config.free_bits == 0
        return DesignLevels(
            encoder="learned",
            encoder_steps=1,
            latent_fraction=math.prod(self.latent_shape) / self.dims,
            decoder_steps=1,
            objective="ELBO" if elbo else "β-ELBO",
        )

    def _elbo(self, x: Tensor, estimator: Estimator, generator: torch.Generator | None) -> Bound:
        """−ELBO as `reconstruction` + `kl` (K draws of z, analytic KL); "iwae": the IWAE bound as the term `iwae`."""
        return self._elbo_given(x, self.labels_for(None, x.shape[0]), estimator, generator)

    def _elbo_given(
        self, x: Tensor, y: Tensor | None, estimator: Estimator, generator: torch.Generator | None
    ) -> Bound:
        """−log p(x | y) ≤ E_q(z|x,y)[−log p(x|z, y)] + KL(q(z|x, y) ‖ p(z)) (Sohn et al. 2015, eq. 4), the same
        terms and estimators as the unconditional bound (y None)."""
        mean, logvar = self.posterior(x, y)
        log_lik = lambda z: self.log_likelihood(x, z, y)
        if estimator.method == "iwae":
            return Bound(
                {"iwae": iwae_bound(mean, logvar, log_lik, estimator.samples or 100, generator=generator)}, self.dims
            )
        draws = reconstruction_draws(mean, logvar, log_lik, estimator.samples or 1, generator)
        kl = sum_per_example(kl_per_dim(mean, logvar))
        # the KL is exact: the Monte-Carlo error is the reconstruction's, over K draws of z
        extras = {"stderr": draws.std(0) / math.sqrt(len(draws))} if len(draws) > 1 else {}
        return Bound({"reconstruction": draws.mean(0), "kl": kl}, self.dims, extras=extras)

    def beta_at(self, step: int) -> float:
        """β after linear KL warm-up at optimiser step `step`."""
        return kl_weight(self.config.beta, self.config.kl_warmup_steps, step)

    def loss(self, x: Tensor, step: int = 0, total_steps: int | None = None, y: Tensor | None = None) -> Tensor:
        """reconstruction + β·KL (free bits applied per latent dimension), per example; given y if conditional."""
        y = self.labels_for(y, x.shape[0])
        mean, logvar = self.posterior(x, y)
        z = reparameterize(mean, logvar)
        reconstruction = -self.log_likelihood(x, z, y)
        kl = free_bits_kl(kl_per_dim(mean, logvar), self.config.free_bits)
        return reconstruction + self.beta_at(step) * kl

    def _sample(
        self,
        n: int,
        generator: torch.Generator | None,
        sampler: str | None,
        steps: int | None,
        mean: bool = True,
        y: Tensor | None = None,
    ) -> Tensor:
        """z ~ N(0, I), one decoder pass (given labels y [n] if conditional; without them y ~ p(y), uniform over the
        K classes, so that the samples are of the model's p(x)); the decoder's mean (default) or a draw from
        p(x|z, y)."""
        if self.classes is not None and y is None:
            y = torch.randint(self.classes, (n,), generator=generator, device=self.device)
        y = self.labels_for(y, n)
        z = torch.randn((n, *self.latent_shape), generator=generator, device=self.device)
        return self.decode(z, mean=mean, generator=generator, y=y)

    def information(self, data: ImageData, n: int = 1000, generator: torch.Generator | None = None) -> Information:
        """The rate and active units of z, and the distortion of the mean reconstruction."""
        return Information(latent=latent_rate(self, data, n))

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean E_q[z|x]."""
        return self.posterior(x)[0]

    @torch.no_grad()
    def decode(
        self, z: Tensor, mean: bool = True, generator: torch.Generator | None = None, y: Tensor | None = None
    ) -> Tensor:
        """z → image levels through p(x|z) (p(x|z, y) given labels)."""
        params = self.decoder_params(z, y)
        x = self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)
        return self.to_levels(x)
