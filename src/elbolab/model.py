"""The contract every elbolab model keeps (DESIGN.md, "The contract every model keeps")."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from elbolab.bounds import Bound, Estimator
from elbolab.data.base import ImageData, check_labels, to_levels
from elbolab.errors import ConfigError, DataError
from elbolab.information import InformationCurve
from elbolab.records import Information

#: the sampler name of a model that samples with one decoder pass
DECODER = "decoder"


@dataclass(frozen=True)
class Encoding:
    """What mapping an image to the model's latent costs: learned parameters and network passes per image."""

    learned_parameters: int
    network_passes: int


#: the levels of `DesignLevels.encoder`
ENCODERS = ("learned", "fixed", "learned, then fixed")
#: the levels of `DesignLevels.objective`: the β-weighted ELBO (β ≠ 1), the ELBO itself, a reweighted bound
#: (L_simple, sigmoid, EDM weighting), or a model trained in stages (latent diffusion)
OBJECTIVE_LEVELS = ("β-ELBO", "ELBO", "weighted", "stages")


@dataclass(frozen=True)
class DesignLevels:
    """The model's level of each of the essay's design choices (DESIGN.md, "The design space between them").

    `encoder`: whether the map x → latent is learned, fixed (a Gaussian noising chain; a learnable noise level
    still counts as fixed) or learned, then fixed (latent diffusion). `encoder_steps` and `decoder_steps`: the
    stochastic steps of q and of the generative path (1 for a VAE, L for a hierarchy, T for a discrete chain,
    None for ∞, a continuous-time chain; its sampler then takes any NFE). `latent_fraction`: latent values per
    image over D (1.0: the size of x; a hierarchy or a chain counts its widest level, not their sum).
    `objective`: one of `OBJECTIVE_LEVELS`. `compare` pairs models that differ in one of these alone.
    """

    encoder: str
    encoder_steps: int | None
    latent_fraction: float
    decoder_steps: int | None
    objective: str

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"DesignLevels.encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.objective not in OBJECTIVE_LEVELS:
            raise ConfigError(
                f"DesignLevels.objective must be one of {', '.join(OBJECTIVE_LEVELS)}, got {self.objective!r}"
            )
        for name in ("encoder_steps", "decoder_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"DesignLevels.{name} must be ≥ 1 or None (∞), got {value}")
        if not self.latent_fraction > 0:
            raise ConfigError(f"DesignLevels.latent_fraction must be > 0, got {self.latent_fraction}")

    @property
    def latent(self) -> str:
        """ "bottleneck" (fewer latent values than x) or "full" (as many as x, or more)."""
        return "bottleneck" if self.latent_fraction < 1 else "full"


@dataclass(frozen=True)
class Capabilities:
    """What a model offers, declared: evaluation, comparison and the report read these, never a kind string.

    `samplers` are the names `sample(sampler=...)` accepts (the first is the default; a one-pass model
    has only "decoder"), `max_steps` the most network evaluations a sampler may take (None: any),
    `sample_options` the further keywords `sample` takes, `estimators` the `Estimator.method`s that
    `elbo` accepts (the first is the default), `encoding` the cost of `encode` (None: it does not encode),
    `proposals` the `Estimator.proposal`s its Monte-Carlo bound takes, `bound_steps` whether `elbo` takes
    `Estimator.steps` (a continuous-time model's T-step bound), `design` its levels of the essay's design
    choices (`DesignLevels`; every registered model declares them), `classes` the K labels 0..K−1 a conditional
    model takes (`elbo(x, y)` bounds log p(x | y), `loss(x, y=...)`, `sample(n, y=...)`; None: unconditional),
    `null_class` whether such a model also bounds log p(x), `elbo(x)` without labels (diffusion: its null class).
    """

    samplers: tuple[str, ...]
    max_steps: int | None
    sample_options: tuple[str, ...]
    estimators: tuple[str, ...]
    default_estimator: Estimator
    encoding: Encoding | None
    proposals: tuple[str, ...] = ("uniform",)
    bound_steps: bool = False
    design: DesignLevels | None = None
    classes: int | None = None
    null_class: bool = False

    @property
    def one_pass(self) -> bool:
        """True for a model that samples with a single decoder pass."""
        return self.samplers == (DECODER,)

    def steps_for(self, requested: tuple[int, ...]) -> tuple[int, ...]:
        """The NFEs of `requested` this model can take (1 for a one-pass model)."""
        if self.one_pass:
            return (1,)
        return tuple(k for k in requested if self.max_steps is None or k <= self.max_steps)


class GenerativeModel(nn.Module):
    """A latent-variable model over images x given in the model's range [-1, 1].

    Subclasses set `kind`, take `(config, shape, levels)`, declare `capabilities` and implement
    `_elbo`, `loss`, `_sample` and `information`; `encode`/`decode` where they declare an encoding.
    Everything that returns images returns integer levels (uint8, [N, C, H, W]), the data's own scale.
    """

    kind: ClassVar[str] = ""

    def __init__(self, config: Any, shape: tuple[int, int, int], levels: int) -> None:
        super().__init__()
        self.config = config
        c, h, w = shape
        self.shape = (int(c), int(h), int(w))
        self.levels = int(levels)

    @property
    def objective(self) -> str:
        """The name of the objective `loss` optimises, for reports ("β-ELBO", "L_simple", ...); a subclass names it
        (a class attribute or a property)."""
        return ""

    @property
    def capabilities(self) -> Capabilities:
        """What the model offers (`Capabilities`); every subclass declares it."""
        raise NotImplementedError(f"the {self.kind} model declares no capabilities")

    @property
    def dims(self) -> int:
        """D: pixel values per image."""
        c, h, w = self.shape
        return c * h * w

    @property
    def device(self) -> torch.device:
        """The device the model's parameters are on."""
        return next(self.parameters()).device

    def check_input(self, x: Tensor) -> None:
        """A clear error for images of the wrong shape or with NaNs."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise DataError(
                f"{self.kind} model expects images of shape [B, {', '.join(map(str, self.shape))}], got {list(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise DataError("input images contain NaN or infinite values")

    def to_levels(self, x: Tensor) -> Tensor:
        """Model-range images → integer levels."""
        return to_levels(x, self.levels)

    def check_labels(self, y: Tensor, n: int, what: str = "labels y") -> Tensor:
        """y as int64 on the model's device, or a one-line error: a model that is not conditional, a count other
        than n, a label outside 0..K−1."""
        classes = self.capabilities.classes
        if classes is None:
            raise ConfigError(f"the {self.kind} model is not conditional (train it with model.conditional=true)")
        check_labels(y, n, classes, what)
        return y.to(device=self.device, dtype=torch.long)

    def labels_for(self, y: Tensor | None, n: int) -> Tensor | None:
        """A conditional model's labels for a bound or a loss of n examples, checked (a one-line error without
        them, for a model with no null class to fall back on); None for an unconditional model."""
        if self.capabilities.classes is None:
            return None
        if y is None:
            raise ConfigError(f"the conditional {self.kind} model bounds log p(x|y) and trains given labels: pass y")
        return self.check_labels(y, n)

    def guided_labels(self, y: Tensor | None, n: int, guidance: float | None) -> tuple[Tensor | None, float]:
        """(checked labels, guidance scale w) for sampling a conditional model: w = 1 by default (the model its bound
        is of); a guidance without labels, or one that is not finite, is a one-line error."""
        if y is not None:
            y = self.check_labels(y, n)
        if guidance is not None and (y is None or not math.isfinite(guidance)):
            raise ConfigError(f"guidance (got {guidance}) is a finite scale for sampling given labels y")
        return y, 1.0 if guidance is None else float(guidance)

    # ---- the contract
    def elbo(
        self,
        x: Tensor,
        estimator: Estimator | None = None,
        generator: torch.Generator | None = None,
        y: Tensor | None = None,
    ) -> Bound:
        """The negative ELBO per example, in nats, as named terms, estimated as `estimator` says
        (None: the model's default); a method the model does not offer is a clear error. With labels `y` [B]
        (a conditional model) it bounds −log p(x | y), in the same units."""
        self.check_input(x)
        estimator = self.check_estimator(estimator)
        if y is None:
            return self._elbo(x, estimator, generator)
        return self._elbo_given(x, self.check_labels(y, x.shape[0]), estimator, generator)

    def check_estimator(self, estimator: Estimator | None) -> Estimator:
        """The estimator to use: the default for None, a clear error for a method this model does not offer."""
        caps = self.capabilities
        if estimator is None:
            return caps.default_estimator
        if not isinstance(estimator, Estimator):
            raise ConfigError(f"elbo takes an Estimator record, got {estimator!r}")
        if estimator.method not in caps.estimators:
            raise ConfigError(
                f"the {self.kind} model has no {estimator.method!r} bound; it offers {', '.join(caps.estimators)}"
            )
        if estimator.proposal not in caps.proposals:
            raise ConfigError(
                f"the {self.kind} model's bound has no {estimator.proposal!r} proposal; it offers "
                f"{', '.join(caps.proposals)}"
            )
        if estimator.steps is not None and not caps.bound_steps:
            raise ConfigError(f"the {self.kind} model's bound has no T-step form (Estimator.steps); leave it None")
        return estimator

    def prepare_estimator(self, estimator: Estimator, pilot: Tensor, generator: torch.Generator | None = None) -> None:
        """Fit what `estimator` needs from a pilot batch of training images (a diffusion model's importance
        proposal over t); nothing for most estimators."""

    def fitted_estimator(self) -> dict[str, Tensor]:
        """What `prepare_estimator` fitted, by name, to be kept with the run; empty for most models."""
        return {}

    def load_fitted_estimator(self, state: Mapping[str, Tensor]) -> None:
        """Put back what `fitted_estimator` returned (a kept pilot fit)."""
        if state:
            raise ConfigError(f"the {self.kind} model fits nothing on a pilot pass; got {sorted(state)}")

    def loss(self, x: Tensor, step: int = 0, total_steps: int | None = None) -> Tensor:
        """The training objective per example, shape [B]; the trainer passes the optimiser step it is on and
        the run's total steps, for schedules inside the loss (e.g. KL warm-up)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        **options: Any,
    ) -> Tensor:
        """n images as integer levels, drawn by `sampler` over `steps` network evaluations (None: the
        model's defaults); any other keyword must be one of `capabilities.sample_options`."""
        self.check_sampling(sampler, steps, **options)
        if n < 1:
            raise ConfigError(f"sample at least one image, got n = {n}")
        return self._sample(n, generator, sampler, steps, **options)

    def check_sampling(self, sampler: str | None = None, steps: int | None = None, **options: Any) -> None:
        """A clear error for a sampler, step count or keyword this model does not declare."""
        caps = self.capabilities
        unknown = sorted(set(options) - set(caps.sample_options))
        if unknown:
            allowed = ["sampler", "steps", *caps.sample_options]
            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{self.kind}.sample got an unknown keyword {unknown[0]!r}{hint}; it takes {', '.join(allowed)}"
            )
        if sampler is not None and sampler not in caps.samplers:
            raise ConfigError(
                f"the {self.kind} model has no sampler {sampler!r}; choose one of {', '.join(caps.samplers)}"
            )
        if steps is not None and not (1 <= steps and (caps.max_steps is None or steps <= caps.max_steps)):
            limit = "any number ≥ 1" if caps.max_steps is None else f"1 to {caps.max_steps}"
            raise ConfigError(f"the {self.kind} model samples with {limit} steps, got {steps}")

    def encode(self, x: Tensor) -> Tensor:
        """x → the model's latent (a VAE's posterior mean; diffusion's x_T by DDIM inversion), where it encodes."""
        raise NotImplementedError(f"{self.kind} has no encoder")

    def decode(self, z: Tensor) -> Tensor:
        """The latent → image levels, the inverse of `encode`."""
        raise NotImplementedError(f"{self.kind} has no decoder")

    def information(self, data: ImageData, n: int = 1000, generator: torch.Generator | None = None) -> Information:
        """What the model's own latent carries about x, on the first n images of `data`."""
        raise NotImplementedError

    def information_curve(self, x: Tensor, draws: int = 256, seed: int = 0) -> InformationCurve | None:
        """I(x; latent) of the model's own Gaussian encoder for x uniform over the images x (model range), by
        Monte Carlo (`elbolab.information`): along t for a chain, one point for a one-step code; None where the
        model declares no such curve."""
        return None

    def components(self) -> dict[str, GenerativeModel]:
        """Named sub-models that are models in their own right (latent diffusion: its autoencoder)."""
        return {}

    # ---- what subclasses implement
    def _elbo(self, x: Tensor, estimator: Estimator, generator: torch.Generator | None) -> Bound:
        raise NotImplementedError

    def _elbo_given(self, x: Tensor, y: Tensor, estimator: Estimator, generator: torch.Generator | None) -> Bound:
        """A conditional model's bound on −log p(x | y), y [B] int64 already checked."""
        raise NotImplementedError(f"{self.kind} has no conditional bound")

    def _sample(self, n: int, generator: torch.Generator | None, sampler: str | None, steps: int | None) -> Tensor:
        """n images by `sampler` over `steps`; a subclass adds the keywords of its `capabilities.sample_options`."""
        raise NotImplementedError

    @torch.no_grad()
    def interpolate(self, x0: Tensor, x1: Tensor, frames: int) -> Tensor:
        """Frames along the slerp between encode(x0) and encode(x1), decoded: [B, frames, C, H, W] levels. Both
        ends are encoded in one call and the frames decoded together, up to INTERPOLATION_BATCH at a time (a
        chain model's encoder and decoder cost many network passes, each cheaper per image in a larger batch)."""
        b = x0.shape[0]
        z0, z1 = self.encode(torch.cat([x0, x1])).split(b)
        weights = torch.linspace(0, 1, frames, device=z0.device)
        path = torch.cat([slerp(z0, z1, w) for w in weights])  # frame-major: [frames·B, ...]
        decoded = torch.cat([self.decode(part) for part in path.split(INTERPOLATION_BATCH)])
        return decoded.view(frames, b, *decoded.shape[1:]).transpose(0, 1).contiguous()


#: latents decoded at once along an interpolation (`GenerativeModel.interpolate`)
INTERPOLATION_BATCH = 256


def class_count(conditional: bool, classes: int | None) -> int | None:
    """K for a model built with `model.conditional=true` (a one-line error without it, or with K < 2); None
    for an unconditional one."""
    if not conditional:
        return None
    if classes is None or classes < 2:
        raise ConfigError(f"model.conditional=true needs labels of at least 2 classes in the data, got {classes}")
    return int(classes)


def slerp(z0: Tensor, z1: Tensor, w: Tensor | float) -> Tensor:
    """Spherical interpolation per example (Shoemake 1985); linear where the two are parallel."""
    a, b = z0.flatten(1), z1.flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))[:, None]
    sin = torch.sin(omega)
    w = torch.as_tensor(w, dtype=a.dtype, device=a.device)
    parallel = sin.abs() < 1e-6
    out = torch.where(
        parallel,
        (1 - w) * a + w * b,
        (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.where(parallel, 1.0, sin),
    )
    return out.view_as(z0)


@torch.no_grad()
def dataset_bound(
    model: GenerativeModel,
    data: ImageData,
    n: int | None = None,
    batch_size: int = 256,
    estimator: Estimator | None = None,
    generator: torch.Generator | None = None,
    conditional: bool = True,
) -> Bound:
    """The model's bound on the first n images of `data` (all if n is None), in batches: on −log p(x | y) with the
    data's labels for a conditional model (unless `conditional` is False: then its bound on −log p(x))."""
    n = len(data) if n is None else min(n, len(data))
    device = model.device
    labels = data.require_labels("a conditional model's bound") if conditional and model.capabilities.classes else None
    return Bound.cat(
        [
            model.elbo(
                data.model_range(slice(i, min(i + batch_size, n))).to(device),
                estimator,
                generator,
                y=None if labels is None else labels[i : min(i + batch_size, n)],
            ).detach()
            for i in range(0, n, batch_size)
        ]
    )


def label_keywords(model: GenerativeModel, y: Tensor | None) -> dict[str, Tensor]:
    """{"y": y} for a conditional model (its `loss` takes the labels), {} for any other."""
    return {"y": y} if y is not None and model.capabilities.classes is not None else {}
