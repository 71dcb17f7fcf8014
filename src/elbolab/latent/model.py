"""Latent diffusion (Rombach et al. 2022; Vahdat et al. 2021): a VAE's z, modelled by a diffusion model.

Training has two stages (see `elbolab.train.stages`): the autoencoder first, then the diffusion model over u = z/s with
z ~ q(z|x) from the frozen encoder. The bound is a true bound on log p(x) (see `bound`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from elbolab.bounds import Bound, Estimator
from elbolab.data.base import ImageData
from elbolab.diffusion.chain import GaussianDiffusion, build_net
from elbolab.diffusion.model import SAMPLE_OPTIONS, ChainModel
from elbolab.diffusion.samplers import SAMPLERS
from elbolab.errors import ElbolabError
from elbolab.latent.bound import latent_bound, total_std
from elbolab.latent.config import LatentDiffusionConfig
from elbolab.model import Capabilities, DesignLevels, Encoding, GenerativeModel, class_count
from elbolab.records import Information
from elbolab.vae.bound import reparameterize
from elbolab.vae.model import VAE

OBJECTIVES = {
    "simple": "L_simple (ε-MSE) on z/s",
    "vlb": "L_vlb on z/s (bits per latent dimension)",
    "hybrid": "L_hybrid on z/s (learned variance)",
}


#: (image, draw) pairs a Monte-Carlo bound sends through the decoder and the latent chain at once: 256 draws of a
#: batch of 256 digits at once held a measuring process at ~1.9 GB
LATENT_PAIRS = 4096


class LatentDiffusion(ChainModel):
    """An autoencoder (a VAE with spatial latents) and a Gaussian diffusion over its scaled latents u = z/s."""

    kind = "latent-diffusion"
    config: LatentDiffusionConfig
    #: s, the latent scale (0-dim); 0 until measured from the data (`measure_scale`), then saved with the weights
    scale: Tensor

    def __init__(
        self, config: LatentDiffusionConfig, shape: tuple[int, int, int], levels: int, classes: int | None = None
    ) -> None:
        super().__init__(config, shape, levels)
        #: K labels of a conditional model: the latent chain is conditional in z, p(z | y), the autoencoder is not
        self.classes = class_count(config.conditional, classes)
        self.vae = VAE(config.vae, shape, levels)
        self.vae.requires_grad_(False)
        self.diffusion = self._diffusion_for(self.vae)
        #: values per z, set with the autoencoder's config (the design levels' latent size, read without a pass)
        self.latent_values = math.prod(self.vae.latent_shape)
        self.register_buffer("scale", torch.zeros(()))

    def _diffusion_for(self, vae: VAE) -> GaussianDiffusion:
        """The chain over continuous latents, with a UNet sized for the latent grid [c, r, r] (and the class embedding
        of a conditional model)."""
        if len(vae.latent_shape) != 3:
            raise ElbolabError("latent diffusion needs a VAE with spatial latents; this one has flat latents")
        c, r, _ = vae.latent_shape
        cfg = self.config.diffusion
        return GaussianDiffusion(cfg, build_net(cfg, c, r, self.classes), levels=None, classes=self.classes)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one z: [c, r, r]."""
        return tuple(self.vae.latent_shape)

    @property
    def objective(self) -> str:
        """What `loss` optimises (after stage 1's β-ELBO)."""
        joint = (
            f"; the last {self.config.joint_finetune_steps} steps add the whole bound"
            if self.config.joint_finetune_steps
            else ""
        )
        return OBJECTIVES[self.config.diffusion.loss] + joint

    # ---- stage 1 → stage 2
    @property
    def prepared(self) -> bool:
        """Whether the latent scale is measured (the autoencoder is in place)."""
        return bool(self.scale > 0)

    def log_scale(self) -> Tensor:
        """log s (float64), with a clear error before the scale is measured."""
        if not self.prepared:
            raise ElbolabError(
                "the latent diffusion model has no latent scale yet: train or load its "
                "autoencoder first (its first stage, as `elbolab train latent-diffusion` does)"
            )
        return torch.log(self.scale.double())

    def _s(self, like: Tensor) -> Tensor:
        """s in the dtype of `like` (after the same check as `log_scale`)."""
        return torch.exp(self.log_scale()).to(like.dtype)

    def adopt_autoencoder(self, vae: VAE) -> None:
        """Take a trained VAE's weights; a VAE of another architecture replaces the module and the config."""
        if vae.config.latent != "spatial":
            raise ElbolabError("latent diffusion needs a VAE with spatial latents; this one has flat latents")
        if tuple(vae.shape) != self.shape or vae.levels != self.levels:
            raise ElbolabError(
                f"the autoencoder was trained on images of shape {list(vae.shape)} with "
                f"{vae.levels} levels; this data has shape {list(self.shape)} and {self.levels} levels"
            )
        if vae.config != self.config.vae:
            self.config = replace(self.config, vae=vae.config)
            self.vae = VAE(vae.config, self.shape, self.levels).to(self.scale.device)
            self.diffusion = self._diffusion_for(self.vae).to(self.scale.device)
            self.latent_values = math.prod(self.vae.latent_shape)
        self.vae.load_state_dict(vae.state_dict())
        self.vae.requires_grad_(False)

    @torch.no_grad()
    def measure_scale(self, data: ImageData, n: int | None = None, batch_size: int = 500) -> float:
        """Set s to the standard deviation of z ~ q(z|x) over the first n images (`total_std`); returns s."""
        n = len(data) if n is None else min(n, len(data))
        sums = torch.zeros(3, dtype=torch.float64)
        device = self.scale.device
        for start in range(0, n, batch_size):
            mean, logvar = self.vae.posterior(data.model_range(slice(start, min(start + batch_size, n))).to(device))
            mean = mean.double()
            sums += torch.stack([mean.sum(), mean.pow(2).sum(), logvar.double().exp().sum()]).cpu()
        mean_sum, square_sum, var_sum = sums.tolist()
        s = total_std(mean_sum, square_sum, var_sum, count=n * math.prod(self.latent_shape))
        if not s > 0:
            raise ElbolabError(f"the autoencoder's latents have standard deviation {s}; it cannot be used")
        self.scale.fill_(s)
        return s

    # ---- the contract
    @property
    def capabilities(self) -> Capabilities:
        """The latent chain's samplers (then one decoder pass) and estimators, its steps drawn as in training
        ("uniform": from the training resampler's history) or from a proposal fitted on a pilot pass over latents
        of training images with its control variate ("importance", `prepare_estimator`); the autoencoder's
        one-pass encoder."""
        cfg = self.config.diffusion
        samplers = (cfg.sampler, *(name for name in SAMPLERS if name != cfg.sampler))
        encoder = sum(p.numel() for n, p in self.vae.named_parameters() if n.startswith("encoder."))
        return Capabilities(
            samplers=samplers,
            max_steps=cfg.T,
            sample_options=SAMPLE_OPTIONS if self.classes is None else (*SAMPLE_OPTIONS, "y", "guidance"),
            estimators=("mc", "exact"),
            default_estimator=self.diffusion.default_estimator(),
            encoding=Encoding(encoder, 1),
            proposals=("uniform", "importance"),
            design=self.design_levels(),
            classes=self.classes,
            null_class=self.classes is not None,
        )

    def design_levels(self) -> DesignLevels:
        """The autoencoder's learned one-step encoder, then the fixed T-step chain over its bottleneck z (1 + T
        steps each way), trained in stages."""
        chain = self.config.diffusion
        steps = None if chain.time == "continuous" else 1 + chain.T
        return DesignLevels(
            encoder="learned, then fixed",
            encoder_steps=steps,
            latent_fraction=self.latent_values / self.dims,
            decoder_steps=steps,
            objective="stages",
        )

    def components(self) -> dict[str, GenerativeModel]:
        """The autoencoder, a VAE in its own right: its ELBO is the bound the latent prior improves on."""
        return {"autoencoder": self.vae}

    def information(self, data: ImageData, n: int = 1000, generator: torch.Generator | None = None) -> Information:
        """The autoencoder's latent: rate, active units, distortion."""
        return self.vae.information(data, n, generator)

    # ---- training
    def joint_at(self, step: int, total_steps: int | None) -> bool:
        """Whether `step` is one of the last `joint_finetune_steps` of `total_steps` (autoencoder trained too)."""
        k = self.config.joint_finetune_steps
        return k > 0 and total_steps is not None and step >= total_steps - k

    def loss(self, x: Tensor, step: int = 0, total_steps: int | None = None, y: Tensor | None = None) -> Tensor:
        """The diffusion objective on u = z/s, z ~ q(z|x) from the frozen encoder, per example [B]; in joint
        steps plus the whole bound in bits/dim, with gradients into the autoencoder. A conditional model's chain
        is given labels y (None: the null class), with label dropout."""
        self.check_input(x)
        y = None if y is None else self.check_labels(y, x.shape[0])
        joint = self.joint_at(step, total_steps)
        self.vae.requires_grad_(joint)
        if not joint:
            with torch.no_grad():
                mean, logvar = self.vae.posterior(x)
                z = reparameterize(mean, logvar)
            return self.diffusion.loss(z / self._s(z), y=y)
        mean, logvar = self.vae.posterior(x)
        z = reparameterize(mean, logvar)
        bound = self._bound_at(x, z, logvar, Estimator("mc", 2), y=y)
        return self.diffusion.loss((z / self._s(z)).detach(), y=y) + bound.bits_per_dim().float()

    # ---- the bound
    def _bound_at(
        self,
        x: Tensor,
        z: Tensor,
        logvar: Tensor,
        estimator: Estimator,
        generator: torch.Generator | None = None,
        y: Tensor | None = None,
    ) -> Bound:
        """The bound at a given draw z ~ q(z|x) (`bound.latent_bound`), the latent chain's bound by `estimator`
        (on −log p(z | y) given labels y)."""
        return latent_bound(
            z,
            logvar,
            lambda z_: self.vae.log_likelihood(x, z_),
            lambda u: self.diffusion.elbo(u, estimator, discrete=False, generator=generator, y=y),
            self.log_scale(),
            self.dims,
            discrete=True,
        )

    def _elbo(self, x: Tensor, estimator: Estimator, generator: torch.Generator | None) -> Bound:
        """The bound on −log p(x): a conditional model's through its latent chain's null class (`_elbo_given`)."""
        return self._elbo_given(x, None, estimator, generator)

    def _elbo_given(
        self, x: Tensor, y: Tensor | None, estimator: Estimator, generator: torch.Generator | None
    ) -> Bound:
        """−ELBO per example in nats (on −log p(x | y) given labels y, q(z|x) being the autoencoder's): terms
        `reconstruction` (−log p(x|z), discretised), `neg_entropy` (−H[q(z|x)]) and `latent_prior`
        (L_ψ(z/s) + d log s); the latent chain's terms in `extras`.

        "exact": at one z ~ q(z|x), the latent chain's bound with all its T steps. "mc" with K draws: the mean
        of K independent estimates, each at its own z ~ q(z|x) with two Monte-Carlo draws of t in the latent
        chain from the estimator's proposal (an importance proposal not prepared on training images is fitted
        for this call only, `self_piloted`), and the standard error of that mean in extras["stderr"] (both
        sources of noise in it)."""
        return self.self_piloted(estimator, x, generator, lambda: self._bound_given(x, y, estimator, generator))

    def _bound_given(
        self, x: Tensor, y: Tensor | None, estimator: Estimator, generator: torch.Generator | None
    ) -> Bound:
        """`_elbo_given` once the latent chain's proposal is in place."""
        mean, logvar = self.vae.posterior(x)
        if estimator.method == "exact":
            return self._bound_at(x, reparameterize(mean, logvar, generator), logvar, estimator, generator, y)
        K = estimator.samples or self.config.diffusion.elbo_samples
        per_pass = max(1, LATENT_PAIRS // x.shape[0])  # draws whose copies of the batch go through at once
        per_z = Estimator("mc", 2, estimator.proposal)  # two draws of t at each z, from the estimator's proposal
        passes = [
            self._draws(x, mean, logvar, y, min(per_pass, K - k), per_z, generator) for k in range(0, K, per_pass)
        ]

        def fold(name: str, part: str) -> Tensor:  # the mean over the K draws, per example
            return torch.cat([getattr(d, part)[name] for d in passes]).view(K, x.shape[0]).mean(0)

        first = passes[0]
        extras = {k: fold(k, "extras") for k in first.extras if k != "latent_prior.stderr"}
        total = torch.cat([d.total for d in passes]).view(K, x.shape[0])
        extras["stderr"] = total.std(0) / math.sqrt(K) if K > 1 else torch.zeros_like(total[0])
        return Bound({k: fold(k, "terms") for k in first.terms}, self.dims, None, first.discrete, extras)

    def _draws(
        self,
        x: Tensor,
        mean: Tensor,
        logvar: Tensor,
        y: Tensor | None,
        k: int,
        per_z: Estimator,
        generator: torch.Generator | None,
    ) -> Bound:
        """k independent estimates of the bound, stacked [k·B]: each at its own z ~ q(z|x), with the latent chain's
        bound by `per_z` (two Monte-Carlo draws of t) there."""

        def rep(t: Tensor) -> Tensor:  # k copies of the batch, stacked
            return t.repeat(k, *(1,) * (t.ndim - 1))

        z = reparameterize(rep(mean), rep(logvar), generator)
        return self._bound_at(rep(x), z, rep(logvar), per_z, generator, None if y is None else rep(y))

    def chain_pilot(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Images → u = z/s, z ~ q(z|x): the latents whose chain bound the Monte-Carlo estimate draws t for."""
        with torch.no_grad():
            mean, logvar = self.vae.posterior(x)
            z = reparameterize(mean, logvar, generator)
        return z / self._s(z)

    # ---- sampling and the latent path
    def chain_shape(self) -> tuple[int, ...]:
        """The chain runs over scaled latents u = z/s of shape [c, r, r]."""
        return self.latent_shape

    def from_chain(self, x_0: Tensor) -> Tensor:
        """u_0 → one decoder pass on z = s·u_0 (the decoder's mean), all latents decoded in one batch."""
        return self.decode(x_0)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x → u = E_q[z|x]/s: the scaled posterior mean, the point of the diffusion's data space that x maps to.

        Not DDIM inversion of u to u_T: with a briefly trained latent chain, slerps between inverted u_T decode
        through the deterministic ODE to latents far less likely under p_ψ than the end points (≈ 6 vs 1.6
        bits per latent dimension on digits) and to broken frames; slerps of posterior means stay as likely
        as the end points (the decoder is trained on noisy posterior draws all over the latent space) and
        cost one encoder and one decoder pass instead of 2 × encode_steps network passes.
        """
        self.check_input(x)
        z = self.vae.encode(x)
        return z / self._s(z)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """u → image levels: the decoder's mean at z = s·u."""
        return self.vae.decode(z * self._s(z))
