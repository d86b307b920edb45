"""Round-to-nearest (RTN) uniform asymmetric weight quantisation: the calibration-free baseline.

Each group's grid spans exactly its [min, max] (no clipping search, 0 need not be on the grid), so a
weight whose groups already lie on a uniform grid that uses both end codes is reproduced exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from speechkit_export.quant.quantized_weight import (
    QuantizedWeight,
    as_matrix,
    check_bits,
    expand_groups,
    num_groups,
    resolve_group_size,
)


def grouped_view(matrix: Tensor, group_size: int) -> Tensor:
    """Split [R, D] into [R, G, group_size], padding a short last group by repeating its last column.

    Repeating (not zero-filling) keeps every group's min and max unchanged.
    """
    rows, columns = matrix.shape
    pad = num_groups(columns, group_size) * group_size - columns
    if pad:
        matrix = torch.cat([matrix, matrix[:, -1:].expand(rows, pad)], dim=1)
    return matrix.reshape(rows, -1, group_size)


def minmax_grid(matrix: Tensor, bits: int, group_size: int) -> tuple[Tensor, Tensor]:
    """Scale and zero [R, G] whose grid spans each group's [min, max] of a matrix [R, D].

    A constant group (max == min == v) gets ``scale = |v|`` (1 when v = 0) and ``zero = -sign(v)``, so
    code 0 reproduces v exactly and the zero point stays small enough for float16 storage.
    """
    groups = grouped_view(matrix, group_size)
    low, high = groups.amin(dim=2), groups.amax(dim=2)
    levels = 2**bits - 1
    spread = high - low
    fallback = torch.where(low != 0, low.abs(), torch.ones_like(low))
    scale = torch.where(spread > 0, spread / levels, fallback)
    zero = -low / scale
    return scale, zero


def round_to_grid(matrix: Tensor, scale: Tensor, zero: Tensor, bits: int, group_size: int) -> Tensor:
    """Nearest codes [R, D] (float, integral) of a matrix [R, D] on the grid ``scale * (q - zero)``."""
    columns = matrix.shape[1]
    scale = expand_groups(scale, columns, group_size)
    zero = expand_groups(zero, columns, group_size)
    return torch.clamp(torch.round(matrix / scale + zero), 0, 2**bits - 1)


def quantize_rtn(weight: Tensor, bits: int, group_size: int | None = None) -> QuantizedWeight:
    """Quantise a weight by rounding to the nearest point of its per-group min-max uniform grid.

    Args:
        weight: Linear weight [R, D] or Conv1d weight [R, C_in / groups, K] (seen as [R, C_in / groups * K]).
        bits: bits per code, 2..8.
        group_size: columns per group along the input dim; None for one group per output row.

    Returns:
        The QuantizedWeight (codes [R, D], scale and zero [R, ceil(D / group_size)]).

    Example:
        >>> import torch
        >>> w = torch.tensor([[0.0, 0.5, 1.0, 1.5]])
        >>> q = quantize_rtn(w, bits=2)
        >>> q.codes.tolist(), bool(torch.equal(q.dequantize(), w))
        ([[0, 1, 2, 3]], True)
    """
    check_bits(bits)
    matrix = as_matrix(weight).detach().to(torch.float64)
    group_size = resolve_group_size(group_size, matrix.shape[1])
    scale, zero = minmax_grid(matrix, bits, group_size)
    codes = round_to_grid(matrix, scale, zero, bits, group_size)
    return QuantizedWeight(
        codes=codes.to(torch.uint8),
        scale=scale.float(),
        zero=zero.float(),
        bits=bits,
        group_size=group_size,
        shape=tuple(weight.shape),
    )
