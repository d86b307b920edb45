"""Checks shared by the nn tests, handed out as fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn


def _assert_grads_finite(module: nn.Module, output: Tensor) -> None:
    module.zero_grad()
    # A random projection, so no parameter's gradient vanishes by symmetry of the loss.
    weight = torch.randn_like(output)
    (output * weight).sum().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(param.grad).all(), f"non-finite gradient for {name}"


def _assert_causal(
    fn: Callable[[Tensor], Tensor], x: Tensor, cut_in: int, cut_out: int, time_dim: int = -1
) -> None:
    """Perturb x from index cut_in on; outputs before cut_out must not move, later ones must."""
    with torch.no_grad():
        y1 = fn(x)
        x2 = x.clone()
        tail = x2.narrow(time_dim, cut_in, x.shape[time_dim] - cut_in)
        tail.add_(torch.randn_like(tail))
        y2 = fn(x2)
    out_dim = time_dim if time_dim >= 0 else y1.dim() + time_dim
    length = y1.shape[out_dim]
    torch.testing.assert_close(
        y1.narrow(out_dim, 0, cut_out), y2.narrow(out_dim, 0, cut_out), rtol=0, atol=1e-6
    )
    changed = (
        y1.narrow(out_dim, cut_out, length - cut_out) - y2.narrow(out_dim, cut_out, length - cut_out)
    ).abs()
    assert changed.max() > 1e-4, "perturbing the future changed nothing at all: the check is vacuous"


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on busy shared cores they lose a lot."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def assert_grads_finite() -> Callable[[nn.Module, Tensor], None]:
    """Backpropagate a random projection of the output; every parameter gets a finite gradient."""
    return _assert_grads_finite


@pytest.fixture
def assert_causal() -> Callable[..., None]:
    """Outputs before cut_out are unchanged when inputs from cut_in on are perturbed."""
    return _assert_causal
