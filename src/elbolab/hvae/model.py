"""The hierarchical VAE: a bottom-up pass over x and a top-down path of L stochastic levels (VDVAE, NVAE)."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from elbolab.bounds import Bound, Estimator, log_mean_exp, sum_per_example
from elbolab.data.base import ImageData
from elbolab.errors import DataError
from elbolab.hvae.bound import (
    Gaussian,
    level_kl,
    log_prior_over_posterior,
    posterior_draw,
    posterior_mean,
    prior_draw,
    top_down,
    top_given,
)
from elbolab.hvae.config import HVAEConfig
from elbolab.hvae.information import level_rates
from elbolab.likelihoods import pixel_likelihood
from elbolab.model import DECODER, Capabilities, DesignLevels, Encoding, GenerativeModel, class_count
from elbolab.nets.conv import (
    ClassMap,
    ConvDecoder,
    ConvEncoder,
    ResBlock,
    conv_preset,
    downsamples_for,
    full_latent_channels,
)
from elbolab.records import Information
from elbolab.vae.bound import free_bits_kl, kl_weight

#: log-variances of q and p are kept in this range (as the VAE's posterior)
LOGVAR_RANGE = (-30.0, 20.0)


class TopDownBlock(nn.Module):
    """One stochastic level: p(z_l | z_>l) and q(z_l | z_>l, x) off the shared top-down state h (Child 2021, Fig. 3).

    The prior's last convolution starts at zero, so at initialisation p(z_l | z_>l) = N(0, I) and the level
    adds nothing to h but its z. With `residual`, q is NVAE's residual posterior: N(μ_p + Δμ, σ_p² Δσ²)
    (Vahdat & Kautz 2020, eq. 2).
    """

    def __init__(self, width: int, channels: int, residual: bool) -> None:
        super().__init__()
        self.width, self.channels, self.residual = width, channels, residual
        last = nn.Conv2d(width, 2 * channels + width, 1)
        for parameter in last.parameters():
            nn.init.zeros_(parameter)
        self.prior_net = nn.Sequential(ResBlock(width), nn.SiLU(), last)
        self.posterior_net = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, 2 * channels, 1)
        )
        self.from_z = nn.Conv2d(channels, width, 1)
        self.out = ResBlock(width)

    def prior(self, h: Tensor) -> tuple[Gaussian, Tensor]:
        """p(z_l | z_>l) = N(μ_p, σ_p²) and the prior's share of the state update."""
        mean, logvar, feature = self.prior_net(h).split([self.channels, self.channels, self.width], dim=1)
        return (mean, logvar.clamp(*LOGVAR_RANGE)), feature

    def posterior(self, h: Tensor, features: Tensor, prior: Gaussian) -> Gaussian:
        """q(z_l | z_>l, x) from h and the bottom-up features of x at the same resolution."""
        mean, logvar = self.posterior_net(torch.cat([h, features], dim=1)).chunk(2, dim=1)
        if self.residual:
            mean, logvar = prior[0] + mean, prior[1] + logvar
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def update(self, h: Tensor, feature: Tensor, z: Tensor) -> Tensor:
        """h ← ResBlock(h + prior feature + W z_l)."""
        return self.out(h + feature + self.from_z(z))


#: the running gradient scale's decay per step (`HierarchicalVAE.observe_gradient_norm`)
GRADIENT_SCALE_DECAY = 0.99


def without_gradient_scale(module: nn.Module, state: dict[str, Tensor], prefix: str, *_: object) -> None:
    """Weights saved before the running gradient scale existed load with none (0: no step observed)."""
    state.setdefault(f"{prefix}gradient_scale", torch.zeros(()))


class HierarchicalVAE(GenerativeModel):
    """A hierarchical VAE (Sønderby et al. 2016; Child 2021; Vahdat & Kautz 2020) with a discretised decoder:
    p(z_L) ∏_l p(z_l | z_>l) p(x | z_1:L), q(z_L | x) ∏_l q(z_l | z_>l, x), the top-down path shared by both.

    Samples: every level drawn from its prior, then one decoder pass. `encode` gives the top level's posterior
    mean E_q[z_L | x]; `decode` runs the top-down path from a given z_L with every lower level at its prior mean,
    so that interpolation moves through the top level alone. A conditional model (`model.conditional=true`) adds
    a learned map of y to the bottom-up input and to the top-down state above z_L, as the VAE adds one to its
    encoder's and decoder's inputs: q(z | x, y), p(z | y) and p(x | z, y), all zero at initialisation.
    """

    kind = "hvae"
    objective = "ELBO: reconstruction + Σ_l KL_l (β, KL warm-up and free bits optional)"

    def __init__(
        self, config: HVAEConfig, shape: tuple[int, int, int], levels: int, classes: int | None = None
    ) -> None:
        super().__init__(config, shape, levels)
        c, h, w = self.shape
        if h != w:
            raise DataError(f"the hierarchical VAE's networks need square images, got {h}×{w}")
        self.likelihood = pixel_likelihood(config.likelihood, levels)
        preset = conv_preset(config.net)
        width = preset.channels * preset.mult[downsamples_for(h)]
        self.bottom_up = ConvEncoder(c, h, width, config.net)
        r = self.bottom_up.resolution
        self.h_top = nn.Parameter(torch.zeros(1, width, r, r))
        channels = config.channels(full_latent_channels(c, h))
        self.top_down = nn.ModuleList(TopDownBlock(width, k, config.residual_posterior) for k in channels)
        self.decoder = ConvDecoder(width, h, c * self.likelihood.params_per_channel, config.net)
        self.level_shapes = tuple((k, r, r) for k in channels)  # z_L … z_1, top first
        self.latent_shape = self.level_shapes[0]
        self.classes = class_count(config.conditional, classes)
        if self.classes is not None:
            self.input_class = ClassMap(self.classes, (c, h, w))
            self.state_class = ClassMap(self.classes, (width, r, r))
        #: the running scale of the training gradient's norm (`observe_gradient_norm`), 0 before the first step
        self.gradient_scale: Tensor
        self.register_buffer("gradient_scale", torch.zeros(()))
        self.register_load_state_dict_pre_hook(without_gradient_scale)  # type: ignore[no-untyped-call]

    # ---- the passes
    @property
    def level_names(self) -> tuple[str, ...]:
        """The bound's KL terms, top level first: kl_L … kl_1."""
        return tuple(f"kl_{l}" for l in range(self.config.L, 0, -1))

    @property
    def blocks(self) -> list[TopDownBlock]:
        """The levels' blocks, top level first."""
        return [cast(TopDownBlock, block) for block in self.top_down]

    def initial_state(self, n: int, y: Tensor | None = None) -> Tensor:
        """The learned top-down state above z_L, [n, width, r, r] (plus the map of y for a conditional model)."""
        h = self.h_top.expand(n, -1, -1, -1)
        return h if y is None else h + self.state_class(y)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The bottom-up features of x (of x plus the map of y for a conditional model)."""
        return self.bottom_up(x if y is None else x + self.input_class(y))

    def log_likelihood(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | z_1:L) summed over pixels, [B], from the decoder's parameters."""
        return sum_per_example(self.likelihood.log_prob(x, params))

    def _draw(
        self, x: Tensor, features: Tensor, generator: torch.Generator | None, h_0: Tensor | None = None
    ) -> dict[str, Tensor]:
        """One draw z_1:L ~ q of the bound's terms: −log p(x|z) and each level's KL, [B] each (from the top state
        h_0; None: the unconditional one)."""
        h_0 = self.initial_state(len(x)) if h_0 is None else h_0
        h, draws = top_down(self.blocks, h_0, features, posterior_draw(generator))
        kls = {name: sum_per_example(level_kl(d)) for name, d in zip(self.level_names, draws, strict=True)}
        return {"reconstruction": -self.log_likelihood(x, self.decoder(h)), **kls}

    def _log_weight(
        self, x: Tensor, features: Tensor, generator: torch.Generator | None, h_0: Tensor | None = None
    ) -> Tensor:
        """log p(x, z_1:L) − log q(z_1:L | x) at one draw z ~ q, [B] (from the top state h_0; None: the
        unconditional one)."""
        h_0 = self.initial_state(len(x)) if h_0 is None else h_0
        h, draws = top_down(self.blocks, h_0, features, posterior_draw(generator))
        return self.log_likelihood(x, self.decoder(h)) + log_prior_over_posterior(draws)

    # ---- the contract
    @property
    def capabilities(self) -> Capabilities:
        """One decoder pass drawing z_L … z_1 in turn; the ELBO by Monte Carlo (K draws) or the IWAE bound."""
        top = self.blocks[0]
        encoder: list[nn.Module] = [self.bottom_up, top.posterior_net]
        if self.config.residual_posterior:
            encoder.append(top.prior_net)
        return Capabilities(
            samplers=(DECODER,),
            max_steps=1,
            sample_options=("mean",) if self.classes is None else ("mean", "y"),
            estimators=("mc", "iwae"),
            default_estimator=Estimator("mc", 1),
            encoding=Encoding(sum(p.numel() for net in encoder for p in net.parameters()), 1),
            design=self.design_levels(),
            classes=self.classes,
        )

    def design_levels(self) -> DesignLevels:
        """A learned encoder and a generative path of L stochastic steps each; the widest level's share of D;
        the ELBO where β = 1 without free bits."""
        elbo = self.config.beta == 1 and self.config.free_bits == 0
        return DesignLevels(
            encoder="learned",
            encoder_steps=self.config.L,
            latent_fraction=max(math.prod(s) for s in self.level_shapes) / self.dims,
            decoder_steps=self.config.L,
            objective="ELBO" if elbo else "β-ELBO",
        )

    @property
    def skip_gradient_norm(self) -> float:
        """The gradient norm above which the trainer skips an update (VDVAE's update skipping, relative to the
        run's own scale): skip_threshold × the running scale of the norms so far; ∞ when off or before a step."""
        scale = float(self.gradient_scale)
        return self.config.skip_threshold * scale if self.config.skip_threshold > 0 and scale > 0 else math.inf

    @property
    def skips_updates(self) -> bool:
        """Whether the trainer must read each step's gradient norm (update skipping on)."""
        return self.config.skip_threshold > 0

    def observe_gradient_norm(self, norm: Tensor) -> None:
        """Fold one step's finite gradient norm, skipped or not, into the running scale: an exponential average
        (GRADIENT_SCALE_DECAY per step) that starts at the first norm. A spike far above it is skipped; a lasting
        change of scale enters it within a few steps, so that it is taken up instead of skipping every later
        update (a fixed threshold per dimension of x skipped all of them on Fashion-MNIST)."""
        scale = self.gradient_scale
        norm = norm.detach().to(scale)
        scale.copy_(norm if scale <= 0 else GRADIENT_SCALE_DECAY * scale + (1 - GRADIENT_SCALE_DECAY) * norm)

    def _elbo(self, x: Tensor, estimator: Estimator, generator: torch.Generator | None) -> Bound:
        """−ELBO as `reconstruction` + `kl_L` … `kl_1` (K draws of z_1:L, each level's KL in closed form given the
        levels above); "iwae": the importance-weighted bound as the term `iwae`."""
        return self._elbo_given(x, self.labels_for(None, x.shape[0]), estimator, generator)

    def _elbo_given(
        self, x: Tensor, y: Tensor | None, estimator: Estimator, generator: torch.Generator | None
    ) -> Bound:
        """−log p(x | y) ≤ E_q(z|x,y)[−log p(x | z, y)] + Σ_l KL(q(z_l | z_>l, x, y) ‖ p(z_l | z_>l, y)) (the
        hierarchical bound given y, Sohn et al. 2015, eq. 4); the same terms and estimators as without y (None)."""
        features, h_0 = self.features(x, y), self.initial_state(len(x), y)
        if estimator.method == "iwae":
            samples = estimator.samples or 100
            log_w = torch.stack([self._log_weight(x, features, generator, h_0) for _ in range(samples)])
            return Bound({"iwae": -log_mean_exp(log_w, dim=0)}, self.dims)
        draws = [self._draw(x, features, generator, h_0) for _ in range(estimator.samples or 1)]
        terms = {name: torch.stack([d[name] for d in draws]).mean(0) for name in draws[0]}
        # every term is random here (the KLs depend on the levels above): the error is the total's, over K draws
        totals = torch.stack([torch.stack(list(d.values())).sum(0) for d in draws])
        extras = {"stderr": totals.std(0) / math.sqrt(len(draws))} if len(draws) > 1 else {}
        return Bound(terms, self.dims, extras=extras)

    def loss(self, x: Tensor, step: int = 0, total_steps: int | None = None, y: Tensor | None = None) -> Tensor:
        """reconstruction + β·Σ_l KL_l (free bits per dimension of each level; β after KL warm-up), per example;
        given y if conditional."""
        y = self.labels_for(y, x.shape[0])
        h, draws = top_down(self.blocks, self.initial_state(len(x), y), self.features(x, y), posterior_draw())
        reconstruction = -self.log_likelihood(x, self.decoder(h))
        kl = torch.stack([free_bits_kl(level_kl(d), self.config.free_bits) for d in draws]).sum(0)
        return reconstruction + kl_weight(self.config.beta, self.config.kl_warmup_steps, step) * kl

    def _sample(
        self,
        n: int,
        generator: torch.Generator | None,
        sampler: str | None,
        steps: int | None,
        mean: bool = True,
        y: Tensor | None = None,
    ) -> Tensor:
        """z_L ~ p(z_L), then each z_l ~ p(z_l | z_>l), one decoder pass; its mean (default) or a draw from p(x|z).
        Given labels y [n] if conditional; without them y ~ p(y), uniform over the K classes (samples of p(x))."""
        if self.classes is not None and y is None:
            y = torch.randint(self.classes, (n,), generator=generator, device=self.device)
        y = self.labels_for(y, n)
        h, _ = top_down(self.blocks, self.initial_state(n, y), None, prior_draw(generator))
        return self._image(self.decoder(h), mean, generator)

    def _image(self, params: Tensor, mean: bool, generator: torch.Generator | None) -> Tensor:
        x = self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)
        return self.to_levels(x)

    def information(self, data: ImageData, n: int = 1000, generator: torch.Generator | None = None) -> Information:
        """The rate and active units of every level and of all together, and the mean reconstruction's distortion."""
        return level_rates(self, data, n, generator=generator)

    def encode(self, x: Tensor) -> Tensor:
        """The top level's posterior mean E_q[z_L | x]."""
        _, draws = top_down(self.blocks[:1], self.initial_state(len(x)), self.bottom_up(x), posterior_mean)
        return draws[0].z

    @torch.no_grad()
    def decode(self, z: Tensor, mean: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """z_L → image levels: the top-down path with every lower level at its prior mean, one decoder pass."""
        h, _ = top_down(self.blocks, self.initial_state(len(z)), None, top_given(z))
        return self._image(self.decoder(h), mean, generator)
