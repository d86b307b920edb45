from __future__ import annotations

import torch

from speechkit.nn import BLSTMContext


def test_blstm_context_shape_and_residual() -> None:
    block = BLSTMContext(6, num_layers=2, hidden_size=4)
    x = torch.randn(2, 6, 9)
    assert block(x).shape == x.shape
    with torch.no_grad():
        block.proj.weight.zero_()
        block.proj.bias.zero_()
    torch.testing.assert_close(block(x), x)  # a zero projection leaves only the residual


def test_blstm_context_is_bidirectional() -> None:
    block = BLSTMContext(4).eval()
    x = torch.randn(1, 4, 8)
    x2 = x.clone()
    x2[..., -1] += 1.0
    assert not torch.allclose(block(x)[..., 0], block(x2)[..., 0])


def test_blstm_context_gets_finite_gradients(assert_grads_finite) -> None:
    block = BLSTMContext(4, hidden_size=3)
    assert_grads_finite(block, block(torch.randn(2, 4, 5)))
