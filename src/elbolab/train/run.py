"""A run folder: the resolved config, model kinds, building and loading models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from elbolab.config import dotted_keys, flatten, from_dict, to_dict, unknown_key, with_overrides
from elbolab.errors import ConfigError, ElbolabError
from elbolab.model import GenerativeModel
from elbolab.registry import MODEL_KINDS, model_classes  # noqa: F401  (re-exported for the training layer's callers)
from elbolab.train.checkpoint import atomic_write_json, load_tensors
from elbolab.train.config import TrainConfig

CONFIG_FILE = "config.json"
#: the index of the newest checkpoint (step, file, hash): present once a run has written a checkpoint
CHECKPOINT_FILE = "checkpoint.json"
#: the last `train.keep_checkpoints` checkpoints, `checkpoints/step-000500.safetensors`
CHECKPOINT_DIR = "checkpoints"
#: where runs written before the checkpoint folder kept their one checkpoint (still read)
LEGACY_CHECKPOINT = "checkpoint.safetensors"
WEIGHTS_FILE = "model.safetensors"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
#: every change made to a run's config on resume, one JSON line each
CONFIG_HISTORY_FILE = "config-history.jsonl"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives (zero-padded, so names sort like steps)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:06d}.safetensors"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoint files, newest first (temporary files excluded; a legacy file last)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [p for p in folder.glob("step-*.safetensors") if p.is_file()] if folder.is_dir() else []
    found.sort(key=lambda p: (len(p.name), p.name), reverse=True)
    legacy = Path(run_dir) / LEGACY_CHECKPOINT
    return found + ([legacy] if legacy.is_file() else [])


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run: model kind and config, data, training."""

    kind: str
    data: str
    data_dir: str | None
    shape: tuple[int, int, int]
    levels: int
    model: Any
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_json(self) -> dict[str, Any]:
        """The resolved config as the JSON saved in the run's config.json."""
        return {
            "kind": self.kind,
            "data": self.data,
            "data_dir": self.data_dir,
            "shape": list(self.shape),
            "levels": self.levels,
            "model": to_dict(self.model),
            "train": to_dict(self.train),
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> RunConfig:
        """A RunConfig from config.json's contents; unknown or bad keys are a clear error."""
        try:
            cfg_cls, _ = model_classes(obj["kind"])
            return RunConfig(
                obj["kind"],
                obj["data"],
                obj.get("data_dir"),
                tuple(obj["shape"]),
                int(obj["levels"]),
                from_dict(cfg_cls, obj["model"], "model."),
                from_dict(TrainConfig, obj["train"], "train."),
            )
        except KeyError as exc:
            raise ElbolabError(f"run config is missing the key {exc}") from None


def split_sections(merged: dict[str, Any], known: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Dotted keys → (`model.*` overrides, `train.*` overrides), prefixes removed; other keys are errors."""
    model_over, train_over = {}, {}
    for key, value in merged.items():
        section, _, rest = key.partition(".")
        if section == "model" and rest:
            model_over[rest] = value
        elif section == "train" and rest:
            train_over[rest] = value
        else:
            raise unknown_key(key, known)
    return model_over, train_over


def resolve_configs(kind: str, file_data: dict[str, Any] | None, overrides: dict[str, str]) -> tuple[Any, TrainConfig]:
    """Defaults ← config file ← `--set` overrides, for the `model.*` and `train.*` sections."""
    cfg_cls, _ = model_classes(kind)
    return apply_overrides(cfg_cls(), TrainConfig(), {**flatten(file_data or {}), **overrides})


def apply_overrides(model_cfg: Any, train_cfg: TrainConfig, merged: dict[str, Any]) -> tuple[Any, TrainConfig]:
    """Both sections with dotted `model.*`/`train.*` keys replaced, typed and checked."""
    known = dotted_keys(model_cfg, "model.") + dotted_keys(train_cfg, "train.")
    model_over, train_over = split_sections(merged, known)
    return with_overrides(model_cfg, model_over, "model."), with_overrides(train_cfg, train_over, "train.")


def build_model(cfg: RunConfig) -> GenerativeModel:
    """A freshly initialised model for a run config (seed the RNG first)."""
    _, model_cls = model_classes(cfg.kind)
    return model_cls(cfg.model, cfg.shape, cfg.levels)


def save_run_config(run_dir: Path, cfg: RunConfig) -> None:
    """Write the resolved config into RUN/config.json, atomically."""
    atomic_write_json(Path(run_dir) / CONFIG_FILE, cfg.to_json())


def read_run_config(run_dir: Path) -> RunConfig:
    """The resolved config of an existing run, with a clear error if the folder is not a run."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise ElbolabError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise ElbolabError(f"{run_dir}: not an elbolab run (no {CONFIG_FILE})")
    try:
        return RunConfig.from_json(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ElbolabError(f"{path}: corrupt run config ({exc})") from None


def pick_device(name: str) -> torch.device:
    """'auto' → the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available")
    return device


def load_run(run_dir: Path, device: str = "auto") -> tuple[RunConfig, GenerativeModel]:
    """A trained run's config and its model with the EMA weights (with `keep_best`, those of the best validation
    bound), in eval mode, in `inference_layout`."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    model = build_model(cfg)
    weights = run_dir / WEIGHTS_FILE
    checkpoints = list_checkpoints(run_dir)
    if weights.is_file():
        tensors, _ = load_tensors(weights)
    elif checkpoints:  # a run cut short: its newest checkpoint's kept (keep_best) or EMA weights
        all_tensors, _ = load_tensors(checkpoints[0])
        prefix = "best." if cfg.train.keep_best and any(k.startswith("best.") for k in all_tensors) else "ema."
        tensors = {k[len(prefix) :]: v for k, v in all_tensors.items() if k.startswith(prefix)}
    else:
        raise ElbolabError(f"{run_dir}: the run has no weights yet (no {WEIGHTS_FILE} or checkpoint)")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ElbolabError(f"{run_dir}: weights do not match the run's config ({str(exc).splitlines()[0]})") from None
    target = pick_device(device)
    return cfg, model.to(target, memory_format=inference_layout(target)).eval()


def inference_layout(device: torch.device) -> torch.memory_format:
    """The memory format trained models are evaluated and sampled in: channels_last on the CPU, where oneDNN's
    convolutions run the UNet's forward pass ≈ 1.2× faster on 2 cores (benchmarks/speed.py); else as they are."""
    return torch.channels_last if device.type == "cpu" else torch.preserve_format
