"""A synthetic `CompareResults` with every record a report reads, and images for its grids: no training."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from elbolab.evaluate.run import Measurement, QualitySamples
from elbolab.experiments.attribution import OUTCOMES, Attribution, Cell, Row
from elbolab.experiments.design import Design, DesignPoint, place
from elbolab.experiments.results import CompareResults, RunResult
from elbolab.model import DesignLevels
from elbolab.records import (
    BoundSummary,
    ChainRateDistortion,
    Contrast,
    DataInfo,
    Effect,
    Information,
    LatentRate,
    RatePoint,
    SpeedRow,
    SweepPoint,
    UnitSummary,
)

LEVELS, SIDE = 17, 8


@dataclass(frozen=True)
class StepsPoint:
    """One point of a steps sweep, as the frontier figure reads it."""

    kind: str
    sampler: str
    nfe: int
    fd: float
    fd_low: float
    fd_high: float


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
        quality={
            "fd": fd,
            "precision": 0.7,
            "recall": 0.6,
            "n_samples": 64,
            "feature_net": "builtin",
            "reference": "360 digits test images",
        },
        sharpness={"samples": {"laplacian_variance_ratio": 0.8, "high_frequency_share_ratio": 0.9}},
        encode_seconds_per_image=1e-4,
        reconstruction_rmse=21.5,
        interpolation={
            "step_mean": 1.2,
            "step_std": 0.3,
            "cv": 0.25,
            "max_step_ratio": 1.8,
            "n_paths": 6,
            "n_frames": 9,
            "feature_net": "builtin",
        },
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
            effect=Effect("sharpness gap", 0.35, 0.2, 0.5, "bootstrap"),
            figure="samples",
            per_seed=(0.3, 0.4),
        ),
        Contrast(
            "The bound in the loss: a reconstruction–KL tug-of-war",
            "Reconstruction and KL pull apart.",
            "rates 0.4, 0.2, 0.1",
            "monotone in β",
            "not supported",
            effect=Effect("rate slope", -0.1, -0.2, -0.05, "paired", direction=1),
        ),
        Contrast(
            "Latent: a bottleneck vs. gradual destruction",
            "A bottleneck in one step.",
            "I(x; z) 0.3",
            "spread over steps",
            "inconclusive",
            effect=Effect("share", 0.05, -0.01, 0.1, "bootstrap"),
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
            effect=e,
            figure="frontier",
        ),
        Contrast(
            "Interpolation between concepts",
            "VAE latents interpolate smoothly. Diffusion's less so.",
            "cv 0.25 vs 0.6",
            "interval excludes 0",
            "inconclusive",
            effect=Effect("cv gap", 0.1, float("nan"), 0.3, "bootstrap"),
        ),
        Contrast(
            "Likelihood: the same bound, on held-out data",
            "Diffusion's bound is tighter.",
            "1.31 vs 1.22 bits/dim",
            "paired difference",
            "supported",
            effect=Effect("paired difference, bits/dim", 0.09, 0.05, 0.13, "paired t over 360 test images"),
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
    runs = {k: RunResult(m, 900, 5000.0, 60.0, {"beta": 1.0}) for k, m in models.items()}
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
    results = CompareResults(
        config={
            "data": "digits",
            "data_dir": None,
            "budget": 60.0,
            "seed": 0,
            "evaluation": {
                "n_samples": 64,
                "nfe": [10, 20, 50],
                "estimator": None,
                "parts": ["likelihood", "speed", "quality", "sharpness", "interpolation", "information"],
            },
            "overrides": {"diffusion": {"model.unet.preset": "tiny", "train.batch_size": 64}},
        },
        machine={
            "platform": "Linux-6.1.0-28-cloud-amd64-x86_64-with-glibc2.36",
            "processor": "x86_64",
            "torch_threads": 2,
            "load_average_1_5_15_min": [1.0, 1.2, 1.3],
        },
        data=DataInfo("digits", (1, SIDE, SIDE), LEVELS, SIDE * SIDE, 360),
        feature_net={
            "name": "elbolab-cnn/digits",
            "inception_unavailable_because": "Inception weights are not on this machine and nothing may be downloaded at run time",
        },
        models=runs,
        beta_sweep=(SweepPoint(0.25, 0.05, 12.0), SweepPoint(1.0, 0.02, 20.0), SweepPoint(4.0, 0.005, 35.0)),
        contrasts=contrasts(),
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
