"""`GaussianDiffusion`: the Gaussian chain with a network, over tensors of any shape [B, ...].

It owns the schedule, the network net(x_t, t) and the timestep resampler, and provides the
training loss, the bound and the samplers. Nothing here knows about images: the image model
(`DiffusionModel`) and latent diffusion both wrap it, passing `levels` for discrete data or
None for continuous data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from elbolab.bounds import Bound, Estimator, nats_to_bpd
from elbolab.diffusion import continuous, edm
from elbolab.diffusion.bound import exact_bound, mc_bound, pilot_step_fit, prior_term, vlb_term
from elbolab.diffusion.conditioning import by_class, drop_labels, guide, labels_at
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.encoder import MeanEncoder
from elbolab.diffusion.forward import expand, q_sample
from elbolab.diffusion.learned_schedule import (
    VDM_GAMMA_MIN,
    LearnedSchedule,
    OneStepSchedule,
    level_gamma_min,
    uniform_grid,
)
from elbolab.diffusion.noise_control import FEATURES
from elbolab.diffusion.parameterisation import x0_and_eps
from elbolab.diffusion.reverse import Denoiser, denoise
from elbolab.diffusion.samplers import Churn, ddim, ddim_invert, run_sampler
from elbolab.diffusion.schedule import ContinuousSchedule, NoiseSchedule, Schedule, alpha, sigma, time_grid
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


#: the power of two the schedule's own backward pass is scaled by (`GaussianDiffusion._continuous_loss`)
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


class GaussianDiffusion(nn.Module):
    """A T-step variance-preserving diffusion model p_θ(x_{0:T}) around a network net(x_t, t).

    The network maps (x_t [B, C, ...], t [B] ∈ [0, 1]) to the output named by
    `config.parameterisation`, with C more channels (dim 1) for a learned variance. `schedule`, if
    given, replaces the config's named one (any `NoiseSchedule`, e.g. a table; in continuous time a
    `ContinuousSchedule`). `encoder` is DiffEnc's learned mean x_φ (config.encoder = "learned", continuous time),
    built by the wrapper that knows the data's layout.
    """

    schedule: NoiseSchedule
    encoder: MeanEncoder | None
    net: nn.Module
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
        self.continuous = config.time == "continuous"
        if self.continuous:
            self.continuous_schedule()  # a clear error for a schedule without γ′
        # the importance proposal q(t) ∝ weights over `proposal_edges()`: zeros until fitted, refitted by every
        # evaluation that asks for it (not part of the saved state); for the discrete chain also the slopes of
        # the ε control variate per bin (`noise_control`), fitted on the same pilot pass
        bins = PROPOSAL_BINS if self.continuous else min(config.T, PROPOSAL_BINS)
        self.register_buffer("time_proposal", torch.zeros(bins, dtype=torch.float64), persistent=False)
        self.register_buffer(
            "control_slopes",
            torch.zeros(0 if self.continuous else bins, FEATURES, dtype=torch.float64),
            persistent=False,
        )

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
    def denoiser(self, clip: bool = False, y: Tensor | None = None, guidance: float = 1.0) -> tuple[Denoiser, str]:
        """(denoiser, its parameterisation): the network's raw output, or, with `clip`, x̂_0 clipped to [−1, 1].
        A conditional network is given labels y (one, or one per example; None: the null class), its output
        guided by w = `guidance` (`conditioning.guide`, before the clip)."""
        cfg = self.config
        dtype = next(self.net.parameters()).dtype

        def given(labels: Tensor | None) -> Denoiser:
            def raw(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
                y_t = () if self.classes is None else (labels_at(labels, x_t.shape[0], self.classes, x_t.device),)
                out = self.net(x_t.to(dtype), t.to(dtype), *y_t).to(x_t.dtype)
                if cfg.variance != "learned":
                    return out
                output, var_out = out.chunk(2, dim=1)
                return output, (var_out + 1) / 2  # Nichol & Dhariwal 2021's v ∈ [−1, 1] ↦ var_interp ∈ [0, 1]

            return raw

        raw = given(None) if y is None else guide(given(y), given(None), guidance)
        out_of: Denoiser = raw
        parameterisation: str = cfg.parameterisation
        if parameterisation == "edm":  # EDM's D(x̃; σ̃) around the network: an x̂_0-denoiser
            out_of, parameterisation = edm.preconditioned(raw, self.schedule, cfg.sigma_data), "x0"
        if not clip:
            return out_of, parameterisation

        def clipped(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            out = out_of(x_t, t)
            output, var_interp = out if isinstance(out, tuple) else (out, None)
            log_snr = self.schedule.log_snr(t)
            x0_hat, _ = x0_and_eps(
                output, parameterisation, x_t, expand(alpha(log_snr), x_t), expand(sigma(log_snr), x_t)
            )
            x0_hat = x0_hat.clamp(-1, 1)
            return x0_hat if var_interp is None else (x0_hat, var_interp)

        return clipped, "x0"

    # ---- training
    def loss(self, x_0: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """The per-example objective at one step i per example, reweighted by 1/(T p_i) (unbiased for any p):
        L_simple = mean ‖ε − ε̂‖² (Ho et al. 2020, eq. 14), L_vlb = T·L_{i−1} in bits/dim, or
        L_simple + λ L_vlb with the mean frozen in L_vlb (Nichol & Dhariwal 2021, eq. 16). L_T is left out (constant).
        L_simple runs in float32 (coefficients from the float64 schedule); the objectives with bound terms in float64.
        A conditional network sees labels y (None: the null class), each dropped to the null class with probability
        `label_dropout`, drawn after t and ε.
        """
        if self.continuous:
            return self._continuous_loss(x_0, generator, y)
        cfg, T = self.config, self.config.T
        importance = cfg.timesteps == "importance"
        probs = (
            self.resampler.probabilities()
            if importance
            else torch.full((T,), 1.0 / T, dtype=torch.float64, device=self.resampler.seen.device)
        )
        i, p_i = draw_steps(x_0.shape[0], probs, generator)
        # L_simple is an MSE of network outputs: float32 loses nothing; the bound's terms keep float64
        x_0 = x_0.float() if cfg.loss == "simple" else x_0.double()
        eps = torch.randn(x_0.shape, generator=generator, device=x_0.device, dtype=x_0.dtype)
        t = self.schedule.times(i)
        x_t = q_sample(x_0, self.schedule.log_snr(t), eps)
        raw, parameterisation = self.denoiser(y=self.training_labels(y, x_0, generator))
        d = denoise(raw, x_t, t, self.schedule, parameterisation)
        mse = (eps - d.eps_hat).pow(2).flatten(1).mean(1)
        if cfg.loss == "simple":
            term = mse
        else:
            nats = vlb_term(x_0, d, i, self.schedule, cfg.variance, self.levels, stop_mean_grad=cfg.loss == "hybrid")
            vlb = T * nats_to_bpd(nats, x_0[0].numel())
            term = vlb if cfg.loss == "vlb" else mse + cfg.hybrid_weight * vlb
        if importance and self.training:
            self.resampler.update(i, term)
        objective = term / (T * p_i)
        if not self.learned_forward():
            return objective.float()
        # the one-step chain's learned λ_1: L_T is no constant, and λ_1 follows the bound L_T + L_{i−1}/p_i
        step = (nats if cfg.loss == "vlb" else vlb_term(x_0, d, i, self.schedule, cfg.variance, self.levels)) / p_i
        bound = nats_to_bpd(prior_term(x_0, self.schedule) + step, x_0[0].numel())
        return (bound if cfg.loss == "vlb" else self.follow_bound(objective, bound)).float()

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
        terms = ((p * g / SCHEDULE_GRAD_SCALE).sum() for p, g in zip(learned, scaled) if g is not None)
        follow = sum(terms, objective.new_zeros(()))
        return objective + (follow - follow.detach())

    def training_labels(self, y: Tensor | None, x_0: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """A conditional network's labels for one training batch, with label dropout (`conditioning.drop_labels`);
        None for an unconditional one."""
        if self.classes is None:
            return None
        return drop_labels(y, x_0.shape[0], self.config.label_dropout, self.classes, generator, x_0.device)

    def _continuous_loss(self, x_0: Tensor, generator: torch.Generator | None, y: Tensor | None = None) -> Tensor:
        """Continuous time, t low-discrepancy over the batch, t_b = (u + b/B) mod 1 (VDM, App. I): the ELBO in
        bits/dim ("vlb"; one z_0 and one t per example), or for the network L_simple = mean ‖ε − ε̂‖² ("simple")
        or the weighted diffusion term ½ w(λ_t) γ′(t) ‖ε − ε̂‖² in bits/dim (a named w, `weighting`), while
        a learned schedule (end points, and shape) follows the bound: its parameters get the bound's gradient
        alone, the objective's value unchanged."""
        cfg, schedule = self.config, self.continuous_schedule()
        x_0 = x_0.double()
        B, D, device = x_0.shape[0], x_0[0].numel(), x_0.device
        u = torch.rand((), generator=generator, dtype=torch.float64, device=device)
        t = (u + torch.arange(B, dtype=torch.float64, device=device) / B) % 1.0
        q_t = torch.ones((), dtype=torch.float64, device=device)  # t's density: uniform, or EDM's draw (`edm_draw`)
        mass = q_t
        if cfg.loss == "edm":
            t, q_t, mass = self.edm_draw(t)
        eps, eps_0 = torch.randn((2, *x_0.shape), generator=generator, dtype=torch.float64, device=device)
        raw, parameterisation = self.denoiser(y=self.training_labels(y, x_0, generator))
        enc = self.encoder
        mse = continuous.squared_error(raw, x_0, t, eps, schedule, parameterisation, enc)
        mean_0 = None if enc is None else continuous.encoded_mean(enc, x_0, 0.0, schedule)
        nats = (
            continuous.encoded_prior_term(x_0, schedule, enc)
            + continuous.reconstruction_term(x_0, schedule, self.levels, eps_0, mean_0)
            + 0.5 * schedule.gamma_prime(t) * mse / q_t
        )
        bound = nats_to_bpd(nats, D)
        if cfg.loss == "vlb":
            return bound.float()
        if cfg.loss == "simple":
            reweighted = mse / D
        else:  # the schedule enters as a fixed weight: its parameters learn from the bound alone
            with torch.no_grad():
                if cfg.loss == "edm":  # ½ w(λ) γ′ / q(t) = ½ Z (σ̃² + σ_data²)/σ_data²
                    w = 0.5 * mass * edm.loss_weight(edm.ve_sigma(schedule.log_snr(t)), cfg.sigma_data)
                else:
                    w = weight(cfg.loss, schedule.log_snr(t), cfg.sigmoid_bias)
                    w = w * 0.5 * schedule.gamma_prime(t)
            reweighted = nats_to_bpd(w * mse, D)
        # the end points (a learned shape, DiffEnc's encoder) get the bound's gradient and no other: the
        # objective's own (through z_t) is replaced by the bound's, value unchanged
        return self.follow_bound(reweighted, bound).float()

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
        or all T steps."""
        cfg = self.config
        if cfg.elbo_method == "exact":
            return Estimator("exact", steps=cfg.T if self.continuous else None)
        return Estimator("mc", cfg.elbo_samples, "stratified" if self.continuous else "uniform")

    def proposal_edges(self) -> Tensor | None:
        """The importance proposal's bins: equal in t, or, for the discrete chain, whole steps, the first ones
        each a bin of its own (`step_edges`)."""
        return None if self.continuous else self.step_edges()

    def step_edges(self) -> Tensor:
        """The discrete chain's proposal bins over its steps (`time_proposal.step_edges`)."""
        return step_edges(self.config.T, self.time_proposal.numel())

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
        denoiser, parameterisation = self.denoiser(clip)
        max_batch = self.config.max_batch
        if self.continuous:
            second = continuous.pilot_second_moment(
                denoiser,
                pilot,
                self.continuous_schedule(),
                PROPOSAL_BINS,
                2,
                T=steps,
                encoder=self.encoder,
                parameterisation=parameterisation,
                generator=generator,
                max_batch=max_batch,
            )
        else:
            slopes, second = pilot_step_fit(
                denoiser,
                pilot,
                self.schedule,
                self.step_edges(),
                variance=self.config.variance,
                levels=self.levels,
                parameterisation=parameterisation,
                generator=generator,
                max_batch=max_batch,
            )
            self.control_slopes.copy_(slopes)
        fitted = TimeProposal.fit(second, edges=self.proposal_edges())
        self.time_proposal.copy_(fitted.weights.expand(self.time_proposal.numel()))
        return fitted

    def step_control(self) -> Tensor:
        """The control variate's slopes per step of the discrete chain, [T, FEATURES] (those of each step's bin)."""
        return self.control_slopes[bin_of_step(self.step_edges(), self.config.T).to(self.control_slopes.device)]

    def _continuous_elbo(
        self,
        x_0: Tensor,
        estimator: Estimator,
        denoiser: Denoiser,
        parameterisation: str,
        levels: int | None,
        generator: torch.Generator | None,
    ) -> Bound:
        """The VDM bound: "mc" over t (or over the steps of its T-step form), "exact" for the T-step form."""
        schedule, max_batch = self.continuous_schedule(), self.config.max_batch
        if estimator.method == "exact":
            return continuous.exact_steps_bound(
                denoiser,
                x_0,
                schedule,
                estimator.steps or self.config.T,
                parameterisation=parameterisation,
                levels=levels,
                generator=generator,
                max_batch=max_batch,
                encoder=self.encoder,
            )
        if estimator.method == "mc":
            proposal = self.proposal() if estimator.proposal == "importance" else None
            return continuous.mc_bound(
                denoiser,
                x_0,
                schedule,
                samples=estimator.samples or self.config.elbo_samples,
                proposal=proposal,
                stratified=estimator.proposal != "uniform",
                T=estimator.steps,
                parameterisation=parameterisation,
                levels=levels,
                generator=generator,
                max_batch=max_batch,
                encoder=self.encoder,
            )
        raise ConfigError(f"the diffusion model has no {estimator.method!r} bound; it offers exact and mc")

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
        pilot-fitted proposal) — see `bound.exact_bound` / `bound.mc_bound`. With `clip` the
        reverse process is the one `sample(clip=True)` draws from (x̂_0 clipped to [−1, 1]). A conditional
        network's bound is on −log p(x | y) with labels y [B], class by class (`conditioning.by_class`), and on
        −log p(x) through the null class for y None."""
        cfg = self.config
        estimator = estimator or self.default_estimator()
        if y is not None and y.numel() > 1:
            return by_class(lambda x, k: self.elbo(x, estimator, discrete, generator, clip, k), x_0, y)
        denoiser, parameterisation = self.denoiser(clip, y)
        if self.continuous:
            return self._continuous_elbo(
                x_0, estimator, denoiser, parameterisation, self.levels if discrete else None, generator
            )
        if estimator.steps not in (None, cfg.T):
            raise ConfigError(f"the discrete-time chain's bound is over its own T = {cfg.T} steps")
        levels = self.levels if discrete else None
        if estimator.method == "exact":
            return exact_bound(
                denoiser,
                x_0,
                self.schedule,
                parameterisation=parameterisation,
                variance=cfg.variance,
                levels=levels,
                generator=generator,
                max_batch=cfg.max_batch,
            )
        if estimator.method == "mc":
            proposal = self.resampler.probabilities() if self.resampler.ready() else None
            control = None
            if estimator.proposal == "stratified":
                proposal = None
            elif estimator.proposal == "importance":
                proposal = self.proposal().steps(cfg.T, x_0.device)
                control = self.step_control()
            return mc_bound(
                denoiser,
                x_0,
                self.schedule,
                samples=estimator.samples or cfg.elbo_samples,
                proposal=proposal,
                stratified=estimator.proposal != "uniform",
                control=control,
                parameterisation=parameterisation,
                variance=cfg.variance,
                levels=levels,
                generator=generator,
                max_batch=cfg.max_batch,
            )
        raise ConfigError(f"the diffusion chain has no {estimator.method!r} bound; it offers exact and mc")

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
        """x_T ~ N(0, I) of `shape`, then the sampler over `steps` (None: the config's) steps → x_0 (`churn`: EDM's
        stochastic sampler's); a conditional network's given labels y [B] (None: unconditional) with guidance w
        (`conditioning.guide`)."""
        cfg = self.config
        device = device if device is not None else next(self.net.parameters()).device
        x_T = torch.randn(shape, generator=generator, device=device)
        denoiser, parameterisation = self.denoiser(clip, y, guidance)
        steps = steps if steps is not None else cfg.sample_steps
        return run_sampler(
            sampler or cfg.sampler,
            denoiser,
            x_T,
            self.grid(steps),
            self.schedule,
            parameterisation=parameterisation,
            variance=variance or cfg.variance,
            eta=cfg.eta if eta is None else eta,
            churn=churn or Churn(),
            generator=generator,
        )

    def encode(
        self, x_0: Tensor, steps: int | None = None, clip: bool = False, fixed_point: int | None = None
    ) -> Tensor:
        """x_0 → x_T by DDIM inversion over `steps`, each refined `fixed_point` times (None: the config's)."""
        denoiser, parameterisation = self.denoiser(clip)
        fixed_point = self.config.encode_fixed_point if fixed_point is None else fixed_point
        return ddim_invert(
            denoiser,
            x_0,
            self._encode_grid(steps),
            self.schedule,
            parameterisation=parameterisation,
            fixed_point=fixed_point,
        )

    def decode(self, x_T: Tensor, steps: int | None = None, clip: bool = False) -> Tensor:
        """x_T → x_0 by DDIM with η = 0 over `steps` (None: the config's encode_steps)."""
        denoiser, parameterisation = self.denoiser(clip)
        return ddim(denoiser, x_T, self._encode_grid(steps), self.schedule, parameterisation=parameterisation)

    def grid(self, steps: int | None) -> Tensor:
        """The sampling grid over `steps` (None: T): on the T-step grid, or uniform in t in continuous time."""
        return uniform_grid(steps or self.config.T) if self.continuous else time_grid(self.config.T, steps)

    def _encode_grid(self, steps: int | None) -> Tensor:
        cfg = self.config
        return self.grid(steps if steps is not None else min(cfg.encode_steps, cfg.T))
