"""Config dataclasses loadable from YAML with ``--key value`` command-line overrides.

Every trainer config is a plain dataclass; :func:`load_config` fills it from an optional YAML file,
then applies overrides, casting each value to the field's declared type. Unknown keys are errors
that list the known ones, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from moalign.errors import MoalignError

T = TypeVar("T")


class ConfigError(MoalignError, ValueError):
    """A config file or override that does not fit the config class."""


def _cast(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        options = [a for a in args if a is not type(None)]
        listy = [a for a in options if typing.get_origin(a) in (list, tuple)]
        if isinstance(value, str) and str in options and listy and not ("," in value or value.strip().startswith("[")):
            return value  # "all-linear" stays a string; "a,b" and "[a, b]" become lists
        # str accepts anything, so it is tried last: a list or number is never kept as its text
        options.sort(key=lambda a: a is str)
        for option in options:
            try:
                return _cast(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} fits none of {annotation}")
    if origin in (list, tuple):
        items = value
        if isinstance(value, str) and value.strip().startswith("["):
            try:
                items = yaml.safe_load(value)  # "[a, b]" on the command line, as YAML writes it
            except yaml.YAMLError:
                raise ConfigError(f"{key}: cannot read {value!r} as a list") from None
        elif isinstance(value, str):
            items = [] if not value.strip() else [v.strip() for v in value.split(",")]
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        cast = [_cast(v, inner, key) for v in items]
        return cast if origin is list else tuple(cast)
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float, str):
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}") from None
    return value


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """``["--lr", "1e-4", "--objectives=a,b"]`` -> ``{"lr": "1e-4", "objectives": "a,b"}``."""
    out: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--"):
            raise ConfigError(f"expected --key value, got {item!r}")
        key = item[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            key = key.replace("-", "_")  # only the key is normalised: values keep their dashes
        else:
            key = key.replace("-", "_")
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise ConfigError(f"--{key} needs a value")
            value = items[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from a YAML file (optional) and overrides (which win), type-checking every key."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config keys")
        values.update(loaded)
    values.update(overrides or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {cls.__name__}; known keys: {sorted(fields)}")
    return cls(**{key: _cast(value, hints[key], key) for key, value in values.items()})


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as plain data (for JSON/YAML output and logging)."""
    return dataclasses.asdict(config)
