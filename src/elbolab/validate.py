"""Checks run before any work: `train`, `eval` and `compare` fail here, in one line, rather than after minutes.

Each check raises an `ElbolabError` naming what is wrong: data that will not load, labels missing where the
built-in feature network needs them, an output location that cannot be written, too little disk for a
checkpoint, config values out of range, a run folder that does not fit the command.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.errors import ConfigError, DataError, ElbolabError

if TYPE_CHECKING:
    from elbolab.bounds import Estimator
    from elbolab.model import GenerativeModel

#: bytes per parameter in one checkpoint: fp32 weights, EMA and Adam's two moments
CHECKPOINT_BYTES_PER_PARAMETER = 4 * 4
#: kept free beyond the estimate, for logs, metrics and the file system's own needs
DISK_MARGIN_BYTES = 16 * 2**20
#: activation bytes per pixel value of a training micro-batch, a floor: fp32 feature maps of ≥ 32 channels, each kept
#: with ≥ 4 copies for the backward pass (a probe saw ≈ 3750 for the default VAE on digits)
ACTIVATION_BYTES_PER_VALUE = 512


def existing_ancestor(path: Path) -> Path:
    """The nearest folder on the way up from `path` that exists."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """`path` is a folder (or can become one) that this process can write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ElbolabError(f"{option} {path}: exists and is not a folder")
    base = existing_ancestor(path)
    if not base.is_dir():
        raise ElbolabError(f"{option} {path}: {base} is a file, so no folder can be made there")
    probe = base / f".elbolab-write-test-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise ElbolabError(f"{option} {path}: cannot write in {base} ({exc.strerror or exc})") from None
    return base


def check_output_file(path: str | Path, suffixes: tuple[str, ...], option: str = "--out") -> None:
    """`path` names a file with one of `suffixes` in a folder that exists and can be written."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ElbolabError(f"{option} {path}: exists and is not a regular file")
    if path.suffix.lower() not in suffixes:
        raise ElbolabError(f"{option} {path}: write {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise ElbolabError(f"{option} {path}: the folder {path.parent} does not exist")
    check_output_folder(path.parent, option)


def checkpoint_bytes(n_parameters: int) -> int:
    """Disk one checkpoint and the final weights need (the old checkpoint stays while the new one is written)."""
    return 2 * n_parameters * CHECKPOINT_BYTES_PER_PARAMETER + 4 * n_parameters + DISK_MARGIN_BYTES


def check_disk(path: str | Path, needed: int) -> None:
    """At least `needed` bytes free where `path` (or its nearest existing folder) lives."""
    base = existing_ancestor(Path(path))
    free = shutil.disk_usage(base).free
    if free < needed:
        raise ElbolabError(
            f"{path}: only {free / 2**20:.1f} MiB free on that disk; a checkpoint needs about {needed / 2**20:.1f} MiB"
        )


def available_memory(device: str) -> int:
    """Bytes free for training on `device`: the GPU's free memory, else the host's available memory."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(None if device in ("auto", "cuda") else torch.device(device))[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 2**62


def check_memory(data: ImageData, micro_batch: int, device: str) -> None:
    """A micro-batch that clearly cannot fit is refused: its activations, at `ACTIVATION_BYTES_PER_VALUE` bytes
    per pixel value (a floor below what every network here keeps for the backward pass), beyond the memory free."""
    needed = micro_batch * data.dims * ACTIVATION_BYTES_PER_VALUE
    free = available_memory(device)
    if needed > free:
        raise ConfigError(
            f"train.batch_size: a micro-batch of {micro_batch} images needs at least {needed / 2**30:.1f} GiB for "
            f"its activations, but {free / 2**30:.1f} GiB are free; lower train.batch_size or raise train.grad_accum"
        )


def check_data(data: str, data_dir: str | None, split: str = "test") -> ImageData:
    """The data set loads (its `split`)."""
    return load_data(data, split, data_dir)


def check_labels(data: ImageData, features: str) -> None:
    """The built-in feature network is a classifier: it needs the data's labels."""
    if features == "builtin" and data.labels is None:
        raise DataError(
            f"{data.name} has no labels, which the built-in feature network (a classifier) needs "
            f"for sample quality; choose --features inception, or --features none where offered"
        )


def parameter_count(kind: str, data: ImageData, model_cfg: Any) -> int:
    """Parameters of the model a config builds on this data; a config that cannot build one is a ConfigError."""
    from elbolab.train.run import RunConfig, build_model, conditional_classes

    classes = conditional_classes(model_cfg, data)  # a conditional model's K, from the data's labels
    try:
        model = build_model(RunConfig(kind, data.name, None, data.shape, data.levels, model_cfg, classes=classes))
    except ElbolabError:
        raise
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise ConfigError(
            f"the model config cannot build a {kind} for {data.shape} images "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    return sum(p.numel() for p in model.parameters())


def validate_train(
    kind: str,
    data: str | None,
    out: str | Path,
    *,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    resume: bool = False,
    steps: int | None = None,
) -> None:
    """Everything `train_run` needs, checked before it starts: config, run folder, data, model, disk."""
    from elbolab.config import flatten, read_config_file
    from elbolab.train.api import resumed_config
    from elbolab.train.run import check_data_agrees, check_run_folder, resolve_configs

    check_run_folder(out, resume)
    out = Path(out)
    check_output_folder(out)
    merged = {**flatten(read_config_file(config_file) if config_file else {}), **(overrides or {})}
    if steps is not None:
        merged["train.steps"] = steps
    if resume:
        cfg, _ = resumed_config(out, kind, data, merged)
        data, data_dir, model_cfg, train_cfg = cfg.data, cfg.data_dir, cfg.model, cfg.train
    else:
        model_cfg, train_cfg = resolve_configs(kind, None, merged)
        data = data or "digits"
    probe = check_data(data, data_dir)
    if resume:
        check_data_agrees(cfg, probe.shape, probe.levels, out)
    check_memory(probe, train_cfg.batch_size // train_cfg.grad_accum, train_cfg.device)
    check_disk(out, checkpoint_bytes(parameter_count(kind, probe, model_cfg)))


def check_proposal(model: GenerativeModel, estimator: Estimator | None, proposal: str | None) -> None:
    """A `proposal` asked for is one the model's bound takes with `estimator` (None: its default): a Monte-Carlo
    bound among its capabilities' proposals (a VAE's has none over t)."""
    if proposal is not None:
        model.check_estimator(replace(model.check_estimator(estimator), proposal=proposal))


def validate_eval(
    run_dir: str | Path,
    split: str,
    features: str,
    parts: tuple[str, ...],
    estimator: Estimator | None = None,
    proposal: str | None = None,
) -> None:
    """The run folder is a run with weights, its data loads, labels are there if the features need them, and the
    bound's estimator and proposal are ones the model offers."""
    from elbolab.train.run import check_data_agrees, load_run

    run_cfg, model = load_run(Path(run_dir), device="cpu", say_live=False)
    check_proposal(model, estimator, proposal)
    data = check_data(run_cfg.data, run_cfg.data_dir, split)
    check_data_agrees(run_cfg, data.shape, data.levels, Path(run_dir))
    if set(parts) & {"quality", "interpolation"}:
        check_labels(data, features)


def validate_compare(data: str, data_dir: str | None, out: str | Path, features: str) -> int:
    """`compare`'s data loads and has labels for the features chosen; its output folder is writable with
    room for the checkpoints of its models. Returns the images' side in pixels."""
    from elbolab.registry import MODEL_KINDS, model_classes
    from elbolab.train.run import read_run_config

    check_output_folder(out)
    probe = check_data(data, data_dir)
    check_labels(probe, features)
    for config in sorted(Path(out).glob("runs/*/config.json")):
        saved = read_run_config(config.parent)
        if (saved.data, saved.data_dir) != (data, data_dir):
            raise ElbolabError(f"{config.parent} holds a run on {saved.data}, not {data}; choose another --out")
    needed = 0
    for kind in MODEL_KINDS:
        needed += checkpoint_bytes(parameter_count(kind, probe, model_classes(kind)[0]()))
    check_disk(out, needed)
    return int(probe.shape[-1])
