"""diffusers ↔ elbolab: a folder saved by diffusers as an elbolab model, and a run as a `DDPMPipeline` folder.

Loading: a `UNet2DModel` and a `DDPMScheduler`/`DDIMScheduler` config (a pipeline folder with `unet/`
and `scheduler/`, or both configs in one folder) become a `DiffusionModel` whose chain is the
scheduler's own: its betas, tabulated in float64 (`TabulatedSchedule`), its prediction type
(epsilon/sample/v_prediction → eps/x0/v), its variance (fixed_small → small, fixed_large → large,
learned_range → learned, the same interpolation v ↦ (v + 1)/2 between log β̃ and log β) and its
clipping of x̂_0. The UNet is called through `DiffusersUNet` (diffusers' index k = elbolab's step − 1).
Nothing is downloaded: a Hub id must be fetched into a folder first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from elbolab.diffusion.chain import GaussianDiffusion
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.model import DiffusionModel
from elbolab.diffusion.parameterisation import Parameterisation
from elbolab.diffusion.reverse import Variance
from elbolab.diffusion.schedule import DiscreteSchedule
from elbolab.diffusion.tabulated import TabulatedSchedule
from elbolab.errors import ElbolabError
from elbolab.model import GenerativeModel
from elbolab.nets.diffusers_unet import DiffusersUNet, require_diffusers
from elbolab.train.run import (
    Schema,
    count,
    finite_number,
    flag,
    load_run,
    optional,
    pick_device,
    positive_int,
    read_json,
    read_run_config,
    text,
)

#: diffusers' prediction_type → elbolab's parameterisation
PREDICTION_TYPES: dict[str, Parameterisation] = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
#: diffusers' variance_type → elbolab's reverse variance (the *_log forms differ only in how they are stored)
VARIANCE_TYPES: dict[str, Variance] = {
    "fixed_small": "small",
    "fixed_small_log": "small",
    "fixed_large": "large",
    "fixed_large_log": "large",
    "learned_range": "learned",
}
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")
#: ᾱ from the float64 table must match the scheduler's float32 alphas_cumprod this closely (relative)
ALPHA_BAR_RTOL = 1e-4

_SIDES = "a positive integer or a list of two"
#: unet/config.json: the fields elbolab reads before diffusers builds the UNet from the rest
UNET_CONFIG = Schema(
    {
        "_class_name": (text, "a string"),
        "in_channels": (positive_int, "a positive integer"),
        "out_channels": (positive_int, "a positive integer"),
        "sample_size": (
            optional(lambda v: positive_int(v) or (isinstance(v, list) and len(v) == 2 and all(map(positive_int, v)))),
            f"{_SIDES} positive integers, or null",
        ),
        "time_embedding_type": (text, "a string"),
        "num_class_embeds": (optional(count), "an integer ≥ 0 or null"),
        "class_embed_type": (optional(text), "a string or null"),
    },
    required=("_class_name", "in_channels", "out_channels"),
)
#: scheduler/scheduler_config.json: the chain's fields (`chain_config`) and its betas
SCHEDULER_CONFIG = Schema(
    {
        "_class_name": (text, "a string"),
        "num_train_timesteps": (positive_int, "a positive integer"),
        "prediction_type": (text, "a string"),
        "variance_type": (optional(text), "a string or null"),
        "thresholding": (flag, "true or false"),
        "clip_sample": (flag, "true or false"),
        "clip_sample_range": (finite_number, "a finite number"),
        "rescale_betas_zero_snr": (flag, "true or false"),
        "beta_schedule": (text, "a string"),
        "beta_start": (finite_number, "a finite number"),
        "beta_end": (finite_number, "a finite number"),
        "trained_betas": (
            optional(lambda v: isinstance(v, list) and bool(v) and all(map(finite_number, v))),
            "a list of finite numbers or null",
        ),
    },
    required=("_class_name", "num_train_timesteps"),
)


class DiffusersModel(DiffusionModel):
    """A diffusers UNet2DModel and scheduler as an elbolab diffusion model over images in [−1, 1]."""

    kind = "diffusers"

    def __init__(
        self, unet: torch.nn.Module, scheduler: Any, shape: tuple[int, int, int], levels: int, source: str = ""
    ) -> None:
        chain, clip = chain_config(scheduler.config)
        GenerativeModel.__init__(self, chain, shape, levels)
        self.clip = clip
        self.source = source
        self.scheduler_name = type(scheduler).__name__
        schedule = scheduler_schedule(scheduler)
        self.diffusion = GaussianDiffusion(chain, DiffusersUNet(unet, chain.T), levels, schedule=schedule)


def chain_config(config: dict[str, Any]) -> tuple[DiffusionConfig, bool]:
    """(elbolab's chain configuration, whether x̂_0 is clipped to [−1, 1]) for a scheduler's config.

    The chain's schedule is the scheduler's table (`scheduler_schedule`), given to `GaussianDiffusion`
    in place of the config's named one."""
    get = config.get
    prediction = get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ElbolabError(
            f"prediction_type {prediction!r} has no elbolab parameterisation; supported: {', '.join(PREDICTION_TYPES)}"
        )
    variance_type = get("variance_type", "fixed_small")  # a DDIM scheduler has none: its DDPM chain's β̃
    if variance_type not in VARIANCE_TYPES:
        raise ElbolabError(
            f"variance_type {variance_type!r} has no elbolab counterpart; supported: {', '.join(VARIANCE_TYPES)}"
        )
    if get("thresholding", False):
        raise ElbolabError("the scheduler uses dynamic thresholding of x̂_0, which elbolab's bound does not model")
    clip = bool(get("clip_sample", False))
    if clip and float(get("clip_sample_range", 1.0)) != 1.0:
        raise ElbolabError(f"the scheduler clips x̂_0 to ±{get('clip_sample_range')}; elbolab clips to [−1, 1]")
    if get("rescale_betas_zero_snr", False):
        raise ElbolabError("a zero terminal SNR schedule (rescale_betas_zero_snr) has no finite prior term")
    variance = VARIANCE_TYPES[variance_type]
    steps = get("num_train_timesteps")
    if steps is None:
        raise ElbolabError("the scheduler's config has no num_train_timesteps")
    chain = DiffusionConfig(
        T=int(steps),
        parameterisation=PREDICTION_TYPES[prediction],
        variance=variance,
        loss="hybrid" if variance == "learned" else "simple",
    )
    return chain, clip


def scheduler_schedule(scheduler: Any) -> TabulatedSchedule:
    """The scheduler's betas as elbolab's schedule (float64), checked against its own alphas_cumprod."""
    schedule = TabulatedSchedule.from_betas(scheduler.betas)
    expected = scheduler.alphas_cumprod.double()
    found = schedule.alpha_bar(schedule.times(torch.arange(1, schedule.T + 1)))
    if not torch.allclose(found, expected, rtol=ALPHA_BAR_RTOL, atol=0):
        worst = ((found - expected).abs() / expected).max().item()
        raise ElbolabError(
            f"the scheduler's alphas_cumprod is not the product of its (1 − betas) "
            f"(relative difference {worst:.2g}); elbolab cannot tabulate this schedule"
        )
    return schedule


def diffusers_folders(path: Path) -> tuple[Path, Path]:
    """(UNet folder, scheduler folder) of a pipeline folder (unet/, scheduler/) or a folder holding both configs."""
    path = Path(path)
    if not path.is_dir():
        raise ElbolabError(
            f"{path}: no such folder; elbolab never downloads — on a machine with internet, fetch "
            f"the model first (hf download {path} --local-dir FOLDER) and pass FOLDER"
        )
    if (path / "unet").is_dir() and (path / "scheduler").is_dir():
        return path / "unet", path / "scheduler"
    if (path / "config.json").is_file() and (path / "scheduler_config.json").is_file():
        return path, path
    raise ElbolabError(
        f"{path}: not a diffusers folder (expected unet/ and scheduler/ of a pipeline, "
        f"or config.json and scheduler_config.json)"
    )


def load_diffusers(path: Path, shape: tuple[int, int, int], levels: int, device: str = "auto") -> DiffusersModel:
    """The diffusers model saved in `path` as an elbolab model for images of `shape` with `levels` levels, in eval
    mode on `device` ("auto": the first GPU if there is one)."""
    unet_dir, scheduler_dir = diffusers_folders(path)
    unet_cfg = read_json(unet_dir / "config.json", "diffusers UNet config", UNET_CONFIG)
    scheduler_cfg = read_json(scheduler_dir / "scheduler_config.json", "diffusers scheduler config", SCHEDULER_CONFIG)
    if unet_cfg.get("_class_name") != "UNet2DModel":
        raise ElbolabError(f"{unet_dir}: a {unet_cfg.get('_class_name')}, but elbolab reads a UNet2DModel")
    if scheduler_cfg.get("_class_name") not in SCHEDULERS:
        raise ElbolabError(
            f"{scheduler_dir}: a {scheduler_cfg.get('_class_name')}; elbolab reads {' or '.join(SCHEDULERS)}"
        )
    check_unet(unet_cfg, shape, scheduler_cfg.get("variance_type") == "learned_range")
    diffusers = require_diffusers()
    scheduler = getattr(diffusers, scheduler_cfg["_class_name"]).from_config(scheduler_cfg)
    unet = diffusers.UNet2DModel.from_pretrained(unet_dir, local_files_only=True, low_cpu_mem_usage=False)
    unet = unet.float().eval()
    return DiffusersModel(unet, scheduler, shape, levels, source=str(path)).to(pick_device(device)).eval()


def check_unet(cfg: dict[str, Any], shape: tuple[int, int, int], learned_variance: bool) -> None:
    """A clear error for a UNet that does not fit the data or does not take (x_t, k) alone."""
    c, h, w = shape
    size = cfg.get("sample_size")
    sides = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if cfg.get("in_channels") != c or (sides != (h, w) and size is not None):
        raise ElbolabError(
            f"the UNet takes {cfg.get('in_channels')}×{sides[0]}×{sides[1]} images, the data are {c}×{h}×{w}"
        )
    out = 2 * c if learned_variance else c
    if cfg.get("out_channels") != out:
        raise ElbolabError(f"the UNet gives {cfg.get('out_channels')} channels; the scheduler needs {out}")
    if (
        cfg.get("time_embedding_type", "positional") != "positional"
        or cfg.get("num_class_embeds")
        or cfg.get("class_embed_type")
    ):
        raise ElbolabError("elbolab reads unconditional UNet2DModels with the positional time embedding")


# ---------------------------------------------------------------- export


def export_refusal(kind: str, model_cfg: Any) -> str | None:
    """Why a run cannot become a DDPMPipeline folder, or None if it can."""
    if kind != "diffusion":
        return f"it is a {kind} run; only diffusion runs have a DDPM pipeline"
    if getattr(model_cfg, "net", "unet") != "diffusers-unet2d":
        return (
            "its network is elbolab's own UNet, which diffusers cannot load; train with "
            "--set model.net=diffusers-unet2d"
        )
    return None


def export_run(run_dir: Path, out: Path) -> Path:
    """Write the run as a folder `DDPMPipeline.from_pretrained(out)` loads: its UNet2DModel (EMA weights) and a
    DDPMScheduler with the chain's betas as `trained_betas`, its prediction type, variance and clipping."""
    diffusers = require_diffusers()
    cfg = read_run_config(run_dir)
    reason = export_refusal(cfg.kind, cfg.model)
    if reason is not None:
        raise ElbolabError(f"{run_dir}: cannot export to diffusers: {reason}")
    _, model = load_run(run_dir, device="cpu")
    if not isinstance(model, DiffusionModel):
        raise ElbolabError(f"{run_dir}: cannot export to diffusers: not a pixel-space diffusion run")
    chain = model.diffusion
    if not isinstance(chain.schedule, DiscreteSchedule):
        raise ElbolabError(f"{run_dir}: cannot export to diffusers: a continuous-time chain has no β_1..β_T")
    predictions: dict[str, str] = {v: k for k, v in PREDICTION_TYPES.items()}
    if chain.config.parameterisation not in predictions:
        raise ElbolabError(
            f"{run_dir}: cannot export to diffusers: it has no prediction type for "
            f"model.parameterisation={chain.config.parameterisation}"
        )
    prediction = predictions[chain.config.parameterisation]
    variance = {"small": "fixed_small", "large": "fixed_large", "learned": "learned_range"}[chain.config.variance]
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=chain.config.T,
        trained_betas=chain.schedule.betas().tolist(),
        prediction_type=prediction,
        variance_type=variance,
        clip_sample=model.clip,
        clip_sample_range=1.0,
    )
    diffusers.DDPMPipeline(unet=chain.net.unet, scheduler=scheduler).save_pretrained(out)
    return Path(out)
