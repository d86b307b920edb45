"""Exact bit packing of weight codes, and the on-disk size of a QuantizedWeight.

Layout: the codes, flattened in C order, form one little-endian bit stream: code i occupies bits
``[i * bits, (i + 1) * bits)``, least significant bit first, and stream bit k is bit ``k % 8`` of byte
``k // 8``. So 4-bit codes put the first code in the low nibble (ONNX Runtime's ``MatMulNBits`` order),
2-bit codes fill a byte from its low bits up, and 3-bit codes pack 8 codes into exactly 3 bytes. The
last byte is zero-padded: ``packed_size(n, bits) = ceil(n * bits / 8)``.

(The codec token bitstreams in ``speechkit.tokenizers.bitpacking`` are MSB-first; weights follow the
LSB-first order of the inference runtimes that consume them.)
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from speechkit.errors import ConfigError
from speechkit_export.quant.quantized_weight import QuantizedWeight, check_bits

SCALE_BYTES = 2  # scales and zero points are stored as float16


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` codes of ``bits`` bits pack into: ``ceil(count * bits / 8)``."""
    return math.ceil(count * bits / 8)


def _as_codes(codes: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(codes, Tensor):
        codes = codes.detach().cpu().numpy()
    return np.ascontiguousarray(codes).reshape(-1)


def pack_codes(codes: np.ndarray | Tensor, bits: int) -> np.ndarray:
    """Pack integer codes (any shape, flattened in C order) into bytes, LSB-first.

    Args:
        codes: integers in [0, 2**bits - 1], any shape (numpy array or tensor).
        bits: bits per code, 2..8.

    Returns:
        uint8 array of ``packed_size(codes.size, bits)`` bytes.

    Example:
        >>> pack_codes(np.array([1, 2, 3]), bits=4).tolist()
        [33, 3]
        >>> unpack_codes(pack_codes(np.arange(8), bits=3), bits=3, count=8).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7]
    """
    check_bits(bits)
    flat = _as_codes(codes)
    if flat.size and (flat.min() < 0 or flat.max() >= 2**bits):
        raise ConfigError(f"codes must lie in [0, {2**bits - 1}] to pack into {bits} bits")
    # [N, 8] little-endian bits of each code, keep the low `bits` columns, then one flat stream.
    stream = np.unpackbits(flat.astype(np.uint8)[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(stream.reshape(-1), bitorder="little")


def unpack_codes(packed: np.ndarray | bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the first ``count`` codes of a packed buffer, uint8 [count].

    Example:
        >>> unpack_codes(np.array([33, 3], dtype=np.uint8), bits=4, count=3).tolist()
        [1, 2, 3]
    """
    check_bits(bits)
    buffer = np.frombuffer(bytes(packed), dtype=np.uint8) if isinstance(packed, bytes) else packed
    buffer = np.asarray(buffer, dtype=np.uint8).reshape(-1)
    if count < 0 or buffer.size < packed_size(count, bits):
        raise ConfigError(f"{buffer.size} bytes cannot hold {count} codes of {bits} bits")
    stream = np.unpackbits(buffer, bitorder="little")[: count * bits].reshape(count, bits)
    full = np.zeros((count, 8), dtype=np.uint8)
    full[:, :bits] = stream
    return np.packbits(full, axis=1, bitorder="little").reshape(count)


def storage_bytes(quantized: QuantizedWeight) -> int:
    """On-disk bytes of a QuantizedWeight: all codes packed as one stream plus float16 scales and zeros.

    Example:
        >>> import torch
        >>> from speechkit_export.quant.rtn import quantize_rtn
        >>> storage_bytes(quantize_rtn(torch.randn(4, 10), bits=3, group_size=5))  # 15 + 2 * 8 * 2
        47
    """
    codes = packed_size(quantized.codes.numel(), quantized.bits)
    return codes + 2 * quantized.scale.numel() * SCALE_BYTES
