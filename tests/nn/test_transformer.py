from __future__ import annotations

import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.nn import (
    CrossAttention,
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    Transformer,
    TransformerBlock,
    lengths_to_padding_mask,
)


def _decode(model: Transformer, x: torch.Tensor, chunks: list[int], **kwargs) -> tuple[torch.Tensor, list]:
    cache = model.initial_cache(x.shape[0])
    outputs, start = [], 0
    for size in chunks:
        y, cache = model.step(x[:, start : start + size], cache, **kwargs)
        outputs.append(y)
        start += size
    return torch.cat(outputs, dim=1), cache


def test_rope_scores_depend_only_on_relative_position() -> None:
    rope = RotaryEmbedding(8)
    q, k = torch.randn(8), torch.randn(8)

    def score(i: int, j: int) -> torch.Tensor:
        qi = rope.rotate(q.view(1, 1, 1, 8), torch.tensor([i]))
        kj = rope.rotate(k.view(1, 1, 1, 8), torch.tensor([j]))
        return (qi * kj).sum()

    torch.testing.assert_close(score(3, 1), score(12, 10))
    assert not torch.allclose(score(3, 1), score(3, 2))
    with pytest.raises(ConfigError, match="even"):
        RotaryEmbedding(5)


@pytest.mark.parametrize("window_size", [None, 3])
def test_kv_cache_decoding_equals_full_causal_forward(window_size: int | None) -> None:
    model = Transformer(16, depth=2, num_heads=2, causal=True, window_size=window_size).eval()
    x = torch.randn(2, 11, 16)
    full = model(x)
    one_by_one, cache = _decode(model, x, [1] * 11)
    torch.testing.assert_close(one_by_one, full, rtol=0, atol=1e-5)
    mixed, _ = _decode(model, x, [4, 1, 1, 5])  # prefill then steps
    torch.testing.assert_close(mixed, full, rtol=0, atol=1e-5)
    assert int(cache[0].offset) == 11
    assert cache[0].k.shape[2] == (11 if window_size is None else window_size)


def test_kv_cache_with_cross_attention_and_conditioning() -> None:
    model = Transformer(8, depth=2, num_heads=2, causal=True, cross_attention=True, context_dim=6, cond_dim=3)
    model.eval()
    with torch.no_grad():  # move adaptive norms off their identity init so cond matters
        for module in model.modules():
            if hasattr(module, "proj") and isinstance(module.proj, torch.nn.Linear):
                module.proj.weight.normal_(std=0.1)
    x, context, cond = torch.randn(2, 6, 8), torch.randn(2, 4, 6), torch.randn(2, 3)
    context_mask = lengths_to_padding_mask(torch.tensor([4, 2]))
    kwargs = {"context": context, "context_mask": context_mask, "cond": cond}
    full = model(x, **kwargs)
    stepped, _ = _decode(model, x, [2, 1, 3], **kwargs)
    torch.testing.assert_close(stepped, full, rtol=0, atol=1e-5)
    assert not torch.allclose(model(x, context=context, context_mask=context_mask, cond=-cond), full)


def test_causal_attention_ignores_the_future(assert_causal) -> None:
    model = Transformer(8, depth=2, num_heads=2, causal=True).eval()
    assert_causal(model, torch.randn(2, 9, 8), cut_in=5, cut_out=5, time_dim=1)


@pytest.mark.parametrize("causal", [False, True])
def test_window_attention_is_local(causal: bool) -> None:
    window = 2
    attn = MultiHeadAttention(8, num_heads=2, causal=causal, window_size=window).eval()
    x = torch.randn(1, 12, 8)
    x2 = x.clone()
    x2[:, 6] += torch.randn(8)
    changed = (attn(x) - attn(x2)).abs().amax(dim=(0, 2)) > 1e-6  # [T]
    positions = torch.arange(12)
    reach = (positions >= 6) & (positions <= 6 + window) if causal else (positions - 6).abs() <= window
    assert torch.equal(changed, reach)


def test_window_receptive_field_grows_with_depth() -> None:
    model = Transformer(8, depth=2, num_heads=2, window_size=1).eval()
    x = torch.randn(1, 10, 8)
    x2 = x.clone()
    x2[:, 0] += torch.randn(8)  # not a constant: LayerNorm would remove a constant shift
    changed = (model(x) - model(x2)).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [True, True, True] + [False] * 7


@pytest.mark.parametrize(("causal", "window_size"), [(False, None), (True, None), (False, 2), (True, 3)])
def test_padding_mask_hides_padded_frames(causal: bool, window_size: int | None) -> None:
    model = Transformer(8, depth=2, num_heads=2, causal=causal, window_size=window_size).eval()
    lengths = torch.tensor([7, 4])
    mask = lengths_to_padding_mask(lengths, max_length=7)
    x = torch.randn(2, 7, 8)
    x2 = x.clone()
    x2[1, 4:] = torch.randn(3, 8) * 10
    y, y2 = model(x, mask), model(x2, mask)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[1, :4], y2[1, :4], rtol=0, atol=1e-5)
    torch.testing.assert_close(y[1, :4], model(x[1:, :4])[0], rtol=0, atol=1e-5)  # same as unpadded
    torch.testing.assert_close(y[0], model(x[:1])[0], rtol=0, atol=1e-5)


def test_cross_attention_context_mask() -> None:
    xattn = CrossAttention(8, num_heads=2, context_dim=4).eval()
    x, context = torch.randn(2, 3, 8), torch.randn(2, 5, 4)
    mask = lengths_to_padding_mask(torch.tensor([5, 2]))
    context2 = context.clone()
    context2[1, 2:] += 5.0
    y, y2 = xattn(x, context, mask), xattn(x, context2, mask)
    torch.testing.assert_close(y, y2)
    assert not torch.allclose(xattn(x, context), xattn(x, context2))
    empty = torch.zeros(2, 5, dtype=torch.bool)
    assert torch.isfinite(xattn(x, context, empty)).all()


def test_misuse_raises_config_errors() -> None:
    with pytest.raises(ConfigError, match="causal"):
        Transformer(8, depth=1, num_heads=2).initial_cache(1)
    with pytest.raises(ConfigError, match="causal"):
        MultiHeadAttention(8, 2).step(torch.randn(1, 1, 8), KVCache.empty(1, 2, 4))
    with pytest.raises(ConfigError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ConfigError, match="window_size"):
        MultiHeadAttention(8, 2, window_size=0)
    with pytest.raises(ConfigError, match="cond"):
        Transformer(8, depth=1, num_heads=2, cond_dim=3)(torch.randn(1, 2, 8))
    with pytest.raises(ConfigError, match="context"):
        TransformerBlock(8, 2, cross_attention=True)(torch.randn(1, 2, 8))


def test_transformer_gets_finite_gradients(assert_grads_finite) -> None:
    model = Transformer(8, depth=2, num_heads=2, causal=True, window_size=2, cross_attention=True, cond_dim=3)
    mask = lengths_to_padding_mask(torch.tensor([5, 3]))
    y = model(torch.randn(2, 5, 8), mask, context=torch.randn(2, 4, 8), cond=torch.randn(2, 3))
    assert_grads_finite(model, y * mask.unsqueeze(-1))
