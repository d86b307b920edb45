"""speechkit.config: strict JSON round trips, version upgrades, clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from speechkit.config import ModelConfig
from speechkit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class InnerConfig:
    width: int = 8
    dropout: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ToyConfig(ModelConfig):
    KIND = "toy"
    VERSION = 2
    dim: int
    strides: tuple[int, ...] = (2, 4)
    inner: InnerConfig = field(default_factory=InnerConfig)
    name: str | None = None

    @classmethod
    def upgrade(cls, data, from_version):
        if from_version == 1:  # version 1 called the field "channels"
            data = dict(data)
            data["dim"] = data.pop("channels")
            return data
        return super().upgrade(data, from_version)


def test_round_trip_through_json_file(tmp_path):
    cfg = ToyConfig(dim=16, strides=(2, 2, 5), inner=InnerConfig(width=3, dropout=0.1), name="x")
    cfg.save(tmp_path / "config.json")
    back = ToyConfig.load(tmp_path / "config.json")
    assert back == cfg and isinstance(back.strides, tuple) and isinstance(back.inner, InnerConfig)


def test_defaults_fill_in_and_ints_become_floats():
    cfg = ToyConfig.from_dict({"kind": "toy", "version": 2, "dim": 4, "inner": {"width": 2, "dropout": 0}})
    assert cfg.strides == (2, 4) and cfg.inner.dropout == 0.0 and isinstance(cfg.inner.dropout, float)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"kind": "toy", "version": 2, "dim": 4, "depth": 3}, "unknown config keys \\['depth'\\]"),
        ({"kind": "toy", "version": 2}, "missing config keys \\['dim'\\]"),
        ({"kind": "other", "version": 2, "dim": 4}, "kind is 'other'"),
        ({"kind": "toy", "version": 3, "dim": 4}, "newer than this speechkit"),
        ({"kind": "toy", "dim": 4}, "version must be a positive integer"),
        ({"kind": "toy", "version": 2, "dim": "four"}, "expected int"),
        ({"kind": "toy", "version": 2, "dim": 4, "inner": {"widht": 1}}, "inner: unknown config keys"),
        ({"kind": "toy", "version": 2, "dim": 4, "strides": 3}, "expected a list"),
    ],
)
def test_strict_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        ToyConfig.from_dict(data)


def test_old_version_is_upgraded():
    cfg = ToyConfig.from_dict({"kind": "toy", "version": 1, "channels": 12})
    assert cfg.dim == 12


def test_unreadable_config_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ToyConfig.load(tmp_path / "config.json")
    with pytest.raises(ConfigError, match="not found"):
        ToyConfig.load(tmp_path / "missing.json")
