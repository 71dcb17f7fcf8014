"""Everything measured about one trained model, through its contract, as one JSON-ready dict.

`elbolab eval`, `compare` and `report` all call `measure`; each part can be switched off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from elbolab.bounds import mean_ci95
from elbolab.data.base import ImageData, to_model
from elbolab.evaluate.information import diffusion_rate_distortion, rmse_255, vae_information
from elbolab.evaluate.interpolation import interpolation_smoothness
from elbolab.evaluate.likelihood import dataset_bound, summarize_bound
from elbolab.evaluate.quality import sample_quality
from elbolab.evaluate.sharpness import sharpness
from elbolab.evaluate.speed import time_sampling
from elbolab.model import GenerativeModel

PARTS = ("likelihood", "speed", "quality", "sharpness", "interpolation", "information")
Log = Callable[[str], None]


@dataclass(frozen=True)
class EvalConfig:
    """What to measure and on how many images."""

    seed: int = 0
    n_eval: int | None = None                  # test images for the bound (None: the whole split)
    exact: bool = False                        # diffusion kinds: all T steps instead of Monte Carlo
    iwae_k: int = 100                          # VAE: importance samples (0 = skip)
    iwae_n: int = 200                          # VAE: test images for the IWAE bound
    n_samples: int = 256                       # samples for quality and sharpness
    speed_n: int = 16                          # images per timing
    nfe: tuple[int, ...] = (10, 20, 50)        # diffusion sampling steps timed
    quality_sampler: str = "dpm-solver++"
    quality_steps: int = 50
    rd_examples: int = 16                      # images for diffusion's exact per-step bound
    parts: tuple[str, ...] = PARTS


def sample_kwargs(kind: str, sampler: str | None = None, steps: int | None = None) -> dict[str, Any]:
    """How each kind is asked for samples: diffusion kinds take a sampler and NFE, the VAE nothing."""
    return {} if kind == "vae" else {"sampler": sampler, "steps": steps}


def seeded_sampler(model: GenerativeModel, seed: int, **kwargs: Any) -> Callable[[int], torch.Tensor]:
    """n ↦ n samples, from a fixed seed."""
    return lambda n: model.sample(n, generator=torch.Generator(model.device).manual_seed(seed), **kwargs)


def speed_table(kind: str, model: GenerativeModel, cfg: EvalConfig) -> list[dict[str, Any]]:
    """Sampling speed per sampler and NFE (the VAE: one decoder pass), each after a 2-image warm-up."""
    settings = [("decoder", 1, {})] if kind == "vae" else \
        [(sampler, nfe, {"sampler": sampler, "steps": nfe}) for sampler in ("ddim", "dpm-solver++", "ancestral")
         for nfe in cfg.nfe]
    rows = []
    for name, nfe, kw in settings:
        draw = seeded_sampler(model, cfg.seed, **kw)
        draw(2)
        rows.append({"sampler": name, **time_sampling(draw, cfg.speed_n, nfe=nfe, repeats=1, warmup=0,
                                                      device=model.device)})
    return rows


def model_bound(kind: str, model: GenerativeModel, test: ImageData, cfg: EvalConfig) -> dict[str, Any]:
    """Test-set bound in nats and bits/dim with 95% intervals; the VAE's IWAE bound beside it."""
    torch.manual_seed(cfg.seed)
    kwargs = {} if kind == "vae" else {"method": "exact" if cfg.exact else "mc"}
    start = time.perf_counter()
    result = summarize_bound(dataset_bound(model, test, cfg.n_eval, 256, **kwargs))
    result["n"] = min(cfg.n_eval or len(test), len(test))
    result["seconds"] = time.perf_counter() - start
    if kind == "vae" and cfg.iwae_k > 1:
        n_iwae = min(cfg.n_eval or len(test), cfg.iwae_n)
        start = time.perf_counter()
        iwae = dataset_bound(model, test, n_iwae, 64, k=cfg.iwae_k).bits_per_dim()
        mean, ci = mean_ci95(iwae)
        result["iwae"] = {"k": cfg.iwae_k, "n": n_iwae, "bpd": mean, "ci95": ci,
                          "seconds": time.perf_counter() - start}
    return result


def timed_round_trip(model: GenerativeModel, x: torch.Tensor) -> tuple[float, torch.Tensor] | None:
    """(seconds per image for `encode`, decode(encode(x)) as levels); None where the model has no encoder."""
    synchronize = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    synchronize()
    start = time.perf_counter()
    try:
        z = model.encode(x)
    except NotImplementedError:
        return None
    synchronize()
    seconds = (time.perf_counter() - start) / len(x)
    return seconds, model.decode(z).cpu()


def measure(kind: str, model: GenerativeModel, test: ImageData, cfg: EvalConfig, features: Any = None,
            log: Log = lambda _: None) -> tuple[dict[str, Any], dict[str, torch.Tensor | None]]:
    """The measurements named in `cfg.parts`, and the images behind them (samples, reconstructions, frames)."""
    unknown = set(cfg.parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown evaluation parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    parts = set(cfg.parts)
    r: dict[str, Any] = {"kind": kind, "objective": model.objective,
                         "parameters": sum(p.numel() for p in model.parameters())}
    images: dict[str, torch.Tensor | None] = {"samples": None, "reconstructions": None, "interpolation": None}
    if "likelihood" in parts:
        log(f"{kind}: bound on {cfg.n_eval or len(test)} test images")
        r["bound"] = model_bound(kind, model, test, cfg)
    if "speed" in parts:
        log(f"{kind}: sampling speed")
        r["speed"] = speed_table(kind, model, cfg)
    if parts & {"quality", "sharpness"}:
        log(f"{kind}: {cfg.n_samples} samples for quality and sharpness")
        kw = sample_kwargs(kind, cfg.quality_sampler, cfg.quality_steps)
        start = time.perf_counter()
        images["samples"] = seeded_sampler(model, cfg.seed, **kw)(cfg.n_samples).cpu()
        r["quality_samples"] = {"n": cfg.n_samples, "seconds": time.perf_counter() - start, **kw}
    if "quality" in parts:
        reference = test.images[: max(cfg.n_samples, min(len(test), 2000))]
        r["quality"] = sample_quality(images["samples"], reference, test.levels, features,
                                      reference_name=f"{len(reference)} {test.name} test images", seed=cfg.seed)
    if "sharpness" in parts:
        r["sharpness"] = {"samples": sharpness(images["samples"], test.images, test.levels)}
    x = test.model_range(slice(0, min(len(test), cfg.n_samples, 64))).to(model.device)
    round_trip = timed_round_trip(model, x) if parts & {"speed", "sharpness", "interpolation"} else None
    if round_trip is not None:
        r["encode_seconds_per_image"], images["reconstructions"] = round_trip
        r["reconstruction_rmse"] = rmse_255(to_model(images["reconstructions"], test.levels), x.cpu()).mean().item()
        if "sharpness" in parts:
            r["sharpness"]["reconstructions"] = sharpness(images["reconstructions"], test.images, test.levels)
    if "interpolation" in parts and round_trip is not None:
        log(f"{kind}: interpolation")
        pairs = min(8, len(x) // 2)
        images["interpolation"] = model.interpolate(x[:pairs], x[pairs:2 * pairs], 9).cpu()
        r["interpolation"] = interpolation_smoothness(images["interpolation"], test.levels, features)
    if kind == "diffusion":
        r["encode_steps"] = min(model.config.encode_steps, model.config.T)
    if kind == "vae":
        r["encoder_parameters"] = sum(p.numel() for n, p in model.named_parameters()
                                      if n.startswith(("encoder.", "to_posterior.")))
    if "information" in parts:
        log(f"{kind}: information")
        if kind == "vae":
            r["information"] = vae_information(model, test)
        elif kind == "diffusion":
            r["information"] = diffusion_rate_distortion(model, test, n=cfg.rd_examples,
                                                         generator=torch.Generator(model.device).manual_seed(cfg.seed))
        elif kind == "latent-diffusion":
            r["autoencoder_bound"] = summarize_bound(dataset_bound(model.vae, test, cfg.n_eval, 256))
            r["information"] = vae_information(model.vae, test)
    return r, images
