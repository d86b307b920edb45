"""Tokenizer tests run torch on one thread: their tensors are tiny, and on a shared or small
machine intra-op threads only contend (a 150-step fit takes 0.6 s on one thread, up to 20 s on two
busy ones)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
