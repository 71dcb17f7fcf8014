"""A synthetic `CompareResults` with every record a report reads, and images for its grids: no training."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from elbolab.evaluate.interpolation import PathStats
from elbolab.evaluate.resample import images_digest
from elbolab.evaluate.run import Measurement, QualitySamples
from elbolab.evaluate.steps import StepsPoint
from elbolab.experiments.attribution import OUTCOMES, Attribution, Cell, Row
from elbolab.experiments.compare import CompareConfig
from elbolab.experiments.design import Design, DesignPoint, place
from elbolab.experiments.results import CompareResults, RunResult, SeedResult
from elbolab.model import DesignLevels
from elbolab.records import (
    BoundSummary,
    ChainRateDistortion,
    Contrast,
    DataInfo,
    Effect,
    FeatureNet,
    Information,
    LatentRate,
    Machine,
    RatePoint,
    Resampled,
    SampleFigures,
    SpeedRow,
    SweepPoint,
    UnitSummary,
)
from elbolab.registry import model_classes

LEVELS, SIDE = 17, 8
RNG = np.random.default_rng(0)


class CountedFeatures:
    """A feature network that records the digest of every image set it featurises (`__call__`)."""

    def __init__(self, features: Any) -> None:
        self.features, self.seen = features, []

    def __getattr__(self, name: str) -> Any:
        if name == "features":  # not set yet (unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.features, name)

    def __call__(self, images: torch.Tensor, levels: int) -> torch.Tensor:
        self.seen.append(images_digest(images, levels))
        return self.features(images, levels)


def resampled(value: float, sd: float, n: int = 50) -> Resampled:
    """A figure with normal bootstrap replicates of spread sd."""
    return Resampled(value, tuple((value + sd * RNG.standard_normal(n)).tolist()))


def sample_figures(fd: float, sharpness: float = 0.8) -> SampleFigures:
    """Sample figures of 64 samples against 360 test images, FD `fd` and a Laplacian ratio `sharpness`."""
    return SampleFigures(
        64,
        360,
        resampled(sharpness, 0.02),
        resampled(0.9, 0.02),
        resampled(fd, 0.1 * fd),
        resampled(fd / 100, 0.001),
        resampled(0.7, 0.03),
        resampled(0.6, 0.03),
        "elbolab-cnn/digits",
    )


def _bound(total: float, terms: dict[str, float]) -> BoundSummary:
    unit = UnitSummary(total, 0.02, terms, {k: 0.01 for k in terms})
    return BoundSummary(
        UnitSummary(total * 44, 0.9, {k: v * 44 for k, v in terms.items()}, {k: 0.4 for k in terms}),
        unit,
        True,
        360,
        "exact",
    )


def _speed(sampler: str, nfes: tuple[int, ...], per_pass: float) -> tuple[SpeedRow, ...]:
    return tuple(
        SpeedRow(sampler, n, 16, 3, n * per_pass * 16, n * per_pass, 1 / (n * per_pass), "cpu", 2) for n in nfes
    )


def _chain() -> ChainRateDistortion:
    curve = tuple(
        RatePoint(
            s,
            s / 100,
            2.5 * (1 - s / 100) ** 2,
            60 * (s / 100) ** 0.5,
            3.0 * (1 - s / 100),
            4.0 * (1 - s / 100) ** 3 + 1e-3,
        )
        for s in range(0, 101, 10)
    )
    per_step = tuple(0.02 * 0.97**t for t in range(100))
    return ChainRateDistortion(curve, 64, 100, 1.9, 0.3, 0.5, per_step)


def _measurement(
    kind: str, total: float, fd: float, speed: tuple[SpeedRow, ...], sampler: str, steps: int, information: Information
) -> Measurement:
    terms = (
        {"reconstruction": total * 0.7, "kl": total * 0.3}
        if kind != "diffusion"
        else {"prior": 0.001, "diffusion": total * 0.8, "reconstruction": total * 0.2}
    )
    return Measurement(
        kind=kind,
        objective=f"{kind} objective",
        parameters=120_000,
        encoder_parameters=30_000,
        encode_passes=1,
        bound=_bound(total, terms),
        speed=speed,
        quality_samples=QualitySamples(64, 1.0, sampler, steps),
        samples=sample_figures(fd),
        encode_seconds_per_image=1e-4,
        reconstruction_rmse=21.5,
        interpolation=PathStats((1.2,) * 6, (1.8,) * 6, (0.9,) * 6, (0.99,) * 6, 9, (0.25,) * 6, "elbolab-cnn/digits"),
        information=information,
    )


def contrasts() -> tuple[Contrast, ...]:
    """Contrasts of every verdict, with and without effects and figure names, one naming a figure never drawn."""
    e = Effect(
        "Fréchet distance, VAE − diffusion",
        3.2,
        1.1,
        5.3,
        "bootstrap over samples (1000 resamples)",
        min_detectable=0.8,
    )
    return (
        Contrast(
            "Samples: blurry vs. sharp",
            "The VAE's samples are blurry. Diffusion's are sharp.",
            "Laplacian variance ratio 0.6 vs 0.95.",
            "supported if the interval excludes 0 above",
            "supported",
            effects=(Effect("sharpness gap", 0.35, 0.2, 0.5, "bootstrap"),),
            figure="samples",
            per_seed=(0.3, 0.4),
        ),
        Contrast(
            "The bound in the loss: a reconstruction–KL tug-of-war",
            "Reconstruction and KL pull apart.",
            "rates 0.4, 0.2, 0.1",
            "monotone in β",
            "not supported",
            effects=(Effect("rate slope", -0.1, -0.2, -0.05, "paired", direction=1),),
        ),
        Contrast(
            "Latent: a bottleneck vs. gradual destruction",
            "A bottleneck in one step.",
            "I(x; z) 0.3",
            "spread over steps",
            "inconclusive",
            effects=(Effect("share", 0.05, -0.01, 0.1, "bootstrap"),),
            figure="information",
        ),
        Contrast(
            "Decoder speed: one pass vs. a chain of small steps",
            "One pass is fast.",
            "ratio 480×",
            "supported if ≥ 10×",
            "supported",
        ),
        Contrast(
            "Sample quality",
            "Diffusion's samples are closer to the data.",
            "FD 9.1 vs 5.9",
            "interval excludes 0",
            "supported",
            effects=(e,),
            figure="frontier",
        ),
        Contrast(
            "Interpolation between concepts",
            "VAE latents interpolate smoothly. Diffusion's less so.",
            "cv 0.25 vs 0.6",
            "interval excludes 0",
            "inconclusive",
            effects=(Effect("cv gap", 0.1, float("nan"), 0.3, "bootstrap"),),
        ),
        Contrast(
            "Likelihood: the same bound, on held-out data",
            "Diffusion's bound is tighter.",
            "1.31 vs 1.22 bits/dim",
            "paired difference",
            "supported",
            effects=(Effect("paired difference, bits/dim", 0.09, 0.05, 0.13, "paired t over 360 test images"),),
        ),
        Contrast(
            "A contrast with a figure this report does not draw",
            "Something.",
            "something",
            "a rule",
            "inconclusive",
            figure="no_such_figure",
        ),
    )


def synthetic_results() -> tuple[CompareResults, dict[str, dict[str, torch.Tensor]], torch.Tensor]:
    """(results, each model's images, reference test images)."""
    latent = Information(latent=LatentRate(0.8, 0.05, 0.8 / 44, (0.1,) * 16, 16, 9, 0.01, 22.0, 360))
    models = {
        "vae": _measurement("vae", 1.31, 9.1, _speed("decoder", (1,), 2e-5), "decoder", 1, latent),
        "diffusion": _measurement(
            "diffusion",
            1.22,
            5.9,
            _speed("ddim", (10, 20, 50), 3e-4) + _speed("dpm-solver++", (10, 20, 50), 3.2e-4),
            "dpm-solver++",
            50,
            Information(chain=_chain()),
        ),
        "latent-diffusion": _measurement(
            "latent-diffusion", 1.27, 7.0, _speed("ddim", (10, 20, 50), 2e-4), "ddim", 50, latent
        ),
    }
    runs = {k: RunResult(m, 900, 5000.0, 60.0, model_classes(k)[0]()) for k, m in models.items()}
    g = torch.Generator().manual_seed(0)
    images = {
        k: {
            "samples": torch.randint(0, LEVELS, (64, 1, SIDE, SIDE), generator=g),
            "reconstructions": torch.randint(0, LEVELS, (32, 1, SIDE, SIDE), generator=g),
            "interpolation": torch.randint(0, LEVELS, (6, 9, 1, SIDE, SIDE), generator=g),
        }
        for k in models
    }
    reference = torch.randint(0, LEVELS, (32, 1, SIDE, SIDE), generator=g)
    sweep = tuple(
        SweepPoint(beta, rate, rmse, 9.0, sample_figures(fd, sharp), sample_figures(fd / 2, 0.9), 1.1, 1.6)
        for beta, rate, rmse, fd, sharp in (
            (0.25, 0.05, 12.0, 14.0, 0.9),
            (1.0, 0.02, 20.0, 9.1, 0.8),
            (4.0, 0.005, 35.0, 12.0, 0.5),
        )
    )
    steps = tuple(
        StepsPoint("diffusion", sampler, n, 1e-3 * n, sample_figures(5.9 + 30 / n, 1.0 - 0.5 / n))
        for sampler in ("ancestral", "ddim")
        for n in (1, 2, 10)
    ) + (StepsPoint("vae", "decoder", 1, 2e-5, models["vae"].samples),)
    seed = SeedResult(0, runs, sweep, steps=steps, contrasts=contrasts())
    results = CompareResults(
        config=CompareConfig(
            budget=60.0, overrides={"diffusion": {"model.unet.preset": "tiny", "train.batch_size": 64}}
        ),
        machine=Machine(
            "Linux-6.1.0-28-cloud-amd64-x86_64-with-glibc2.36",
            "x86_64",
            2,
            "2.5.1",
            2,
            "3.12.3",
            "2026-12-03 11:00:00 UTC",
            (1.0, 1.2, 1.3),
        ),
        data=DataInfo("digits", (1, SIDE, SIDE), LEVELS, SIDE * SIDE, 360),
        feature_net=FeatureNet(
            "elbolab-cnn/digits",
            "Inception weights are not on this machine and nothing may be downloaded at run time",
        ),
        models=runs,
        beta_sweep=sweep,
        contrasts=contrasts(),
        seeds=(seed,),
        design=(design := _design()),
        attribution=_attribution(design),
    )
    return results, images, reference


def _design() -> Design:
    """The three models of the synthetic results at their usual levels, placed without building them."""
    levels = {
        "vae": DesignLevels("learned", 1, 0.25, 1, "ELBO"),
        "diffusion": DesignLevels("fixed", None, 1.0, None, "ELBO"),
        "latent-diffusion": DesignLevels("learned, then fixed", 1001, 0.25, 1001, "stages"),
    }
    return place("core", tuple(DesignPoint(k, k) for k in levels), lambda p: levels[p.name])


def _attribution(design: Design) -> Attribution:
    """A row of cells for each judged pairing: effects with intervals, a verdict where a claim is made."""
    rows = []
    for i, p in enumerate(design.pairings):
        cells = tuple(
            Cell(
                o.name,
                Effect(o.name, 0.1 * (i + j), 0.1 * (i + j) - 0.05, 0.1 * (i + j) + 0.05, "synthetic"),
                "a claim" if j % 2 else None,
                "supported" if j % 2 else None,
            )
            if j % 3
            else Cell(o.name, None, "a claim about this cell", why_not="not measured on both sides")
            for j, o in enumerate(OUTCOMES)
        )
        rows.append(Row(p, cells if p.judged else ()))
    return Attribution(OUTCOMES, tuple(rows))
