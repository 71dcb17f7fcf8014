"""Typed, frozen configs: overrides from `key=value`, files, and JSON round trips."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from elbolab.errors import ConfigError


def require(key: str, value: Any, ok: bool, allowed: str) -> None:
    """A ConfigError naming the key, the value and what is allowed, unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is out of range; it must be {allowed}")


def unknown_key(key: str, known: list[str]) -> ConfigError:
    """The error for an unknown key, suggesting the closest known one."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def dotted_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every settable key of a config dataclass, dotted and prefixed (`model.unet.preset`)."""
    return [prefix + k for k in flatten(to_dict(cfg))]


def _type_name(annotation: Any) -> str:
    """How an allowed type reads in an error message."""
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a string or JSON value into the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))) and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        allowed = " or ".join("none" if a is type(None) else _type_name(a) for a in args)
        raise ConfigError(f"{key}: cannot read {value!r}; allowed: {allowed}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        inner = args[0] if args else str
        return tuple(_coerce(v, inner, key) for v in value)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if annotation in (int, float) and isinstance(value, bool):
            raise ValueError(value)
        if annotation is int:
            number = float(value) if isinstance(value, (str, float)) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError(value)
            return int(number)
        if annotation is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if annotation is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key}: cannot read {value!r}; allowed: {_type_name(annotation)}") from None
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build a (possibly nested) config dataclass from a mapping, rejecting unknown keys."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise unknown_key(full, [prefix + n for n in names])
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{full}: {value!r} is not allowed; expected a mapping of {full}.* keys")
            kwargs[key] = from_dict(typing.cast(type, annotation), value, full + ".")
        else:
            kwargs[key] = _coerce(value, annotation, full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-ready data."""
    plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return plain


def with_overrides(cfg: Any, overrides: Mapping[str, Any], prefix: str = "") -> Any:
    """A copy of `cfg` with dotted keys replaced (`latent_dim=16`), typed by the fields.

    `prefix` names the section in error messages (`model.`).
    """
    data = to_dict(cfg)
    known = dotted_keys(cfg, prefix)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise unknown_key(prefix + dotted, known)
            node = node[part]
        if parts[-1] not in node:
            raise unknown_key(prefix + dotted, known)
        if isinstance(node[parts[-1]], dict):
            inner = [k for k in known if k.startswith(f"{prefix}{dotted}.")]
            raise ConfigError(f"{prefix}{dotted} is a section, not a value; set one of {', '.join(inner)}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data, prefix)


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`key=value` strings → a mapping; a malformed item is a ConfigError."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if not value:
            raise ConfigError(f"--set {key}: no value given (write {key}=VALUE)")
        if any(c.isspace() for c in key):
            raise ConfigError(f"--set {key!r}: a key has no spaces")
        if key in out:
            raise ConfigError(f"--set {key} given twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or YAML config file as a (nested) mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise ConfigError(f"{path}: cannot parse config ({exc.__class__.__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping")
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → dotted keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
