"""The records `compare`, `eval` and `report` hand on: a trained run as measured, one seed's comparison, and
a whole comparison."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from elbolab.evaluate.floors import Floors
from elbolab.evaluate.information import InformationCurve
from elbolab.evaluate.interpolation import PathStats
from elbolab.evaluate.run import Measurement
from elbolab.evaluate.speed import PairedTiming
from elbolab.evaluate.steps import StepsPoint
from elbolab.experiments.attribution import Attribution
from elbolab.experiments.design import Design
from elbolab.records import Contrast, DataInfo, FeatureNet, Machine, Record, SweepPoint
from elbolab.registry import model_classes
from elbolab.vae import VAEConfig

if TYPE_CHECKING:
    from elbolab.experiments.compare import CompareConfig


@dataclass(frozen=True)
class RunResult(Record):
    """A trained run: its measurement, how long and how fast it trained, and its resolved model config (the
    config dataclass of its kind, `registry.model_classes`)."""

    measurement: Measurement
    train_steps: int
    train_images_per_s: float
    train_seconds: float
    model_config: Any = None
    train_flops: float | None = None  # counted FLOPs trained (None: a run from before they were counted)
    train_threads: int | None = None  # torch threads the run trained at

    def flop_rate(self) -> float | None:
        """Counted training FLOPs per second of training (None where not counted)."""
        if self.train_flops is None or not self.train_seconds > 0:
            return None
        return self.train_flops / self.train_seconds

    @classmethod
    def json_types(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The saved model config is read as its kind's config class."""
        return {"model_config": model_classes(data["measurement"]["kind"])[0]}

    def beta(self) -> float:
        """The KL weight β the run's VAE was trained with (eq. 1 of β-VAE: Higgins et al. 2017)."""
        if not isinstance(self.model_config, VAEConfig):
            raise TypeError(f"{self.measurement.kind}: β is a VAE's setting, this run has none")
        return float(self.model_config.beta)


@dataclass(frozen=True)
class SeedResult(Record):
    """Everything one seed's comparison measured beyond its models, and the contrasts judged on that seed alone.

    `floors`: real held-out and blurred images on the sample figures; `information`: I(x_0; x_t) of the
    forward process along t and the VAE's I(x; z); `steps`: sample figures against sampling steps;
    `paths`: interpolation per model; `timings`: alternating timings ("encoder", "decoder", "latent");
    `objective`: the diffusion pair trained with L_simple and with the ELBO's weighting; `design`: the points
    placed and their pairs; `attribution`: every pair's effect on every outcome.
    """

    seed: int
    models: dict[str, RunResult]
    beta_sweep: tuple[SweepPoint, ...]
    floors: Floors | None = None
    information: tuple[InformationCurve, ...] = ()
    steps: tuple[StepsPoint, ...] = ()
    paths: dict[str, PathStats] = field(default_factory=dict)
    timings: dict[str, PairedTiming] = field(default_factory=dict)
    objective: dict[str, RunResult] = field(default_factory=dict)
    contrasts: tuple[Contrast, ...] = ()
    design: Design | None = None
    attribution: Attribution | None = None


@dataclass(frozen=True)
class CompareResults(Record):
    """Everything a comparison found: per model and β-sweep (the first seed's), a verdict per contrast (all
    seeds folded), the design and its attribution table, and each seed's own measurements and contrasts in
    `seeds`; `config` is what `compare` ran (for a report on existing runs: their data and evaluation, the runs
    named in `runs`)."""

    config: CompareConfig
    machine: Machine
    data: DataInfo
    feature_net: FeatureNet
    models: dict[str, RunResult]
    beta_sweep: tuple[SweepPoint, ...]
    contrasts: tuple[Contrast, ...]
    seeds: tuple[SeedResult, ...] = ()
    runs: tuple[str, ...] = ()  # the run folders a report on existing runs measured (empty: compare trained them)
    design: Design | None = None  # the first seed's (every seed places the same design)
    attribution: Attribution | None = None  # every seed's table folded
    #: counted FLOPs per second one training process reaches on an idle machine of this kind (the preset's
    #: calibration); a run far below it was starved by other work on the machine
    calibration: float | None = None
    conditional: dict[str, RunResult] = field(default_factory=dict)  # `compare --conditional`: the ends' twins

    @classmethod
    def type_names(cls) -> dict[str, Any]:
        """`CompareConfig` lives in `compare`, which builds these records."""
        from elbolab.experiments.compare import CompareConfig

        return {"CompareConfig": CompareConfig}

    def measured(self) -> dict[str, Measurement]:
        """Each model's measurement by kind."""
        return {kind: r.measurement for kind, r in self.models.items()}
