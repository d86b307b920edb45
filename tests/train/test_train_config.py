"""TrainConfig: strict JSON round trip, clear errors, the learning-rate schedule."""

from __future__ import annotations

import json

import pytest

from speechkit.errors import ConfigError
from speechkit.train import TrainConfig


def test_json_round_trip_is_exact(tmp_path):
    config = TrainConfig(
        max_steps=7, betas=(0.8, 0.95), ema_decay=0.99, max_wall_minutes=170.0, best_metric="x"
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["kind"] == "train" and data["version"] == 1
    assert TrainConfig.from_dict(data) == config
    config.save(tmp_path / "train_config.json")
    assert TrainConfig.load(tmp_path / "train_config.json") == config


def test_unknown_keys_are_named():
    data = TrainConfig(max_steps=3).to_dict()
    data["learning_rat"] = 1.0
    with pytest.raises(ConfigError, match="learning_rat"):
        TrainConfig.from_dict(data)


def test_missing_keys_are_named_even_with_defaults():
    data = TrainConfig(max_steps=3).to_dict()
    del data["warmup_steps"], data["ema_decay"]
    with pytest.raises(ConfigError, match=r"ema_decay.*warmup_steps"):
        TrainConfig.from_dict(data)


def test_wrong_kind_and_version_raise():
    data = TrainConfig(max_steps=3).to_dict()
    with pytest.raises(ConfigError, match="kind"):
        TrainConfig.from_dict({**data, "kind": "codec"})
    with pytest.raises(ConfigError, match="version"):
        TrainConfig.from_dict({**data, "version": 99})


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_steps": 0},
        {"lr_schedule": "linear"},
        {"precision": "fp16"},
        {"ema_decay": 1.0},
        {"betas": (0.9,)},
    ],
)
def test_bad_values_raise(overrides):
    with pytest.raises(ConfigError):
        TrainConfig(**{"max_steps": 5, **overrides})


def test_replace_validates_and_rejects_unknown_names():
    config = TrainConfig(max_steps=5)
    assert config.replace(batch_size=3).batch_size == 3
    with pytest.raises(ConfigError, match="bogus"):
        config.replace(bogus=1)
    with pytest.raises(ConfigError, match="batch_size"):
        config.replace(batch_size=0)


def test_lr_schedule_warmup_cosine_and_constant():
    cosine = TrainConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.2)
    factors = [cosine.lr_multiplier(s) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))  # decays monotonically
    assert factors[100] == pytest.approx(0.2)
    constant = cosine.replace(lr_schedule="constant")
    assert constant.lr_multiplier(50) == 1.0 and constant.lr_multiplier(4) == pytest.approx(0.5)
