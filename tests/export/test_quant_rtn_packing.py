"""RTN on-grid exactness and exact bit packing of weight codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.errors import ConfigError
from speechkit_export.quant import pack_codes, packed_size, quantize_rtn, storage_bytes, unpack_codes


def _on_grid_weight(rows: int, columns: int, bits: int, group_size: int, seed: int) -> tuple:
    """A weight [rows, columns] exactly on a per-group grid whose codes use both end values."""
    gen = torch.Generator().manual_seed(seed)
    levels = 2**bits - 1
    groups = -(-columns // group_size)
    codes = torch.randint(0, levels + 1, (rows, columns), generator=gen)
    for g in range(groups):
        start = g * group_size
        codes[:, start] = 0
        codes[:, min(start + 1, columns - 1)] = levels
    scale = torch.rand(rows, groups, generator=gen) + 0.1
    zero = torch.rand(rows, groups, generator=gen) * levels  # not an integer: the grid need not hold 0
    expand = lambda t: t.repeat_interleave(group_size, dim=1)[:, :columns]  # noqa: E731
    return expand(scale) * (codes - expand(zero)), codes


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [None, 4])
def test_rtn_is_exact_on_its_grid(bits: int, group_size: int | None) -> None:
    columns = 10  # group_size 4 leaves a ragged last group of 2
    weight, codes = _on_grid_weight(5, columns, bits, group_size or columns, seed=bits)
    quantized = quantize_rtn(weight, bits, group_size)
    assert torch.equal(quantized.codes.long(), codes)
    torch.testing.assert_close(quantized.dequantize(), weight, rtol=0, atol=1e-5)
    assert quantized.scale.shape == (5, 3 if group_size else 1)


def test_rtn_error_is_at_most_half_a_step_and_conv_shape_round_trips() -> None:
    weight = torch.randn(6, 3, 5)  # a Conv1d weight [C_out, C_in, K]
    quantized = quantize_rtn(weight, bits=3, group_size=4)
    restored = quantized.dequantize()
    assert restored.shape == weight.shape
    step = quantized.scale.repeat_interleave(4, dim=1)[:, :15].reshape(6, 3, 5)
    assert ((restored - weight).abs() <= step / 2 + 1e-6).all()
    assert int(quantized.codes.max()) <= 7


def test_rtn_constant_rows_are_exact_and_bad_bits_raise() -> None:
    weight = torch.tensor([[0.0, 0.0, 0.0], [-2.5, -2.5, -2.5]])
    torch.testing.assert_close(quantize_rtn(weight, bits=2).dequantize(), weight, rtol=0, atol=0)
    for bits in (1, 9):
        with pytest.raises(ConfigError):
            quantize_rtn(weight, bits=bits)
    with pytest.raises(ConfigError):
        quantize_rtn(weight, bits=4, group_size=0)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("count", [1, 7, 13, 101])
def test_packing_round_trips_exactly(bits: int, count: int) -> None:
    codes = np.random.default_rng(count * 10 + bits).integers(0, 2**bits, size=count)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == packed_size(count, bits) == -(-count * bits // 8)
    assert np.array_equal(unpack_codes(packed, bits, count), codes)
    assert np.array_equal(unpack_codes(packed.tobytes(), bits, count), codes)


def test_packing_layout_is_lsb_first() -> None:
    assert pack_codes(np.array([0, 1, 2, 3]), 2).tolist() == [0b11100100]
    assert pack_codes(np.array([0xA, 0x5]), 4).tolist() == [0x5A]  # first code in the low nibble
    three = pack_codes(np.full(8, 7), 3)
    assert three.tolist() == [255, 255, 255]  # 8 three-bit codes fill exactly 3 bytes
    assert pack_codes(np.array([1] + [0] * 7), 3).tolist() == [1, 0, 0]
    assert pack_codes(np.array([0, 0, 1]), 3).tolist() == [64, 0]  # code 2 starts at bit 6


def test_packing_rejects_out_of_range_and_short_buffers() -> None:
    with pytest.raises(ConfigError):
        pack_codes(np.array([4]), 2)
    with pytest.raises(ConfigError):
        unpack_codes(np.zeros(2, dtype=np.uint8), 3, count=6)


def test_storage_bytes_counts_packed_codes_and_fp16_scales() -> None:
    quantized = quantize_rtn(torch.randn(8, 30), bits=3, group_size=8)  # 4 groups per row
    codes_bytes = -(-8 * 30 * 3 // 8)
    assert storage_bytes(quantized) == codes_bytes + 8 * 4 * 2 * 2
    torch_codes = pack_codes(quantized.codes, 3)
    assert torch_codes.size == codes_bytes
    assert np.array_equal(unpack_codes(torch_codes, 3, 240).reshape(8, 30), quantized.codes.numpy())
