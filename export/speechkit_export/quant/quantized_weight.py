"""The result every weight quantiser returns: integer codes plus per-group float scale and zero point.

Convention (the ONNX ``MatMulNBits`` / ``DequantizeLinear`` one, so an exporter writes the fields as
they are): a weight viewed as a matrix ``[R, D]`` (R output rows; D input columns, for a Conv1d
``C_in / groups * K`` with the kernel tap fastest) is split along D into groups of ``group_size``
consecutive columns (the last group may be shorter), and inside group g of row r::

    w[r, j] ~= scale[r, g] * (codes[r, j] - zero[r, g]),    codes in [0, 2**bits - 1]

``zero`` is a float in code units (not rounded to an integer: decoupleQ and GPTQ choose it freely).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from speechkit.errors import ConfigError
from speechkit_export.quant.conv_transpose import from_polyphase

MIN_BITS = 2
MAX_BITS = 8


def check_bits(bits: int) -> int:
    """Return ``bits`` if it is an int in [2, 8]; raise ConfigError otherwise."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return bits


def resolve_group_size(group_size: int | None, num_columns: int) -> int:
    """Columns per group: ``None`` (or a size >= D) means one group per row (per-channel)."""
    if group_size is None:
        return num_columns
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ConfigError(f"group_size must be a positive integer or None, got {group_size!r}")
    return min(group_size, num_columns)


def num_groups(num_columns: int, group_size: int) -> int:
    """Groups along the input dim: ``ceil(D / group_size)``."""
    return math.ceil(num_columns / group_size)


def expand_groups(values: Tensor, num_columns: int, group_size: int) -> Tensor:
    """Broadcast per-group values [R, G] to per-column values [R, D]."""
    return values.repeat_interleave(group_size, dim=1)[:, :num_columns]


def as_matrix(weight: Tensor) -> Tensor:
    """View a Linear [R, D] or Conv1d [R, C_in / groups, K] weight as the matrix [R, D] it quantises as."""
    if weight.dim() < 2:
        raise ConfigError(f"a weight to quantise needs at least 2 dims, got shape {tuple(weight.shape)}")
    return weight.reshape(weight.shape[0], -1)


@dataclass(frozen=True)
class QuantizedWeight:
    """A uniformly quantised weight: uint8 codes and per-group float32 scale / zero point.

    Args:
        codes: uint8 [R, D], each in [0, 2**bits - 1].
        scale: float32 [R, G], G = ceil(D / group_size).
        zero: float32 [R, G], zero point in code units (see the module docstring).
        bits: bits per code, 2..8.
        group_size: columns per group along D (``D`` itself for per-channel quantisation).
        shape: the original weight shape (product of its trailing dims is D); for a ConvTranspose1d
            the shape of its polyphase matrix [C_out * s, C_in, K / s] (``quant.conv_transpose``).
        conv_transpose_stride: set (to the stride s) when the weight is that polyphase matrix;
            :meth:`layer_weight` then rebuilds the layer's [C_in, C_out, K] layout.

    Example:
        >>> import torch
        >>> q = QuantizedWeight(codes=torch.tensor([[0, 3]], dtype=torch.uint8),
        ...                     scale=torch.tensor([[0.5]]), zero=torch.tensor([[1.0]]),
        ...                     bits=2, group_size=2, shape=(1, 2))
        >>> q.dequantize()
        tensor([[-0.5000,  1.0000]])
    """

    codes: Tensor
    scale: Tensor
    zero: Tensor
    bits: int
    group_size: int
    shape: tuple[int, ...]
    conv_transpose_stride: int | None = None

    def __post_init__(self) -> None:
        check_bits(self.bits)
        rows, columns = self.codes.shape if self.codes.dim() == 2 else (None, None)
        if self.codes.dtype != torch.uint8 or rows is None:
            raise ConfigError(
                f"codes must be a uint8 matrix, got {self.codes.dtype} {tuple(self.codes.shape)}"
            )
        if self.shape[0] != rows or math.prod(self.shape[1:]) != columns:
            raise ConfigError(f"codes {tuple(self.codes.shape)} do not match weight shape {self.shape}")
        expected = (rows, num_groups(columns, self.group_size))
        for name in ("scale", "zero"):
            value = getattr(self, name)
            if tuple(value.shape) != expected or value.dtype != torch.float32:
                raise ConfigError(
                    f"{name} must be float32 {expected}, got {value.dtype} {tuple(value.shape)}"
                )
        if columns and int(self.codes.max()) >= 2**self.bits:
            raise ConfigError(f"a code exceeds {2**self.bits - 1}, the largest {self.bits}-bit code")

    @property
    def num_groups(self) -> int:
        """Groups per row, G."""
        return self.scale.shape[1]

    def dequantize_matrix(self) -> Tensor:
        """The dequantised weight as the matrix it was quantised as, float32 [R, D]."""
        columns = self.codes.shape[1]
        scale = expand_groups(self.scale, columns, self.group_size)
        zero = expand_groups(self.zero, columns, self.group_size)
        return scale * (self.codes.float() - zero)

    def dequantize(self) -> Tensor:
        """The dequantised weight in its original shape, float32."""
        return self.dequantize_matrix().reshape(self.shape)

    def layer_weight(self) -> Tensor:
        """The dequantised weight in the layer's own layout (``dequantize()`` except for a ConvTranspose1d)."""
        if self.conv_transpose_stride is None:
            return self.dequantize()
        return from_polyphase(self.dequantize(), self.conv_transpose_stride)


def from_offset_form(
    codes: Tensor, scale: Tensor, offset: Tensor, bits: int, group_size: int, shape: tuple[int, ...]
) -> QuantizedWeight:
    """Build a QuantizedWeight from ``w = scale * codes + offset`` (the form the solvers optimise in)."""
    zero = -offset / scale
    return QuantizedWeight(
        codes=codes.round().to(torch.uint8),
        scale=scale.float().contiguous(),
        zero=zero.float().contiguous(),
        bits=bits,
        group_size=group_size,
        shape=tuple(shape),
    )
