"""`GaussianDiffusion`: the Gaussian chain with a network, over tensors of any shape [B, ...].

It owns the schedule, the network net(x_t, t) and the timestep resampler, and provides the
training loss, the bound and the samplers. Nothing here knows about images: the image model
(`DiffusionModel`) and latent diffusion both wrap it, passing `levels` for discrete data or
None for continuous data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from elbolab.bounds import Bound, Estimator, nats_to_bpd
from elbolab.diffusion import continuous, edm
from elbolab.diffusion.bound import exact_bound, mc_bound, pilot_step_fit, prior_term, vlb_term
from elbolab.diffusion.conditioning import by_class, drop_labels, guide, labels_at
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.encoder import MeanEncoder
from elbolab.diffusion.forward import q_sample
from elbolab.diffusion.learned_schedule import (
    VDM_GAMMA_MIN,
    LearnedSchedule,
    OneStepSchedule,
    level_gamma_min,
    uniform_grid,
)
from elbolab.diffusion.noise_control import FEATURES
from elbolab.diffusion.reverse import Denoised, Denoiser, NetFn
from elbolab.diffusion.samplers import Churn, ddim, ddim_invert, run_sampler
from elbolab.diffusion.schedule import ContinuousSchedule, NoiseSchedule, Schedule, time_grid
from elbolab.diffusion.time_proposal import TimeProposal, bin_of_step, step_edges
from elbolab.diffusion.timesteps import LossSecondMomentResampler, draw_steps
from elbolab.diffusion.weighting import weight
from elbolab.errors import ConfigError
from elbolab.nets.diffusers_unet import DiffusersUNet
from elbolab.nets.unet import UNet


def build_net(config: DiffusionConfig, channels: int, size: int, classes: int | None = None) -> nn.Module:
    """The network net(x_t, t) for data of `channels` channels and side `size`, with C more output
    channels for a learned variance: elbolab's UNet, or diffusers' UNet2DModel laid out like it; net(x_t, t, y)
    with a class embedding for K = `classes` labels and the null class."""
    out_channels = 2 * channels if config.variance == "learned" else channels
    if config.net == "diffusers-unet2d":
        if classes is not None:
            raise ConfigError("model.conditional=true needs elbolab's UNet (model.net=unet)")
        return DiffusersUNet.like(config.unet.spec(), channels, out_channels, size, config.T)
    return UNet(channels, out_channels, config.unet, image_size=size, classes=classes)


#: the power of two the schedule's own backward pass is scaled by (`GaussianDiffusion.follow_bound`)
SCHEDULE_GRAD_SCALE = 2.0**10
#: bins of the importance proposal over t fitted on a pilot pass (`GaussianDiffusion.fit_proposal`)
PROPOSAL_BINS = 64


def build_schedule(config: DiffusionConfig, levels: int | None) -> NoiseSchedule:
    """The model's λ(t): the named T-step schedule; for one step (T = 1) its one log-SNR −γ_max, learned if
    `learn_endpoints`; or in continuous time γ of the named shape between end points, γ_min from the data's
    levels unless given (σ_0 = bin_fraction × 2/(K − 1))."""
    if config.time == "discrete":
        if config.T == 1:
            return OneStepSchedule(config.gamma_max, config.learn_endpoints)
        return Schedule(config.schedule, config.T)
    gamma_min = config.gamma_min
    if gamma_min is None:
        gamma_min = VDM_GAMMA_MIN if levels is None else level_gamma_min(levels, config.bin_fraction)
    return LearnedSchedule(config.schedule, config.T, gamma_min, config.gamma_max, config.learn_endpoints)


@dataclass(frozen=True)
class Direct:
    """The network's output read as the prediction its config names: ε, x_0 or v."""

    parameterisation: str

    def denoiser(self, net: NetFn, schedule: NoiseSchedule) -> Denoiser:
        """The network as it is, with its parameterisation."""
        return Denoiser(net, self.parameterisation)


@dataclass(frozen=True)
class Preconditioned:
    """EDM's D(x̃; σ̃) around the network (Karras et al. 2022, eq. 7): an x̂_0-denoiser (`edm.preconditioned`)."""

    sigma_data: float

    def denoiser(self, net: NetFn, schedule: NoiseSchedule) -> Denoiser:
        """D = c_skip x̃ + c_out F(c_in x̃, c_noise), read as x̂_0."""
        return Denoiser(edm.preconditioned(net, schedule, self.sigma_data), "x0")


def output_form(config: DiffusionConfig) -> Direct | Preconditioned:
    """How the network's output becomes a denoiser, read from `config.parameterisation` once."""
    if config.parameterisation == "edm":
        return Preconditioned(config.sigma_data)
    return Direct(config.parameterisation)


@dataclass(frozen=True)
class StepObjective:
    """The discrete chain's per-step objective, mse_weight ‖ε − ε̂‖² + vlb_weight T L_{i−1} (bits/dim), read from
    `config.loss` once: L_simple (1, 0; Ho et al. 2020, eq. 14), L_vlb (0, 1), or L_hybrid (1, λ) with the mean
    frozen in L_vlb (Nichol & Dhariwal 2021, eq. 16). L_simple runs in float32, the bound's terms in float64."""

    mse_weight: float
    vlb_weight: float
    stop_mean_grad: bool = False
    #: whether L_{i−1} is computed (in float64) at all: L_vlb and L_hybrid, whatever λ is
    with_vlb: bool = True

    @staticmethod
    def of(config: DiffusionConfig) -> StepObjective:
        """The objective `config.loss` names (simple, vlb or hybrid)."""
        return {
            "simple": StepObjective(1.0, 0.0, with_vlb=False),
            "vlb": StepObjective(0.0, 1.0),
            "hybrid": StepObjective(1.0, config.hybrid_weight, stop_mean_grad=True),
        }[config.loss]

    @property
    def dtype(self) -> torch.dtype:
        """float32 for an MSE of network outputs alone (it loses nothing), float64 once bound terms enter."""
        return torch.float64 if self.with_vlb else torch.float32

    @property
    def is_bound(self) -> bool:
        """Whether the objective is the bound itself (L_vlb): with a learned forward process the loss is then the
        whole bound, L_T included."""
        return self.mse_weight == 0


class Chain(ABC):
    """The time axis of the Gaussian chain, chosen once when the model is built (`build_chain`): its bound and
    estimators, its training loss, the importance proposal over t and its pilot fit, and its samplers' grid. It
    reads the model it serves (schedule, network, encoder, buffers), so no state is copied out of it."""

    #: the proposal over t of the config's Monte-Carlo estimator (`default_estimator`)
    default_proposal: str

    def __init__(self, model: GaussianDiffusion) -> None:
        self.model = model

    @property
    @abstractmethod
    def proposal_bins(self) -> int:
        """Bins of the importance proposal over t."""

    @property
    @abstractmethod
    def control_bins(self) -> int:
        """Rows of the ε control variate's slopes (zero where the chain has none)."""

    @property
    @abstractmethod
    def own_steps(self) -> int | None:
        """The steps of the chain's exact bound when an estimator names none (None: the chain's own T)."""

    @abstractmethod
    def loss(self, x_0: Tensor, generator: torch.Generator | None, y: Tensor | None) -> Tensor:
        """The per-example training objective (see `GaussianDiffusion.loss`)."""

    @abstractmethod
    def exact(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """The bound with every term computed."""

    @abstractmethod
    def mc(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """The bound by Monte Carlo over t, with its standard error."""

    @abstractmethod
    def pilot(self, denoiser: Denoiser, x_0: Tensor, steps: int | None, generator: torch.Generator | None) -> Tensor:
        """E[g²] per proposal bin on a pilot batch, g the integrand the Monte-Carlo bound weights."""

    @abstractmethod
    def proposal_edges(self) -> Tensor | None:
        """The importance proposal's bins in t (None: equal bins)."""

    @abstractmethod
    def grid(self, steps: int | None) -> Tensor:
        """The samplers' descending grid of times over `steps` steps (None: T)."""

    def elbo(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """−ELBO per example in nats by the estimator's method (`exact` or `mc`)."""
        estimators = {"exact": self.exact, "mc": self.mc}
        if estimator.method not in estimators:
            raise ConfigError(f"the diffusion chain has no {estimator.method!r} bound; it offers exact and mc")
        return estimators[estimator.method](x_0, estimator, denoiser, levels, g)

    def default_estimator(self) -> Estimator:
        """The config's estimator: Monte Carlo over t with `elbo_samples` draws, or the exact bound."""
        cfg = self.model.config
        if cfg.elbo_method == "exact":
            return Estimator("exact", steps=self.own_steps)
        return Estimator("mc", cfg.elbo_samples, self.default_proposal)


class DiscreteChain(Chain):
    """The T-step chain (Ho et al. 2020): −ELBO = L_T + Σ L_{i−1} + L_0 (`bound`), trained on L_simple, L_vlb or
    L_hybrid at one step per example; the proposal over whole steps with its ε control variate; the T-step grid."""

    default_proposal = "uniform"

    def __init__(self, model: GaussianDiffusion) -> None:
        super().__init__(model)
        self.objective = StepObjective.of(model.config)
        self.importance = model.config.timesteps == "importance"  # steps drawn from the loss history

    @property
    def proposal_bins(self) -> int:
        """min(T, PROPOSAL_BINS): whole steps, the first ones a bin each."""
        return min(self.model.config.T, PROPOSAL_BINS)

    @property
    def control_bins(self) -> int:
        """One row of slopes per proposal bin."""
        return self.proposal_bins

    @property
    def own_steps(self) -> int | None:
        """The chain's own T steps."""
        return None

    def loss(self, x_0: Tensor, generator: torch.Generator | None, y: Tensor | None) -> Tensor:
        """The objective at one step i per example, reweighted by 1/(T p_i) (unbiased for any p; `StepObjective`),
        L_T left out (constant) unless the one-step chain's λ_1 is learned, which follows L_T + L_{i−1}/p_i."""
        model, obj, T = self.model, self.objective, self.model.config.T
        schedule = model.schedule
        probs = (
            model.resampler.probabilities()
            if self.importance
            else torch.full((T,), 1.0 / T, dtype=torch.float64, device=model.resampler.seen.device)
        )
        i, p_i = draw_steps(x_0.shape[0], probs, generator)
        x_0 = x_0.to(obj.dtype)
        eps = torch.randn(x_0.shape, generator=generator, device=x_0.device, dtype=x_0.dtype)
        t = schedule.times(i)
        x_t = q_sample(x_0, schedule.log_snr(t), eps)
        d = model.denoiser(y=model.training_labels(y, x_0, generator)).denoise(x_t, t, schedule)
        term = obj.mse_weight * (eps - d.eps_hat).pow(2).flatten(1).mean(1)
        nats = None
        if obj.with_vlb:
            nats = self.step_term(x_0, d, i, obj.stop_mean_grad)
            term = term + obj.vlb_weight * (T * nats_to_bpd(nats, x_0[0].numel()))
        if self.importance and model.training:
            model.resampler.update(i, term)
        objective = term / (T * p_i)
        if not model.learned_forward():
            return objective.float()
        step = (nats if nats is not None and not obj.stop_mean_grad else self.step_term(x_0, d, i)) / p_i
        bound = nats_to_bpd(prior_term(x_0, schedule) + step, x_0[0].numel())
        return (bound if obj.is_bound else model.follow_bound(objective, bound)).float()

    def step_term(self, x_0: Tensor, d: Denoised, i: Tensor, stop_mean_grad: bool = False) -> Tensor:
        """L_{i−1} per example in nats with the model's reverse variance and decoder (`bound.vlb_term`)."""
        model = self.model
        return vlb_term(x_0, d, i, model.schedule, model.config.variance, model.levels, stop_mean_grad)

    def elbo(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """−ELBO per example over the chain's own T steps (an estimator of another T is refused)."""
        T = self.model.config.T
        if estimator.steps not in (None, T):
            raise ConfigError(f"the discrete-time chain's bound is over its own T = {T} steps")
        return super().elbo(x_0, estimator, denoiser, levels, g)

    def exact(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """All T terms, one draw of x_i each (`bound.exact_bound`)."""
        model = self.model
        return exact_bound(
            denoiser,
            x_0,
            model.schedule,
            variance=model.config.variance,
            levels=levels,
            generator=g,
            max_batch=model.config.max_batch,
        )

    def mc(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """K draws of steps i per example (`bound.mc_bound`), from the proposal `step_proposal` gives."""
        model, cfg = self.model, self.model.config
        proposal, control = self.step_proposal(estimator, x_0.device)
        return mc_bound(
            denoiser,
            x_0,
            model.schedule,
            samples=estimator.samples or cfg.elbo_samples,
            proposal=proposal,
            stratified=estimator.proposal != "uniform",
            control=control,
            variance=cfg.variance,
            levels=levels,
            generator=g,
            max_batch=cfg.max_batch,
        )

    def step_proposal(self, estimator: Estimator, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
        """(q over steps 1..T, control slopes [T, FEATURES]): for "uniform" draws the training resampler's q once
        it has a history, uniform for "stratified", the pilot-fitted q with its control variate for "importance"."""
        model = self.model
        if estimator.proposal == "importance":
            return model.proposal().steps(model.config.T, device), self.step_control()
        if estimator.proposal == "stratified" or not model.resampler.ready():
            return None, None
        return model.resampler.probabilities(), None

    def step_control(self) -> Tensor:
        """The control variate's slopes per step, [T, FEATURES] (those of each step's bin)."""
        slopes = self.model.control_slopes
        return slopes[bin_of_step(self.step_edges(), self.model.config.T).to(slopes.device)]

    def pilot(self, denoiser: Denoiser, x_0: Tensor, steps: int | None, generator: torch.Generator | None) -> Tensor:
        """E[(L_{i−1} − control)²] per bin of whole steps, the control variate's slopes fitted on the same pass
        into `control_slopes` (`bound.pilot_step_fit`); `steps` is the chain's own T."""
        model = self.model
        slopes, second = pilot_step_fit(
            denoiser,
            x_0,
            model.schedule,
            self.step_edges(),
            variance=model.config.variance,
            levels=model.levels,
            generator=generator,
            max_batch=model.config.max_batch,
        )
        model.control_slopes.copy_(slopes)
        return second

    def step_edges(self) -> Tensor:
        """The proposal's bins over the steps (`time_proposal.step_edges`)."""
        return step_edges(self.model.config.T, self.proposal_bins)

    def proposal_edges(self) -> Tensor | None:
        """Whole steps, the first ones each a bin of its own."""
        return self.step_edges()

    def grid(self, steps: int | None) -> Tensor:
        """`steps` of the T-step grid (`schedule.time_grid`)."""
        return time_grid(self.model.config.T, steps)


class ContinuousChain(Chain):
    """Continuous time (VDM, Kingma et al. 2021): −ELBO = prior + ½ ∫ γ′(t) ‖ε − ε̂‖² dt + reconstruction
    (`continuous`), or its T-step form; trained on a weighting of the diffusion term, t low-discrepancy over the
    batch; the proposal over equal bins of t; the samplers' grid uniform in t."""

    default_proposal = "stratified"

    def __init__(self, model: GaussianDiffusion) -> None:
        super().__init__(model)
        model.continuous_schedule()  # a clear error for a schedule without γ′
        loss = model.config.loss
        self.draw = model.edm_draw if loss == "edm" else self.uniform_draw
        self.objective = {"vlb": self.bound_itself, "simple": self.simple, "edm": self.edm_weighted}.get(
            loss, self.weighted
        )

    @property
    def proposal_bins(self) -> int:
        """PROPOSAL_BINS equal bins of t."""
        return PROPOSAL_BINS

    @property
    def control_bins(self) -> int:
        """No control variate."""
        return 0

    @property
    def own_steps(self) -> int | None:
        """The T-step form with the config's T."""
        return self.model.config.T

    def loss(self, x_0: Tensor, generator: torch.Generator | None, y: Tensor | None) -> Tensor:
        """t_b = (u + b/B) mod 1 (VDM, App. I), or EDM's draw: the ELBO in bits/dim (one z_0 and one t per example),
        or the objective `config.loss` names for the network (`objective`), while the learned forward process
        (end points, shape, DiffEnc's encoder) follows the bound, the objective's value unchanged."""
        model = self.model
        schedule = model.continuous_schedule()
        x_0 = x_0.double()
        B, D, device = x_0.shape[0], x_0[0].numel(), x_0.device
        u = torch.rand((), generator=generator, dtype=torch.float64, device=device)
        t, q_t, mass = self.draw((u + torch.arange(B, dtype=torch.float64, device=device) / B) % 1.0)
        eps, eps_0 = torch.randn((2, *x_0.shape), generator=generator, dtype=torch.float64, device=device)
        denoiser = model.denoiser(y=model.training_labels(y, x_0, generator))
        enc = model.encoder
        mse = continuous.squared_error(denoiser, x_0, t, eps, schedule, enc)
        mean_0 = None if enc is None else continuous.encoded_mean(enc, x_0, 0.0, schedule)
        nats = (
            continuous.encoded_prior_term(x_0, schedule, enc)
            + continuous.reconstruction_term(x_0, schedule, model.levels, eps_0, mean_0)
            + 0.5 * schedule.gamma_prime(t) * mse / q_t
        )
        return self.objective(mse, nats_to_bpd(nats, D), t, mass, D).float()

    def uniform_draw(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(t, q(t) = 1, Z = 1): the stratified uniform draw as it is."""
        one = torch.ones((), dtype=torch.float64, device=t.device)
        return t, one, one

    def bound_itself(self, mse: Tensor, bound: Tensor, t: Tensor, mass: Tensor, D: int) -> Tensor:
        """The ELBO in bits/dim ("vlb")."""
        return bound

    def simple(self, mse: Tensor, bound: Tensor, t: Tensor, mass: Tensor, D: int) -> Tensor:
        """L_simple = mean ‖ε − ε̂‖², uniform in t (Ho et al. 2020, eq. 14)."""
        return self.model.follow_bound(mse / D, bound)

    def weighted(self, mse: Tensor, bound: Tensor, t: Tensor, mass: Tensor, D: int) -> Tensor:
        """½ w(λ_t) γ′(t) ‖ε − ε̂‖² in bits/dim, a named w (`weighting.weight`; Kingma & Gao 2023)."""
        cfg, schedule = self.model.config, self.model.continuous_schedule()
        with torch.no_grad():  # the schedule enters as a fixed weight: its parameters learn from the bound alone
            w = weight(cfg.loss, schedule.log_snr(t), cfg.sigmoid_bias) * 0.5 * schedule.gamma_prime(t)
        return self.model.follow_bound(nats_to_bpd(w * mse, D), bound)

    def edm_weighted(self, mse: Tensor, bound: Tensor, t: Tensor, mass: Tensor, D: int) -> Tensor:
        """EDM's weighting over its own draw of t: ½ w(λ) γ′ / q(t) = ½ Z (σ̃² + σ_data²)/σ_data² (Karras et al. 2022)."""
        cfg, schedule = self.model.config, self.model.continuous_schedule()
        with torch.no_grad():
            w = 0.5 * mass * edm.loss_weight(edm.ve_sigma(schedule.log_snr(t)), cfg.sigma_data)
        return self.model.follow_bound(nats_to_bpd(w * mse, D), bound)

    def exact(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """The T-step form with all T terms (`continuous.exact_steps_bound`), T the estimator's or the config's."""
        model = self.model
        return continuous.exact_steps_bound(
            denoiser,
            x_0,
            model.continuous_schedule(),
            estimator.steps or model.config.T,
            levels=levels,
            generator=g,
            max_batch=model.config.max_batch,
            encoder=model.encoder,
        )

    def mc(
        self, x_0: Tensor, estimator: Estimator, denoiser: Denoiser, levels: int | None, g: torch.Generator | None
    ) -> Bound:
        """K draws of t per example (of steps of the T-step form if the estimator names T; `continuous.mc_bound`),
        iid, stratified, or from the pilot-fitted proposal."""
        model = self.model
        return continuous.mc_bound(
            denoiser,
            x_0,
            model.continuous_schedule(),
            samples=estimator.samples or model.config.elbo_samples,
            proposal=model.proposal() if estimator.proposal == "importance" else None,
            stratified=estimator.proposal != "uniform",
            T=estimator.steps,
            levels=levels,
            generator=g,
            max_batch=model.config.max_batch,
            encoder=model.encoder,
        )

    def pilot(self, denoiser: Denoiser, x_0: Tensor, steps: int | None, generator: torch.Generator | None) -> Tensor:
        """E[g(t)²] per equal bin of t, two draws per bin and image (`continuous.pilot_second_moment`), of the
        T-step form's integrand if `steps`."""
        model = self.model
        return continuous.pilot_second_moment(
            denoiser,
            x_0,
            model.continuous_schedule(),
            PROPOSAL_BINS,
            2,
            T=steps,
            encoder=model.encoder,
            generator=generator,
            max_batch=model.config.max_batch,
        )

    def proposal_edges(self) -> Tensor | None:
        """Equal bins of t."""
        return None

    def grid(self, steps: int | None) -> Tensor:
        """`steps` (None: T) steps uniform in t (`learned_schedule.uniform_grid`)."""
        return uniform_grid(steps or self.model.config.T)


def build_chain(model: GaussianDiffusion) -> Chain:
    """The chain `config.time` names, for `model`."""
    return ContinuousChain(model) if model.config.time == "continuous" else DiscreteChain(model)


class GaussianDiffusion(nn.Module):
    """A T-step variance-preserving diffusion model p_θ(x_{0:T}) around a network net(x_t, t).

    The network maps (x_t [B, C, ...], t [B] ∈ [0, 1]) to the output named by
    `config.parameterisation`, with C more channels (dim 1) for a learned variance. `schedule`, if
    given, replaces the config's named one (any `NoiseSchedule`, e.g. a table; in continuous time a
    `ContinuousSchedule`). `encoder` is DiffEnc's learned mean x_φ (config.encoder = "learned", continuous time),
    built by the wrapper that knows the data's layout. Its time axis, discrete or continuous, is a `Chain` chosen
    once here; the loss, the bound and the samplers delegate to it.
    """

    schedule: NoiseSchedule
    encoder: MeanEncoder | None
    net: nn.Module
    chain: Chain
    #: the importance proposal's weights per bin of `proposal_edges` (zeros until `fit_proposal`)
    time_proposal: Tensor
    #: the ε control variate's slopes per bin, [bins, FEATURES] (discrete chain; [0, FEATURES] in continuous time)
    control_slopes: Tensor

    def __init__(
        self,
        config: DiffusionConfig,
        net: nn.Module,
        levels: int | None = None,
        schedule: NoiseSchedule | None = None,
        encoder: MeanEncoder | None = None,
        classes: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.classes = classes  # K labels of a conditional network net(x_t, t, y), K itself the null class
        self.schedule = build_schedule(config, levels) if schedule is None else schedule
        if self.schedule.T != config.T:
            raise ConfigError(f"the schedule has T = {self.schedule.T} steps but the config T = {config.T}")
        if (encoder is not None) != (config.encoder == "learned"):
            raise ConfigError(
                f"encoder={config.encoder} needs {'a' if encoder is None else 'no'} learned mean encoder here "
                "(model.encoder=learned is DiffEnc over images, in continuous time)"
            )
        self.encoder = encoder
        self.net = net
        self.levels = levels
        self.resampler = LossSecondMomentResampler(config.T)
        self.form = output_form(config)
        self.learned_variance = config.variance == "learned"
        self.chain = build_chain(self)
        # the importance proposal q(t) ∝ weights over `proposal_edges()`: zeros until fitted, refitted by every
        # evaluation that asks for it (not part of the saved state); for the discrete chain also the slopes of
        # the ε control variate per bin (`noise_control`), fitted on the same pilot pass
        bins = self.chain.proposal_bins
        self.register_buffer("time_proposal", torch.zeros(bins, dtype=torch.float64), persistent=False)
        self.register_buffer(
            "control_slopes", torch.zeros(self.chain.control_bins, FEATURES, dtype=torch.float64), persistent=False
        )

    @property
    def continuous(self) -> bool:
        """Whether the chain is in continuous time (a declared property, for callers that report it)."""
        return isinstance(self.chain, ContinuousChain)

    def continuous_schedule(self) -> ContinuousSchedule:
        """The schedule as continuous time reads it (γ, γ′); a clear error for one without them."""
        schedule = self.schedule
        if not isinstance(schedule, ContinuousSchedule):
            raise ConfigError(
                f"continuous time (model.time=continuous) needs a schedule with γ(t) and γ′(t); "
                f"{type(schedule).__name__} has none"
            )
        return schedule

    # ---- the network as a denoiser
    def network(self, labels: Tensor | None) -> NetFn:
        """The network's raw output at (x_t, t), given labels if it is conditional, its learned variance's
        v ∈ [−1, 1] mapped to var_interp ∈ [0, 1] (Nichol & Dhariwal 2021)."""
        dtype = next(self.net.parameters()).dtype

        def raw(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            y_t = () if self.classes is None else (labels_at(labels, x_t.shape[0], self.classes, x_t.device),)
            out: Tensor = self.net(x_t.to(dtype), t.to(dtype), *y_t).to(x_t.dtype)
            if not self.learned_variance:
                return out
            output, var_out = out.chunk(2, dim=1)
            return output, (var_out + 1) / 2

        return raw

    def denoiser(self, clip: bool = False, y: Tensor | None = None, guidance: float = 1.0) -> Denoiser:
        """The network as a `Denoiser` carrying its parameterisation (EDM's preconditioning around it for
        parameterisation=edm), with `clip` an x̂_0-denoiser clipped to [−1, 1]. A conditional network is given labels
        y (one, or one per example; None: the null class), its output guided by w = `guidance`
        (`conditioning.guide`, before the clip)."""
        raw = self.network(None) if y is None else guide(self.network(y), self.network(None), guidance)
        denoiser = self.form.denoiser(raw, self.schedule)
        return denoiser.clipped(self.schedule) if clip else denoiser

    # ---- training
    def loss(self, x_0: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """The per-example training objective of the chain (`DiscreteChain.loss`, `ContinuousChain.loss`). A
        conditional network sees labels y (None: the null class), each dropped to the null class with probability
        `label_dropout`, drawn after t and ε."""
        return self.chain.loss(x_0, generator, y)

    def learned_forward(self) -> list[nn.Parameter]:
        """The forward process's learned parameters: the schedule's (end points, shape, one-step λ_1) and DiffEnc's
        encoder's, trained on the bound whatever the network is trained on."""
        modules: list[nn.Module] = [self.schedule] if isinstance(self.schedule, nn.Module) else []
        modules += [self.encoder] if self.encoder is not None else []
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    def follow_bound(self, objective: Tensor, bound: Tensor) -> Tensor:
        """`objective`, its value unchanged, with the forward process's parameters given the gradient of `bound`
        (per-example tensors) and no other, in one backward pass. Scaled by a power of two on the way through the
        network (exact), so that under fp16 autocast, where the trainer's GradScaler does not see this pass,
        small gradients at its output do not underflow."""
        learned = self.learned_forward()
        if not learned or not torch.is_grad_enabled():
            return objective
        scaled = torch.autograd.grad(
            SCHEDULE_GRAD_SCALE * (bound.mean() - objective.mean()), learned, retain_graph=True, allow_unused=True
        )
        terms = ((p * g / SCHEDULE_GRAD_SCALE).sum() for p, g in zip(learned, scaled, strict=True) if g is not None)
        follow = sum(terms, objective.new_zeros(()))
        return objective + (follow - follow.detach())

    def training_labels(self, y: Tensor | None, x_0: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """A conditional network's labels for one training batch, with label dropout (`conditioning.drop_labels`);
        None for an unconditional one."""
        if self.classes is None:
            return None
        return drop_labels(y, x_0.shape[0], self.config.label_dropout, self.classes, generator, x_0.device)

    @torch.no_grad()
    def edm_draw(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(t, q(t), Z): t with ln σ̃_t ~ N(P_mean, P_std²) truncated to the schedule (mass Z), from uniforms u, and its
        density q(t) = p(λ_t) γ′(t)/Z over t, the importance ratio that keeps the bound's estimate unbiased."""
        cfg, schedule = self.config, self.continuous_schedule()
        t, log_snr, mass = edm.lognormal_times(u, schedule, cfg.edm_p_mean, cfg.edm_p_std)
        density = edm.lognormal_density(log_snr, cfg.edm_p_mean, cfg.edm_p_std)
        return t, density * schedule.gamma_prime(t) / mass, mass

    # ---- the bound
    def default_estimator(self) -> Estimator:
        """The config's estimator: Monte Carlo over t with `elbo_samples` draws (stratified in continuous time),
        or all T steps (`Chain.default_estimator`)."""
        return self.chain.default_estimator()

    def proposal_edges(self) -> Tensor | None:
        """The importance proposal's bins: equal in t, or, for the discrete chain, whole steps, the first ones
        each a bin of its own (`time_proposal.step_edges`)."""
        return self.chain.proposal_edges()

    def proposal(self) -> TimeProposal:
        """The importance proposal over t fitted by `fit_proposal`; a clear error before it is fitted."""
        if not self.proposal_fitted():
            raise ConfigError(
                "the importance proposal over t is fitted on a pilot pass over training images "
                "first (model.prepare_estimator(estimator, images))"
            )
        return TimeProposal(self.time_proposal, self.proposal_edges())

    def proposal_fitted(self) -> bool:
        """Whether the importance proposal has been fitted (its buffer is zeros until then)."""
        return bool((self.time_proposal > 0).all())

    @torch.no_grad()
    def fit_proposal(
        self, pilot: Tensor, steps: int | None = None, generator: torch.Generator | None = None, clip: bool = False
    ) -> TimeProposal:
        """Fit q(t) ∝ sqrt(E[g(t)²]) on a pilot batch (PROPOSAL_BINS × 2 network passes per image), g the
        integrand of the bound (of its T-step form if `steps`), and keep it in the `time_proposal` buffer. For
        the discrete chain g is the step term L_{i−1} less its ε control variate, whose slopes per bin of
        `proposal_edges` the same pass fits (`bound.pilot_step_fit`) into `control_slopes`."""
        second = self.chain.pilot(self.denoiser(clip), pilot, steps, generator)
        fitted = TimeProposal.fit(second, edges=self.proposal_edges())
        self.time_proposal.copy_(fitted.weights.expand(self.time_proposal.numel()))
        return fitted

    def elbo(
        self,
        x_0: Tensor,
        estimator: Estimator | None = None,
        discrete: bool = True,
        generator: torch.Generator | None = None,
        clip: bool = False,
        y: Tensor | None = None,
    ) -> Bound:
        """−ELBO per example in nats: "exact" (all T terms) or "mc" (Monte Carlo over t: proposal "uniform"
        draws iid, importance-sampled once the resampler has a history; "stratified"; "importance" from a
        pilot-fitted proposal) — the chain's (`DiscreteChain`: `bound.exact_bound` / `bound.mc_bound`;
        `ContinuousChain`: `continuous.exact_steps_bound` / `continuous.mc_bound`). With `clip` the
        reverse process is the one `sample(clip=True)` draws from (x̂_0 clipped to [−1, 1]). A conditional
        network's bound is on −log p(x | y) with labels y [B], class by class (`conditioning.by_class`), and on
        −log p(x) through the null class for y None."""
        estimator = estimator or self.default_estimator()
        if y is not None and y.numel() > 1:
            return by_class(lambda x, k: self.elbo(x, estimator, discrete, generator, clip, k), x_0, y)
        levels = self.levels if discrete else None
        return self.chain.elbo(x_0, estimator, self.denoiser(clip, y), levels, generator)

    def q_mean(self, x_0: Tensor, t: Tensor) -> Tensor:
        """The mean of q(x_t|x_0) over α_t: x_0, or DiffEnc's x_φ(x_0, t) (t a [B] tensor)."""
        if self.encoder is None:
            return x_0
        return self.encoder(x_0, t, self.continuous_schedule())[0]

    # ---- sampling
    def sample(
        self,
        shape: tuple[int, ...],
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        variance: str | None = None,
        clip: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        churn: Churn | None = None,
        y: Tensor | None = None,
        guidance: float = 1.0,
    ) -> Tensor:
        """x_T ~ N(0, I) of `shape`, then the sampler over `steps` (None: the config's) steps of the chain's grid →
        x_0 (`churn`: EDM's stochastic sampler's); a conditional network's given labels y [B] (None: unconditional)
        with guidance w (`conditioning.guide`)."""
        cfg = self.config
        device = device if device is not None else next(self.net.parameters()).device
        x_T = torch.randn(shape, generator=generator, device=device)
        steps = steps if steps is not None else cfg.sample_steps
        return run_sampler(
            sampler or cfg.sampler,
            self.denoiser(clip, y, guidance),
            x_T,
            self.grid(steps),
            self.schedule,
            variance=variance or cfg.variance,
            eta=cfg.eta if eta is None else eta,
            churn=churn or Churn(),
            generator=generator,
        )

    def encode(
        self, x_0: Tensor, steps: int | None = None, clip: bool = False, fixed_point: int | None = None
    ) -> Tensor:
        """x_0 → x_T by DDIM inversion over `steps`, each refined `fixed_point` times (None: the config's)."""
        fixed_point = self.config.encode_fixed_point if fixed_point is None else fixed_point
        return ddim_invert(self.denoiser(clip), x_0, self._encode_grid(steps), self.schedule, fixed_point=fixed_point)

    def decode(self, x_T: Tensor, steps: int | None = None, clip: bool = False) -> Tensor:
        """x_T → x_0 by DDIM with η = 0 over `steps` (None: the config's encode_steps)."""
        return ddim(self.denoiser(clip), x_T, self._encode_grid(steps), self.schedule)

    def grid(self, steps: int | None) -> Tensor:
        """The sampling grid over `steps` (None: T): on the T-step grid, or uniform in t in continuous time."""
        return self.chain.grid(steps)

    def _encode_grid(self, steps: int | None) -> Tensor:
        cfg = self.config
        return self.grid(steps if steps is not None else min(cfg.encode_steps, cfg.T))
