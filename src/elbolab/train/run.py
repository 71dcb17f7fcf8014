"""A run folder: the resolved config, model kinds, building and loading models."""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor

from elbolab.atomic import atomic_write_json
from elbolab.config import dotted_keys, flatten, from_dict, to_dict, unknown_key, with_overrides
from elbolab.data.base import ImageData
from elbolab.errors import ConfigError, ElbolabError
from elbolab.model import GenerativeModel
from elbolab.registry import MODEL_KINDS, model_classes
from elbolab.train.checkpoint import CheckpointError, load_tensors
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
#: written first into every run folder: what the folder is, its format version and the run's id
MARKER_FILE = "elbolab-run.json"
MARKER_KIND = "elbolab-run"
RUN_FORMAT = 1
#: the file a training process holds an exclusive `flock` on (and writes its PID into) while it writes the run
LOCK_FILE = "run.lock"


class RunFolderError(ElbolabError):
    """A folder is not a run, holds another run, or is being written by another process."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives (zero-padded, so names sort like steps)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:06d}.safetensors"


#: where the weights at fractions of the budget are kept (`train.snapshots`)
SNAPSHOT_DIR = "snapshots"


def snapshot_path(run_dir: Path, fraction: float) -> Path:
    """Where the weights the run held at `fraction` of its budget are kept."""
    return Path(run_dir) / SNAPSHOT_DIR / f"budget-{fraction:g}.safetensors"


def load_snapshot(run_dir: Path, fraction: float, device: str = "auto") -> tuple[GenerativeModel, dict[str, Any]]:
    """The run's model with the weights it held at `fraction` of its budget (`train.snapshots`), placed as
    `load_run` places it, and the snapshot's state (its step, the kept step, its FLOPs). A missing or damaged
    file, or one of other shapes, is a one-line error."""
    path = snapshot_path(run_dir, fraction)
    tensors, state = load_tensors(path)
    model = build_model(read_run_config(Path(run_dir)))
    return placed(model, tensors, path, device), dict(state or {})


def placed(model: GenerativeModel, tensors: dict[str, Tensor], source: Path, device: str) -> GenerativeModel:
    """`model` with `tensors` as its weights, on `device` in `inference_layout`, in eval mode; weights of other
    shapes than the model's are a one-line error naming `source`."""
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ElbolabError(f"{source}: weights do not match the run's config ({str(exc).splitlines()[0]})") from None
    target = pick_device(device)
    # nn.Module.to takes memory_format at run time; torch's stub does not declare it
    return model.to(target, memory_format=inference_layout(target)).eval()  # type: ignore[call-overload]


def list_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoint files, newest first (temporary files excluded; a legacy file last)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [p for p in folder.glob("step-*.safetensors") if p.is_file()] if folder.is_dir() else []
    found.sort(key=lambda p: (len(p.name), p.name), reverse=True)
    legacy = Path(run_dir) / LEGACY_CHECKPOINT
    return found + ([legacy] if legacy.is_file() else [])


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run: model kind and config, data, training; `classes`, the K labels of a
    conditional model (read from the training data at build time; None: unconditional)."""

    kind: str
    data: str
    data_dir: str | None
    shape: tuple[int, int, int]
    levels: int
    model: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    classes: int | None = None

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
            **({"classes": self.classes} if self.classes is not None else {}),
        }

    @staticmethod
    def from_json(obj: Any, source: str = "run config") -> RunConfig:
        """The config from its JSON form, every field's type checked (`RUN_CONFIG`); a bad one is one line naming it."""
        RUN_CONFIG.check(obj, source)
        shape = obj["shape"]
        cfg_cls, _ = model_classes(obj["kind"])
        try:
            return RunConfig(
                obj["kind"],
                obj["data"],
                obj.get("data_dir"),
                (shape[0], shape[1], shape[2]),
                obj["levels"],
                from_dict(cfg_cls, obj["model"], "model."),
                from_dict(TrainConfig, obj["train"], "train."),
                None if obj.get("classes") is None else int(obj["classes"]),
            )
        except ElbolabError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{source}: a model or train value has the wrong type ({exc})") from None


def positive_int(value: Any) -> bool:
    """A JSON integer ≥ 1 (booleans and floats excluded)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
    if cfg.classes is None:
        return model_cls(cfg.model, cfg.shape, cfg.levels)
    return model_cls(cfg.model, cfg.shape, cfg.levels, classes=cfg.classes)


def conditional_classes(model_cfg: Any, train_data: ImageData) -> int | None:
    """K for a model asked to be conditional (`model.conditional=true`), from the training data's labels (a
    one-line error where there are none); None for any other."""
    if not getattr(model_cfg, "conditional", False):
        return None
    train_data.require_labels("model.conditional=true")
    return train_data.classes


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
    return RunConfig.from_json(read_json(path, "run config"), str(path))


def _reject_constant(name: str) -> float:
    """json's hook for NaN and ±Infinity, which no elbolab file holds."""
    raise ValueError(f"non-finite number {name}")


def read_json(path: Path, what: str, schema: Schema | None = None) -> Any:
    """A JSON file, parsed and (with `schema`) checked; not UTF-8, not JSON, holding NaN/Infinity or not fitting
    its schema: one line naming the file (and the field)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: corrupt {what} (not UTF-8 text: byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError and the non-finite hook
        raise ConfigError(f"{path}: corrupt {what} ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    return obj if schema is None else schema.check(obj, str(path))


def finite_number(value: Any) -> bool:
    """A JSON number that is finite (booleans excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def count(value: Any) -> bool:
    """A JSON integer ≥ 0 (booleans and floats excluded)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def text(value: Any) -> bool:
    """A JSON string."""
    return isinstance(value, str)


def flag(value: Any) -> bool:
    """A JSON boolean."""
    return isinstance(value, bool)


def json_object(value: Any) -> bool:
    """A JSON object."""
    return isinstance(value, dict)


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """`check`, or null."""
    return lambda value: value is None or check(value)


@dataclass(frozen=True)
class Schema:
    """What one JSON file elbolab reads must hold: an object with the `required` keys, each of its `fields` that is
    there passing its check, `fields[key] = (check, what it must be)`; other keys are the file's own business."""

    fields: Mapping[str, tuple[Callable[[Any], bool], str]]
    required: tuple[str, ...] = ()

    def check(self, obj: Any, source: str) -> dict[str, Any]:
        """`obj` if it fits; else a ConfigError naming `source` (the file) and the first field that does not."""
        if not isinstance(obj, dict):
            raise ConfigError(f"{source}: must hold a JSON object, not {type(obj).__name__}")
        missing = [key for key in self.required if key not in obj]
        if missing:
            raise ConfigError(f"{source}: is missing the key {missing[0]!r}")
        for key, (ok, what) in self.fields.items():
            if key in obj and not ok(obj[key]):
                raise ConfigError(f"{source}: {key} must be {what}, not {json.dumps(obj[key])[:60]}")
        return obj


#: config.json: the resolved config of a run (the sections' values are checked by their dataclasses)
RUN_CONFIG = Schema(
    {
        "kind": (lambda v: isinstance(v, str) and v in MODEL_KINDS, f"one of {', '.join(MODEL_KINDS)}"),
        "data": (lambda v: isinstance(v, str) and bool(v), "a data set name or path"),
        "data_dir": (optional(text), "a path or null"),
        "shape": (
            lambda v: isinstance(v, list) and len(v) == 3 and all(positive_int(n) for n in v),
            "a list of three positive integers [C, H, W]",
        ),
        "levels": (lambda v: positive_int(v) and v >= 2, "an integer ≥ 2"),
        "model": (json_object, "a JSON object"),
        "train": (json_object, "a JSON object"),
        "classes": (optional(positive_int), "a positive integer or null"),
    },
    required=("kind", "data", "shape", "levels", "model", "train"),
)
#: metrics.json: what a finished run's training measured (the fields elbolab reads back; NaN is written as null)
METRICS = Schema(
    {
        "step": (count, "an integer ≥ 0"),
        "train_seconds": (finite_number, "a finite number"),
        "train_images_per_s": (finite_number, "a finite number"),
        "train_flops": (optional(finite_number), "a finite number or null"),
        "train_flops_per_step": (optional(finite_number), "a finite number or null"),
        "kept_step": (count, "an integer ≥ 0"),
        "test_bpd": (optional(finite_number), "a finite number or null"),
        "test_bpd_ci95": (optional(finite_number), "a finite number or null"),
        "test_n": (count, "an integer ≥ 0"),
        "validation": (optional(json_object), "a JSON object or null"),
        "objective": (text, "a string"),
    },
    required=("step", "train_seconds", "train_images_per_s"),
)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A finished run's metrics.json, checked against `METRICS`."""
    return dict(read_json(Path(run_dir) / METRICS_FILE, "metrics", METRICS))


def check_data_agrees(cfg: RunConfig, shape: tuple[int, ...], levels: int, run_dir: Path) -> None:
    """The data the run reads now has the image shape and number of levels its config.json records."""
    if int(levels) != cfg.levels:
        raise ConfigError(
            f"{Path(run_dir) / CONFIG_FILE}: levels is {cfg.levels} but the data {cfg.data} has {levels} levels; "
            f"bits/dim would be wrong (was the file edited?)"
        )
    if tuple(shape) != tuple(cfg.shape):
        raise ConfigError(
            f"{Path(run_dir) / CONFIG_FILE}: shape is {list(cfg.shape)} but the data {cfg.data} has images of "
            f"shape {list(shape)}"
        )


def pick_device(name: str) -> torch.device:
    """'auto' → the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(name)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but there are {torch.cuda.device_count()} CUDA devices")
    return device


def check_device_name(name: str) -> None:
    """`name` is auto, cpu, cuda or cuda:N (N a device number): the devices elbolab runs on."""
    kind, _, index = name.partition(":")
    if not (name in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit())):
        raise ConfigError(f"device {name!r}: choose auto, cpu, cuda or cuda:N (N a device number)")


def kept_weights(cfg: RunConfig, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model weights a checkpoint's tensors hold for measuring: the kept best (`keep_best`) where it has them,
    else the EMA weights."""
    prefix = "best." if cfg.train.keep_best and any(k.startswith("best.") for k in checkpoint) else "ema."
    return {k[len(prefix) :]: v for k, v in checkpoint.items() if k.startswith(prefix)}


def load_run(run_dir: Path, device: str = "auto", say_live: bool = True) -> tuple[RunConfig, GenerativeModel]:
    """A trained run's config and its model with the EMA weights (with `keep_best`, those of the best validation
    bound), in eval mode, in `inference_layout`; a run still training gives its newest checkpoint's, saying so
    (`say_live`)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    model = build_model(cfg)
    weights = run_dir / WEIGHTS_FILE
    holder = lock_holder(run_dir)
    if weights.is_file() and holder is None:
        tensors, _ = load_tensors(weights)
    else:  # a live run's weights, or a run cut short: its newest checkpoint's kept (keep_best) or EMA weights
        all_tensors, state, path = newest_checkpoint(run_dir)
        tensors = kept_weights(cfg, all_tensors)
        if holder is not None and say_live:
            step = (state or {}).get("step", "?")
            note(f"{run_dir} is still training (PID {holder}); reading its checkpoint at step {step} ({path.name})")
    return cfg, placed(model, tensors, run_dir, device)


def inference_layout(device: torch.device) -> torch.memory_format:
    """The memory format trained models are evaluated and sampled in: channels_last on the CPU, where oneDNN's
    convolutions run the UNet's forward pass ≈ 1.2× faster on 2 cores (benchmarks/speed.py); else as they are."""
    return torch.channels_last if device.type == "cpu" else torch.preserve_format


# ---------------------------------------------------------------- the run folder: marker, lock, discovery


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    """The run folder's marker (kind, format, run id), checked; None where the folder has none."""
    path = Path(run_dir) / MARKER_FILE
    if not path.is_file():
        return None
    marker = read_json(path, "run marker")
    if not isinstance(marker, dict) or marker.get("kind") != MARKER_KIND:
        raise RunFolderError(f"{path}: kind must be {MARKER_KIND!r}; this is not an elbolab run marker")
    if not (positive_int(marker.get("format")) and marker["format"] <= RUN_FORMAT):
        raise RunFolderError(f"{path}: format must be an integer 1..{RUN_FORMAT} (this elbolab reads up to that)")
    if not isinstance(marker.get("run_id"), str) or not marker["run_id"]:
        raise RunFolderError(f"{path}: run_id must be a non-empty string")
    return marker


def write_marker(run_dir: Path, legacy: bool = False) -> str:
    """Mark `run_dir` as a run with a fresh id (`legacy`: adopted from before markers, its checkpoints id-less)."""
    run_id = uuid.uuid4().hex
    atomic_write_json(
        Path(run_dir) / MARKER_FILE, {"kind": MARKER_KIND, "format": RUN_FORMAT, "run_id": run_id, "legacy": legacy}
    )
    return run_id


def is_run_folder(run_dir: Path) -> bool:
    """A marker, or (a run from before markers) a config.json or checkpoint.json."""
    return any((Path(run_dir) / name).is_file() for name in (MARKER_FILE, CONFIG_FILE, CHECKPOINT_FILE))


def has_checkpoints(run_dir: Path) -> bool:
    """Whether the run has written a checkpoint (its index or any checkpoint file)."""
    return (Path(run_dir) / CHECKPOINT_FILE).is_file() or bool(list_checkpoints(run_dir))


def check_run_folder(out: str | Path, resume: bool) -> None:
    """`out` can take this run: a name given, empty or a run, no checkpoints unless resuming, nobody writing it."""
    if str(out).strip() == "":
        raise RunFolderError("--out '': give a run folder")
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not is_run_folder(out):
        raise RunFolderError(
            f"{out}: not empty and not an elbolab run (no {MARKER_FILE}); choose a new or empty folder for --out"
        )
    read_marker(out)
    holder = lock_holder(out)
    if holder is not None:
        raise RunFolderError(f"{out}: another process (PID {holder}) is training this run; wait for it or stop it")
    if not resume and has_checkpoints(out):
        raise RunFolderError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def adopt_run_folder(run_dir: Path, resume: bool, say: Any = None) -> str:
    """The run id of the run about to be written into `run_dir`, the marker written first where needed: a fresh
    run gets a new one; a resumed run from before markers is adopted (said once)."""
    marker = read_marker(run_dir)
    if marker is not None and (resume or has_checkpoints(run_dir)):
        return str(marker["run_id"])
    legacy = resume and has_checkpoints(run_dir)
    if legacy and say is not None:
        say(f"{run_dir}: a run from before run markers; marked as one ({MARKER_FILE}), its checkpoints kept")
    return write_marker(run_dir, legacy=legacy)


def run_stamp(run_dir: Path) -> dict[str, str]:
    """What every checkpoint of the run records of it: {"run_id": …} (nothing in a folder without a marker)."""
    marker = read_marker(run_dir)
    return {} if marker is None else {"run_id": str(marker["run_id"])}


def check_checkpoint_run(run_dir: Path, path: Path, state: dict[str, Any] | None) -> None:
    """A checkpoint belongs to the run in `run_dir`: the same run id (an id-less one only in an adopted old run)."""
    marker = read_marker(run_dir)
    if marker is None:
        return
    saved = (state or {}).get("run_id")
    if saved is None and marker.get("legacy"):
        return
    if saved != marker["run_id"]:
        raise CheckpointError(
            f"{path}: a checkpoint of another run (run id {str(saved)[:8]}, this run is {marker['run_id'][:8]}); "
            f"not used"
        )


def lock_holder(run_dir: Path) -> int | None:
    """The PID of the process training `run_dir` now (0 if it wrote none), or None if no process holds it."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return None
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextmanager
def run_lock(run_dir: Path) -> Iterator[TextIO]:
    """Hold the exclusive lock on `run_dir` (the kernel drops it when the process dies); a second writer is
    refused in one line naming the holder's PID."""
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as fh:  # closing it releases the lock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            raise RunFolderError(
                f"{run_dir}: another process (PID {text or '?'}) is training this run; wait for it or stop it"
            ) from None
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield fh


def newest_checkpoint(run_dir: Path, tries: int = 3) -> tuple[dict[str, Any], dict[str, Any] | None, Path]:
    """The newest readable checkpoint's tensors, state and path; retried where a live run pruned it meanwhile."""
    for attempt in range(tries):
        found = list_checkpoints(run_dir)
        if not found:
            break
        try:
            tensors, state = load_tensors(found[0])
        except CheckpointError:
            if attempt + 1 == tries or found[0].exists():
                raise
            continue
        check_checkpoint_run(run_dir, found[0], state)
        return tensors, state, found[0]
    raise ElbolabError(f"{run_dir}: the run has no weights yet (no {WEIGHTS_FILE} or checkpoint)")


def note(message: str) -> None:
    """A reader's remark on the run it reads: one line on stderr."""
    print(f"note: {message}", file=sys.stderr, flush=True)


def read_log_text(path: Path) -> str:
    """A run's log.jsonl as text: bytes that are not UTF-8 (a line damaged on disk) become U+FFFD, so that line
    fails to parse and is dropped like any other damaged line, rather than the whole read failing."""
    return Path(path).read_bytes().decode("utf-8", errors="replace")
