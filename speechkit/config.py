"""Model configs: frozen keyword-only dataclasses stored as ``config.json`` next to the weights.

A model is rebuilt from its config alone. Every config class names its ``KIND`` (the registry key)
and ``VERSION``; JSON carries both. Loading is strict: unknown keys, missing keys, a wrong kind or a
newer version raise :class:`~speechkit.errors.ConfigError`; older versions go through the class's
``upgrade`` function, which is tested.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, kw_only=True)
    ... class TinyConfig(ModelConfig):
    ...     KIND = "tiny"
    ...     dim: int = 4
    ...     strides: tuple[int, ...] = (2, 4)
    >>> cfg = TinyConfig.from_dict({"kind": "tiny", "version": 1, "dim": 8, "strides": [2, 2]})
    >>> cfg.strides, cfg.to_dict()["dim"]
    ((2, 2), 8)
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from speechkit.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Base of every model config. Subclasses set ``KIND`` and, when the schema changes, ``VERSION``."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``kind``, ``version`` and every field (nested configs as dicts)."""
        out: dict[str, Any] = {"kind": self.KIND, "version": self.VERSION}
        for field in dataclasses.fields(self):
            out[field.name] = _to_json_value(getattr(self, field.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, strictly; older versions are upgraded first."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        kind, version = data.pop("kind", None), data.pop("version", None)
        if kind != cls.KIND:
            raise ConfigError(f"{cls.__name__}: config kind is {kind!r}, expected {cls.KIND!r}")
        if not isinstance(version, int) or version < 1:
            raise ConfigError(f"{cls.__name__}: config version must be a positive integer, got {version!r}")
        if version > cls.VERSION:
            raise ConfigError(
                f"{cls.__name__}: config version {version} is newer than this speechkit supports "
                f"({cls.VERSION}); upgrade speechkit"
            )
        while version < cls.VERSION:
            data = cls.upgrade(data, version)
            version += 1
        return _build_dataclass(cls, data, cls.__name__)

    @classmethod
    def upgrade(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Turn a version ``from_version`` dict (without kind/version) into version ``from_version + 1``."""
        raise ConfigError(f"{cls.__name__}: no upgrade path from config version {from_version}")

    def save(self, path: str | Path) -> None:
        """Write ``config.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(read_json(path))

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated like construction)."""
        return dataclasses.replace(self, **changes)


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path`` with errors that name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"config file not found: {path}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def _to_json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    return value


def _build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown config keys {unknown}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(f"{where}: missing config keys {missing}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turn a JSON value into the annotated type (tuples, nested dataclasses, optionals)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint, origin = options[0], typing.get_origin(options[0])
    if dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(item, v, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
