"""Checkpoints: every tensor in one safetensors file, the JSON state (with a content hash) in its metadata.

Files are written through the one atomic writer (`elbolab.atomic`); a non-finite tensor is refused
before anything is written; on load a file is verified (it parses, its content hash agrees, its
tensors have the names, shapes and dtypes the model needs, all finite) and any fault is one line.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor

from elbolab.atomic import atomic_write_bytes, atomic_write_json  # noqa: F401 - re-exported for callers
from elbolab.errors import ElbolabError

#: the JSON state's key for the content hash
HASH_KEY = "sha256"
#: (shape, dtype) a tensor must have, by name
Spec = Mapping[str, tuple[tuple[int, ...], torch.dtype]]


class CheckpointError(ElbolabError):
    """A checkpoint file is missing, truncated, damaged, or does not fit the model."""


def content_hash(tensors: Mapping[str, Tensor], state: Mapping[str, Any] | None) -> str:
    """SHA-256 over the JSON state (without its hash) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    rest = {k: v for k, v in (state or {}).items() if k != HASH_KEY}
    h.update(json.dumps(rest, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def nonfinite_tensors(tensors: Mapping[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.dtype.is_floating_point and not bool(torch.isfinite(v).all())]


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Save finite tensors and JSON metadata (with their content hash) as safetensors, atomically."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    bad = nonfinite_tensors(tensors)
    if bad:
        raise CheckpointError(
            f"{path}: not written, non-finite values in {', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}"
        )
    state = dict(metadata or {})
    state[HASH_KEY] = content_hash(tensors, state)
    atomic_write_bytes(path, save_bytes(tensors, metadata={"state": json.dumps(state)}))


def _header_state(raw: bytes, path: Path) -> dict[str, Any] | None:
    """The JSON state in a safetensors header's metadata (None if it has none)."""
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    meta = header.get("__metadata__") or {}
    if "state" not in meta:
        return None
    state = json.loads(meta["state"])
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint (its state is not a mapping)")
    return state


def load_tensors(path: Path, spec: Spec | None = None) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """Tensors and JSON state from a safetensors file, verified; one-line `CheckpointError` otherwise.

    Checks: it parses, the content hash (where stored) agrees, every tensor is finite, and, given a
    `spec`, the tensors it names are there with those shapes and dtypes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        raw = path.read_bytes()
        tensors = load_bytes(raw)
        state = _header_state(raw, path)
    except (SafetensorError, OSError, ValueError, struct.error) as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({exc})".splitlines()[0]) from None
    if state is not None and HASH_KEY in state and content_hash(tensors, state) != state[HASH_KEY]:
        raise CheckpointError(f"{path}: corrupt checkpoint (content hash mismatch: the file was damaged or altered)")
    bad = nonfinite_tensors(tensors)
    if bad:
        raise CheckpointError(f"{path}: corrupt checkpoint (non-finite values in {', '.join(bad[:3])})")
    if spec is not None:
        check_spec(path, tensors, spec)
    return tensors, state


def check_spec(
    path: Path, tensors: Mapping[str, Tensor], spec: Spec, exact: tuple[str, ...] = ("model.", "ema.")
) -> None:
    """Every tensor `spec` names is present with its shape and dtype, and none else under the `exact` prefixes."""
    missing = [k for k in spec if k not in tensors]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint does not fit the model (missing tensors "
            f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''})"
        )
    extra = [k for k in tensors if k.startswith(exact) and k not in spec]
    if extra:
        raise CheckpointError(
            f"{path}: checkpoint does not fit the model (tensors the model does not have: "
            f"{', '.join(extra[:3])}{' …' if len(extra) > 3 else ''})"
        )
    for name, (shape, dtype) in spec.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            raise CheckpointError(
                f"{path}: checkpoint does not fit the model ({name} is {t.dtype} "
                f"{list(t.shape)}, the model needs {dtype} {list(shape)})"
            )


def module_spec(state: Mapping[str, Tensor], prefix: str = "") -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The (shape, dtype) of every tensor in a state dict, keys prefixed."""
    return {f"{prefix}{k}": (tuple(v.shape), v.dtype) for k, v in state.items()}


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """torch optimizer state_dict → (tensors keyed 'optim.<param>.<name>', JSON-able rest)."""
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def optimizer_spec(path: Path, tensors: Mapping[str, Tensor], params: list[Tensor]) -> None:
    """Optimizer moments in a checkpoint belong to existing parameters and have their shapes."""
    for key, t in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, name = key.split(".", 2)
        if not pid.isdigit() or int(pid) >= len(params):
            raise CheckpointError(f"{path}: checkpoint does not fit the model ({key} names no parameter)")
        p = params[int(pid)]
        if name.startswith("exp_avg") and (tuple(t.shape) != tuple(p.shape) or t.dtype != p.dtype):
            raise CheckpointError(
                f"{path}: checkpoint does not fit the model ({key} is {t.dtype} "
                f"{list(t.shape)}, the parameter is {p.dtype} {list(p.shape)})"
            )


def rng_tensors() -> dict[str, Tensor]:
    """The global CPU (and CUDA) RNG states (the data and the loss's noise come from per-step streams)."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def rng_spec() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """What `rng_tensors` writes, as a spec (CUDA states excluded: they depend on the machine)."""
    return {k: (tuple(v.shape), v.dtype) for k, v in rng_tensors().items() if not k.startswith("rng.cuda.")}


def restore_rng(tensors: dict[str, Tensor]) -> None:
    """Put back the RNG states saved by `rng_tensors`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
