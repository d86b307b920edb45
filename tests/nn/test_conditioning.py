from __future__ import annotations

import torch
from torch import nn

from speechkit.nn import AdaptiveLayerNorm, FiLM


def test_film_is_identity_at_init_then_modulates_per_item() -> None:
    film = FiLM(cond_dim=3, channels=4)
    x, cond = torch.randn(2, 4, 5), torch.randn(2, 3)
    torch.testing.assert_close(film(x, cond), x)
    with torch.no_grad():
        film.proj.weight.normal_()
    y = film(x, cond)
    scale, shift = film.proj(cond).chunk(2, dim=-1)
    torch.testing.assert_close(y, x * (1 + scale[..., None]) + shift[..., None])


def test_adaptive_layer_norm_starts_as_layer_norm() -> None:
    norm = AdaptiveLayerNorm(dim=8, cond_dim=3)
    x, cond = torch.randn(2, 5, 8), torch.randn(2, 3)
    torch.testing.assert_close(norm(x, cond), nn.functional.layer_norm(x, (8,)))
    with torch.no_grad():
        norm.proj.weight.normal_()
    y = norm(x, cond)
    assert not torch.allclose(y[0], norm(x, cond.flip(0))[0])


def test_conditioning_gets_finite_gradients(assert_grads_finite) -> None:
    film = FiLM(3, 4)
    assert_grads_finite(film, film(torch.randn(2, 4, 5), torch.randn(2, 3)))
    norm = AdaptiveLayerNorm(4, 3)
    assert_grads_finite(norm, norm(torch.randn(2, 5, 4), torch.randn(2, 3)))
