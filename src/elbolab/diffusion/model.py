"""The diffusion model over images (Ho et al. 2020; Nichol & Dhariwal 2021): a UNet around the Gaussian chain."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from elbolab.bounds import Bound, Estimator
from elbolab.data.base import ImageData
from elbolab.diffusion.chain import GaussianDiffusion, build_net
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.encoder import MeanEncoder
from elbolab.diffusion.information import chain_rate_distortion, forward_information
from elbolab.diffusion.samplers import SAMPLERS, Churn
from elbolab.diffusion.weighting import describe
from elbolab.errors import ConfigError
from elbolab.information import InformationCurve
from elbolab.model import Capabilities, DesignLevels, Encoding, GenerativeModel, class_count
from elbolab.records import Information

#: what `sample` takes beyond the sampler and steps: DDIM's η, the reverse variance of the ancestral sampler and the
#: churn of EDM's stochastic sampler ("heun-churn", `samplers.Churn`)
CHURN_OPTIONS = ("s_churn", "s_min", "s_max", "s_noise")
SAMPLE_OPTIONS = ("eta", "variance", *CHURN_OPTIONS)

#: images of its own batch an unprepared importance estimate fits its proposal on (see `DiffusionModel._elbo`)
SELF_PILOT_N = 16

OBJECTIVES = {
    "simple": "L_simple (ε-MSE)",
    "vlb": "L_vlb (the bound, bits/dim)",
    "hybrid": "L_hybrid = L_simple + λ L_vlb (learned variance)",
}


class ChainModel(GenerativeModel):
    """A model whose samples come from a Gaussian chain's reverse process (`self.diffusion`) over `chain_shape`,
    turned into images by `from_chain`: diffusion (over x) and latent diffusion (over u = z/s)."""

    diffusion: GaussianDiffusion
    #: whether every reverse step clips x̂_0 to [−1, 1]
    clip: bool = False

    def chain_shape(self) -> tuple[int, ...]:
        """The shape of one state of the chain."""
        raise NotImplementedError

    def from_chain(self, x_0: Tensor) -> Tensor:
        """The chain's final state → images in the data's levels."""
        raise NotImplementedError

    def fitted_estimator(self) -> dict[str, Tensor]:
        """The importance proposal's weights (and, for the discrete chain, its control variate's slopes), once
        fitted."""
        d = self.diffusion
        if not d.proposal_fitted():
            return {}
        return {
            "time_proposal": d.time_proposal.clone(),
            **({"control_slopes": d.control_slopes.clone()} if d.control_slopes.numel() else {}),
        }

    def load_fitted_estimator(self, state: Mapping[str, Tensor]) -> None:
        """Put back a kept importance proposal (weights of the same number of bins) and the control variate's
        slopes (kept flat or not; a fit kept without them leaves the control variate out, which biases nothing)."""
        d = self.diffusion
        weights = state["time_proposal"]
        slopes = state.get("control_slopes", torch.zeros_like(d.control_slopes))
        if (
            not set(state) <= {"time_proposal", "control_slopes"}
            or weights.shape != d.time_proposal.shape
            or slopes.numel() != d.control_slopes.numel()
        ):
            raise ConfigError(
                f"a kept pilot fit does not match this model: {sorted(state)}, proposal "
                f"{list(weights.shape)} for {list(d.time_proposal.shape)}, {slopes.numel()} slopes "
                f"for {d.control_slopes.numel()}"
            )
        d.time_proposal.copy_(weights)
        d.control_slopes.copy_(slopes.reshape(d.control_slopes.shape))

    def prepare_estimator(self, estimator: Estimator, pilot: Tensor, generator: torch.Generator | None = None) -> None:
        """For the importance proposal: fit the chain's q(t) on a pilot pass over `pilot` (training images) mapped
        to the chain's space (`chain_pilot`)."""
        if estimator.proposal == "importance":
            self.check_input(pilot)
            x_0 = self.chain_pilot(pilot.to(self.device), generator)
            self.diffusion.fit_proposal(x_0, estimator.steps, generator, clip=self.clip)

    def chain_pilot(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Images → the chain's x_0 that its bound integrates over (the pilot a proposal is fitted on)."""
        raise NotImplementedError

    def self_piloted(
        self, estimator: Estimator, x: Tensor, generator: torch.Generator | None, bound: Callable[[], Bound]
    ) -> Bound:
        """`bound()` with the importance proposal it asks for: as prepared, or, where none was prepared on training
        images (`prepare_estimator`), fitted for this call only on a pilot pass over the first SELF_PILOT_N of the
        images bounded: the pilot's draws are independent of the estimate's, so the estimate stays unbiased."""
        if estimator.proposal != "importance" or self.diffusion.proposal_fitted():
            return bound()
        self.prepare_estimator(estimator, x[:SELF_PILOT_N], generator)
        try:
            return bound()
        finally:
            self.diffusion.time_proposal.zero_()
            self.diffusion.control_slopes.zero_()

    def _sample(
        self,
        n: int,
        generator: torch.Generator | None,
        sampler: str | None,
        steps: int | None,
        eta: float | None = None,
        variance: str | None = None,
        y: Tensor | None = None,
        guidance: float | None = None,
        **churn: float,
    ) -> Tensor:
        """x_T ~ N(0, I), then `sampler` (a name in `samplers.SAMPLERS`) over `steps` steps (x̂_0 clipped at every
        step if `clip`; `churn` the options of "heun-churn", `samplers.Churn`), then `from_chain`. A conditional
        model samples given labels y [n] (None: unconditionally, through the null class) with classifier-free
        guidance w = `guidance` (default 1, the conditional model itself, the one its bound is of; 0 the
        unconditional one)."""
        y, w = self.guided_labels(y, n, guidance)
        x_0 = self.diffusion.sample(
            (n, *self.chain_shape()),
            sampler,
            steps,
            eta,
            variance,
            clip=self.clip,
            generator=generator,
            device=self.device,
            churn=Churn(**churn),
            y=y,
            guidance=w,
        )
        return self.from_chain(x_0)


class DiffusionModel(ChainModel):
    """Images in [−1, 1] with `levels` levels; the decoder p_θ(x_0|x_1) is a Gaussian binned over the levels."""

    kind = "diffusion"
    #: whether every reverse step clips x̂_0 to [−1, 1] (sampling, bound, encoding alike)
    clip: bool = True
    #: K labels of a conditional model (None: unconditional, also for a subclass built around another network)
    classes: int | None = None

    def __init__(
        self, config: DiffusionConfig, shape: tuple[int, int, int], levels: int, classes: int | None = None
    ) -> None:
        super().__init__(config, shape, levels)
        c, h, w = self.shape
        encoder = MeanEncoder(c, config.encoder_width) if config.encoder == "learned" else None
        self.classes = class_count(config.conditional, classes)
        self.diffusion = GaussianDiffusion(
            config, build_net(config, c, max(h, w), self.classes), levels, encoder=encoder, classes=self.classes
        )

    @property
    def objective(self) -> str:
        """The name of what `loss` optimises (and how the forward process's learned parts are trained)."""
        cfg = self.config
        if cfg.time == "discrete":
            one_step = "; one step, λ_1 learned on the ELBO" if cfg.T == 1 and cfg.learn_endpoints else ""
            return OBJECTIVES[cfg.loss] + one_step
        ends = "learned end points on the ELBO" if cfg.learn_endpoints else "fixed end points"
        encoder = "; DiffEnc's mean x_φ learned on the ELBO" if cfg.encoder == "learned" else ""
        return f"{describe(cfg.loss, cfg.sigmoid_bias)}; {cfg.schedule} γ(t), {ends}{encoder}"

    @property
    def capabilities(self) -> Capabilities:
        """Every sampler over 1..T steps (any number in continuous time); the bound exact (all T steps) or by
        Monte Carlo over t, iid, stratified or importance-sampled (its T-step form too in continuous time; by
        default importance-sampled steps in discrete time, see `default_estimator`); DDIM inversion, whose cost
        counts DiffEnc's encoder among the learned parameters of the map to the latent."""
        cfg = self.config
        samplers = (cfg.sampler, *(name for name in SAMPLERS if name != cfg.sampler))
        passes = min(cfg.encode_steps, cfg.T) * (1 + cfg.encode_fixed_point)
        continuous = cfg.time == "continuous"
        return Capabilities(
            samplers=samplers,
            max_steps=None if continuous else cfg.T,
            sample_options=SAMPLE_OPTIONS if self.classes is None else (*SAMPLE_OPTIONS, "y", "guidance"),
            estimators=("mc", "exact"),
            default_estimator=self.default_estimator(),
            encoding=Encoding(
                0 if self.diffusion.encoder is None else self.diffusion.encoder.learned_parameters(), passes
            ),
            proposals=("uniform", "stratified", "importance"),
            bound_steps=continuous,
            design=self.design_levels(),
            classes=self.classes,
            null_class=self.classes is not None,
        )

    def check_sampling(self, sampler: str | None = None, steps: int | None = None, **options: Any) -> None:
        """As every model's, and the options' values: η ≥ 0 and churn that `samplers.Churn` takes."""
        super().check_sampling(sampler, steps, **options)
        Churn(**{k: options[k] for k in CHURN_OPTIONS if k in options})
        if options.get("eta") is not None and options["eta"] < 0:
            raise ConfigError(f"eta must be ≥ 0, got {options['eta']}")

    def design_levels(self) -> DesignLevels:
        """A Gaussian chain of T steps (None: continuous time; 1 for the one-step model) over latents the size of
        x, fixed, or with DiffEnc's learned mean; the ELBO where the loss is the bound, a reweighting of it
        otherwise (L_simple, hybrid, sigmoid, EDM)."""
        steps = None if self.config.time == "continuous" else self.config.T
        return DesignLevels(
            encoder="learned" if self.config.encoder == "learned" else "fixed",
            encoder_steps=steps,
            latent_fraction=1.0,
            decoder_steps=steps,
            objective="ELBO" if self.config.loss == "vlb" else "weighted",
        )

    def default_estimator(self) -> Estimator:
        """The chain's (`GaussianDiffusion.default_estimator`), except that the discrete chain's Monte-Carlo
        bound draws its steps stratified from the importance proposal fitted on a pilot pass (`elbo_samples` + 4
        network passes per image, L_0 once in each of 4 replicates), each replicate's ε a Latin hypercube and less
        a control variate fitted on the same pilot (`noise_control`): its per-image standard error is far below
        the uniform draw's at equal passes (benchmarks/results/likelihood.json, t_step_checks). The one-step
        chain has no step to draw: its estimate is L_T + L_0 over `elbo_samples` draws of x_1."""
        estimator = self.diffusion.default_estimator()
        if self.config.time == "discrete" and self.config.T > 1 and estimator.method == "mc":
            return replace(estimator, proposal="importance")
        return estimator

    def check_estimator(self, estimator: Estimator | None) -> Estimator:
        """As every model's; in continuous time "exact" names its T-step form, T = config.T unless given."""
        estimator = super().check_estimator(estimator)
        if self.config.time == "continuous" and estimator.method == "exact" and estimator.steps is None:
            return replace(estimator, steps=self.config.T)
        return estimator

    def chain_pilot(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """The chain runs over the images: the pilot is x itself (the bound `elbo` computes, x̂_0 clipped)."""
        return x

    def loss(
        self,
        x: Tensor,
        step: int = 0,
        total_steps: int | None = None,
        generator: torch.Generator | None = None,
        y: Tensor | None = None,
    ) -> Tensor:
        """The configured objective per example, [B] (see `GaussianDiffusion.loss`); a conditional model's given
        labels y (None: the null class), with label dropout."""
        self.check_input(x)
        return self.diffusion.loss(x, generator, None if y is None else self.check_labels(y, x.shape[0]))

    def _elbo(self, x: Tensor, estimator: Estimator, generator: torch.Generator | None) -> Bound:
        """The bound on −log p(x): a conditional model's through its null class (see `_elbo_given`)."""
        return self._elbo_given(x, None, estimator, generator)

    def _elbo_given(
        self, x: Tensor, y: Tensor | None, estimator: Estimator, generator: torch.Generator | None
    ) -> Bound:
        """−ELBO per example in nats: terms prior (L_T), diffusion (Σ_{t≥2} L_{t−1}), reconstruction (L_0);
        "exact" (all T steps, with per_step [B, T]) or "mc" (with extras["stderr"]).

        It bounds the model `sample` draws from: x̂_0 clipped to [−1, 1] in every reverse step (if `clip`).
        An importance proposal not prepared on training images is fitted for this call only (`self_piloted`).
        With labels y [B] (a conditional model) it is the bound
        on −log p(x | y), the same terms, y None the unconditional bound through the null class (the proposal
        is fitted on that one: any proposal leaves the estimate unbiased)."""
        estimator = self.check_estimator(estimator)
        return self.self_piloted(
            estimator, x, generator, lambda: self.diffusion.elbo(x, estimator, generator=generator, clip=self.clip, y=y)
        )

    def chain_shape(self) -> tuple[int, ...]:
        """The chain runs over the images themselves: x_T, …, x_0 of shape [C, H, W]."""
        return self.shape

    def from_chain(self, x_0: Tensor) -> Tensor:
        """x_0 in [−1, 1] → the data's levels."""
        return self.to_levels(x_0)

    def information_curve(self, x: Tensor, draws: int = 256, seed: int = 0) -> InformationCurve | None:
        """I(x_0; x_t) of the fixed forward process along t for x_0 uniform over the images x (no network involved);
        None for DiffEnc's learned mean, whose curve this does not measure."""
        if self.config.encoder == "learned":
            return None
        return forward_information(x.cpu(), self.diffusion.schedule, draws=draws, seed=seed)

    def information(self, data: ImageData, n: int = 16, generator: torch.Generator | None = None) -> Information:
        """Progressive rate–distortion along t on the first n images (the exact T-step bound of each)."""
        return Information(chain=chain_rate_distortion(self.diffusion, data, n, generator=generator))

    @torch.no_grad()
    def encode(self, x: Tensor, steps: int | None = None) -> Tensor:
        """x_0 → x_T by deterministic DDIM inversion (`steps`, default config.encode_steps)."""
        self.check_input(x)
        return self.diffusion.encode(x, steps, clip=self.clip)

    @torch.no_grad()
    def decode(self, z: Tensor, steps: int | None = None) -> Tensor:
        """x_T → image levels by DDIM with η = 0."""
        return self.to_levels(self.diffusion.decode(z, steps, clip=self.clip))
