"""precision: CPU bf16 detection and the autocast context."""

from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.train import precision


def test_cpu_bf16_follows_cpuinfo_flags(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"sse4_2", "avx512_bf16"}))
    assert precision.cpu_supports_bf16()
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"sse4_2", "avx2"}))
    assert not precision.cpu_supports_bf16()
    assert precision.resolve_precision(torch.device("cpu"), "auto") == "fp32"
    assert precision.resolve_precision(torch.device("cpu"), "bf16") == "bf16"  # forced


def test_autocast_context_matches_resolved_precision(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    with precision.autocast_context(cpu, "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with precision.autocast_context(cpu, "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ConfigError):
        precision.resolve_precision(cpu, "fp16")


def test_cpu_model_name_is_text():
    assert isinstance(precision.cpu_model_name(), str) and precision.cpu_model_name()
