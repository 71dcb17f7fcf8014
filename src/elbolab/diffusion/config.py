"""The diffusion model's configuration, saved into every run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from elbolab.config import require
from elbolab.diffusion.edm import P_MEAN, P_STD
from elbolab.diffusion.edm import SIGMA_DATA as EDM_SIGMA_DATA
from elbolab.diffusion.learned_schedule import SHAPES
from elbolab.diffusion.samplers import SAMPLERS
from elbolab.diffusion.schedule import Schedule
from elbolab.diffusion.weighting import SIGMOID_BIAS, WEIGHTINGS
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig, UNetPreset

#: what `loss` may name ("elbo" is read as "vlb")
LOSSES = ("simple", "vlb", "hybrid", *WEIGHTINGS)


@dataclass(frozen=True)
class DiffusionConfig:
    """Chain, parameterisation, objective, network and sampling defaults.

    Defaults suit 8×8 digits on a CPU. `variance` is p_θ(x_{t−1}|x_t)'s: fixed "small" (β̃),
    fixed "large" (β) or "learned" (interpolated, trained by the "vlb" or "hybrid" loss).

    `time`: "discrete" (the T-step chain) or "continuous" (VDM: T → ∞, γ between finite end points
    γ_min, γ_max, learned if `learn_endpoints`; `schedule` names γ's shape between them, "linear" in γ,
    "cosine", or "learned" (VDM's monotone network, trained on the bound with the end points); T is then only
    the default sampling grid and the T-step form of its bound). γ_min = None
    puts σ_0 at `bin_fraction` of the data's bin width 2/(K − 1) (VDM's −13.3 for continuous data). In
    continuous time `loss` names the weighting w(λ) of ½ γ′(t) ‖ε − ε̂‖² (`weighting`): "vlb" (alias "elbo";
    the ELBO, w = 1), "simple" (uniform in t, ‖ε − ε̂‖²), "sigmoid" or "edm" (Kingma & Gao 2023); learned
    end points follow the bound whatever the network is trained on.

    T = 1 (discrete time) is the one-step model: q(x_1|x_0) = N(α_1 x_0, σ_1² I), the prior KL L_T and the decoder
    L_0 and nothing else, a VAE with a fixed encoder and a latent the size of x. Its chain has no shape (`schedule`
    is not read): its one log-SNR is λ_1 = −γ_max, learned on the bound if `learn_endpoints`, and its decoder
    variance is σ_1² (β̃_1 = 0 has no second step to borrow from; "small" and "large" agree). `one_step` is the
    recipe `compare` trains. T ≥ 1 in every form.

    `encoder`: "fixed" (the Gaussian chain) or "learned", DiffEnc (Nielsen et al. 2024; continuous time only):
    q(z_t|x) = N(α_t x_φ(x, t), σ_t² I), x_φ = x + σ_t² NN_φ(x, t), NN_φ a small network `encoder_width`
    channels wide whose zero-initialised output makes the start VDM's (`encoder.MeanEncoder`); φ is trained on
    the bound whatever the network is trained on.
    """

    T: int = 1000
    time: Literal["discrete", "continuous"] = "discrete"
    gamma_min: float | None = None
    gamma_max: float = 5.0
    bin_fraction: float = 0.25
    learn_endpoints: bool = True
    schedule: Literal["linear", "cosine", "learned"] = "cosine"
    encoder: Literal["fixed", "learned"] = "fixed"
    encoder_width: int = 32  # channels of DiffEnc's NN_φ (encoder=learned)
    parameterisation: Literal["eps", "x0", "v", "edm"] = "eps"  # "edm": EDM's preconditioned D(x̃; σ̃) (`edm`)
    loss: Literal["simple", "vlb", "hybrid", "elbo", "sigmoid", "edm"] = "simple"
    variance: Literal["small", "large", "learned"] = "small"
    timesteps: Literal["uniform", "importance"] = "uniform"
    hybrid_weight: float = 0.001  # λ in L_simple + λ L_vlb (Nichol & Dhariwal 2021, eq. 16)
    sigmoid_bias: float = SIGMOID_BIAS  # b of loss=sigmoid, w(λ) = sigmoid(b − λ) (Kingma & Gao 2023, §5)
    sigma_data: float = EDM_SIGMA_DATA  # σ_data of parameterisation=edm's preconditioning and of loss=edm's weight
    edm_p_mean: float = P_MEAN  # loss=edm draws ln σ̃ ~ N(P_mean, P_std²) (Karras et al. 2022, Table 1)
    edm_p_std: float = P_STD
    unet: UNetConfig = field(default_factory=UNetConfig)
    net: Literal["unet", "diffusers-unet2d"] = "unet"  # elbolab's UNet, or diffusers' UNet2DModel sized by `unet`
    sampler: str = "ancestral"  # a name in `samplers.SAMPLERS`
    sample_steps: int | None = None  # None: all T steps
    eta: float = 0.0  # DDIM's η
    encode_steps: int = 100  # DDIM steps of encode/decode (at most T are used)
    encode_fixed_point: int = 1  # refinements of each inversion step (0: plain DDIM inversion)
    elbo_method: Literal["mc", "exact"] = "mc"
    elbo_samples: int = 16  # Monte-Carlo draws of t per example for method "mc"
    max_batch: int = 1024  # (example, step) pairs per network call when evaluating the bound
    conditional: bool = False  # net(x_t, t, y): a class embedding beside the time embedding, K read from the data
    label_dropout: float = 0.1  # P(label → the null class) in training: one network, conditional and not

    @classmethod
    def sized_for(cls, side: int, device: str = "cpu") -> DiffusionConfig:
        """The configuration `compare` starts from for images of this side on this device: continuous time with
        γ linear in t between learned, level-aware end points, trained on the ELBO (whose weighting γ′ is then
        uniform in t: L_simple up to a constant, plus the end points); the UNet sized to the VAE it is compared
        with and to what the device trains in minutes: tiny (~0.17M parameters) for small images (≤ 16 px),
        compact (tiny with a third level, 0.3 GFLOP per 28×28 training image, a third of lean's) for larger ones on
        a CPU, on a GPU small (≤ 28 px) or base."""
        preset: UNetPreset = (
            "tiny" if side <= 16 else "compact" if not device.startswith("cuda") else "small" if side <= 28 else "base"
        )
        # the bound's network calls hold max_batch images: 1024 of 8×8, 128 of larger ones (≈ 0.1 GB at 28×28)
        return cls(
            unet=UNetConfig(preset=preset),
            time="continuous",
            schedule="linear",
            loss="vlb",
            max_batch=cls.max_batch if side <= 16 else 128,
        )

    @classmethod
    def one_step(cls, side: int, device: str = "cpu") -> DiffusionConfig:
        """The one-step model `compare` sets beside the same-size VAE ("learned vs fixed encoder, one step, same
        size"): `sized_for`'s network, discrete time with T = 1, trained on its ELBO L_T + L_0 (exact: one step
        is all there is), its noise level λ_1 learned on it from γ_1 = 0 (σ_1² = ½, where α_1 and σ_1 move
        fastest with γ_1, so the optimiser reaches either side within a short budget)."""
        return replace(
            cls.sized_for(side, device),
            time="discrete",
            T=1,
            schedule="cosine",
            gamma_max=0.0,
            learn_endpoints=True,
            loss="vlb",
            sampler="ancestral",
        )

    def __post_init__(self) -> None:
        for name in ("elbo_samples", "max_batch", "encode_steps"):
            require(f"model.{name}", getattr(self, name), getattr(self, name) >= 1, "an integer ≥ 1")
        for name in ("encode_fixed_point", "eta", "hybrid_weight"):
            require(f"model.{name}", getattr(self, name), getattr(self, name) >= 0, "a number ≥ 0")
        if self.T < 1:
            raise ConfigError(f"model.T must be ≥ 1, got {self.T}")
        if self.loss == "elbo":  # the bound's other name; runs keep "vlb"
            object.__setattr__(self, "loss", "vlb")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)} (elbo = vlb)")
        if self.time not in ("discrete", "continuous"):
            raise ConfigError(f"time must be discrete or continuous, got {self.time!r}")
        if self.time == "discrete" and self.loss in WEIGHTINGS:
            raise ConfigError(
                f"the {self.loss} weighting is for continuous time (model.time=continuous); the "
                "discrete chain trains on simple, vlb or hybrid"
            )
        if self.encoder not in ("fixed", "learned") or self.encoder_width < 1:
            raise ConfigError(
                f"model.encoder must be fixed or learned and model.encoder_width ≥ 1, got {self.encoder!r} and "
                f"{self.encoder_width}"
            )
        if self.time == "continuous":
            self._check_continuous()
        else:
            if self.encoder == "learned":
                raise ConfigError("model.encoder=learned (DiffEnc) is for continuous time; set model.time=continuous")
            if self.schedule == "learned":
                raise ConfigError(
                    "the learned schedule (VDM's monotone network) is for continuous time; set "
                    "model.time=continuous, or choose schedule=linear or cosine"
                )
            if self.T == 1 and self.variance == "learned":
                raise ConfigError(
                    "model.variance=learned has nothing to learn at T = 1 (β_1 and the clipped β̃_1 are both σ_1²)"
                )
            if self.T > 1:
                Schedule(self.schedule, self.T)  # checks T against the schedule
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not (self.sigma_data > 0 and self.edm_p_std > 0 and math.isfinite(self.edm_p_mean)):
            raise ConfigError(
                f"sigma_data and edm_p_std must be > 0 and edm_p_mean finite, got {self.sigma_data}, "
                f"{self.edm_p_std} and {self.edm_p_mean}"
            )
        if self.parameterisation == "edm" and self.variance == "learned":
            raise ConfigError("parameterisation=edm predicts x_0 alone; use variance=small or large")
        if self.variance == "learned" and self.loss == "simple":
            raise ConfigError("a learned variance gets no gradient from L_simple; use loss=hybrid or loss=vlb")
        if self.loss == "hybrid" and self.variance != "learned":
            raise ConfigError("the hybrid loss trains a learned variance; set variance=learned (or use loss=simple)")
        if self.sample_steps is not None and not 1 <= self.sample_steps <= (
            self.T if self.time == "discrete" else self.sample_steps
        ):
            raise ConfigError(f"sample_steps must be between 1 and T = {self.T}, got {self.sample_steps}")
        if self.encode_steps < 1 or self.encode_fixed_point < 0:
            raise ConfigError("encode_steps must be ≥ 1 and encode_fixed_point ≥ 0")
        if self.eta < 0:
            raise ConfigError(f"eta must be ≥ 0, got {self.eta}")
        if not math.isfinite(self.sigmoid_bias):
            raise ConfigError(f"sigmoid_bias must be a finite number, got {self.sigmoid_bias}")
        if self.elbo_samples < 2 or self.max_batch < 1 or self.hybrid_weight < 0:
            raise ConfigError("elbo_samples must be ≥ 2, max_batch ≥ 1 and hybrid_weight ≥ 0")
        self.unet.spec()  # checks the network's overrides
        if not 0 <= self.label_dropout <= 1:
            raise ConfigError(f"model.label_dropout must be a probability in [0, 1], got {self.label_dropout}")

    def _check_continuous(self) -> None:
        """What continuous time does not take: a learned variance, the hybrid loss, step-history resampling."""
        if self.schedule not in SHAPES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SHAPES)}")
        if self.schedule == "learned" and not self.learn_endpoints:
            raise ConfigError(
                "a learned schedule shape learns with its end points; set learn_endpoints=true or "
                "choose schedule=linear or cosine"
            )
        if self.variance != "small" or self.loss == "hybrid":
            raise ConfigError(
                "continuous time has no reverse variance to learn; use variance=small and "
                "loss=vlb (the ELBO) or loss=simple"
            )
        if self.timesteps != "uniform":
            raise ConfigError("continuous time draws t stratified in every batch; leave timesteps=uniform")
        if self.T < 1 or not 0 < self.bin_fraction < 1:
            raise ConfigError(f"T must be ≥ 1 and bin_fraction in (0, 1), got {self.T} and {self.bin_fraction}")
        if self.gamma_min is not None and not self.gamma_min < self.gamma_max:
            raise ConfigError(f"the schedule needs gamma_min < gamma_max, got {self.gamma_min} and {self.gamma_max}")
