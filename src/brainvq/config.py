"""Typed configuration: dataclasses built from plain dicts (YAML/JSON) with validation.

Every config class is a dataclass whose fields have simple types (int, float, str, bool,
tuples of those, Optional of those) or nested config dataclasses. `from_dict` refuses unknown
keys and wrong types with a one-line error that names the key; each class may define
`validate(self)` for range checks, which raises ValueError naming the key. Every number must be
finite, and a key whose name says its kind (`seed`, `max_minutes`: brainvq.values.KEY_RULES)
follows that kind's rule in every section, as the flags of the same name do.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from brainvq.values import KEY_RULES

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def _check_value(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_check_value(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value))
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {list(allowed)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build config dataclass `cls` from `data`, checking keys, types and ranges."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key (known keys: {', '.join(sorted(fields))})"
        )
    kwargs = {k: _check_value(f"{prefix}{k}", v, hints[k]) for k, v in data.items()}
    for k, v in kwargs.items():
        rule = KEY_RULES.get(k)
        if rule is not None and v is not None and not rule.accepts(v):
            raise ConfigError(f"{prefix}{k}: expected {rule.expected}, got {v!r}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as e:  # require() names the field; the prefix makes it `vqvae.field`
            raise ConfigError(f"{prefix}{e}") from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain dict (lists, not tuples) of a config dataclass, for JSON/YAML."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def require(cond: bool, key: str, message: str) -> None:
    """Range check for `validate` methods: raise ConfigError('key: message') if not cond."""
    if not cond:
        raise ConfigError(f"{key}: {message}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping: YAML keeps the last one
    silently, so an edit that forgot the old line would change a config without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not a YAML text file (not UTF-8: byte {e.object[e.start]:#04x} at "
            f"offset {e.start}); expected a brainvq config (configs/*.yaml)"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
