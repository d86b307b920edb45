"""GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers"): quantise a weight column by column and push each column's rounding error onto the
columns not yet quantised, weighted by the inverse Hessian, so the layer output moves as little as possible.

Implementation notes (paper section 4):
* Step 3, "Cholesky reformulation": with ``F`` the columns not yet quantised and ``H_F^-1`` the inverse
  of the damped H restricted to them, row ``i`` of the upper Cholesky factor U of ``H^-1`` equals
  ``H_F^-1[i, i:] / sqrt(H_F^-1[i, i])``, so the error of column i is ``(w_i - q_i) / U[i, i]`` and the
  optimal update of the remaining columns is ``err * U[i, i:]``.
* Step 2, "lazy batch updates": columns are processed in blocks; columns right of the block receive the
  block's accumulated errors in one matrix product at the block end.
* Groups: a group's min-max grid is fixed when its first column is reached, from the error-updated
  weights (the paper's grouping). Blocks are aligned to groups so those weights are fully updated then.
* Columns are processed in their natural order (no "act-order"), which keeps groups contiguous.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from speechkit.errors import ConfigError
from speechkit_export.quant.hessian import batched_hessian, damp
from speechkit_export.quant.quantized_weight import (
    QuantizedWeight,
    as_matrix,
    check_bits,
    resolve_group_size,
)
from speechkit_export.quant.rtn import minmax_grid

logger = logging.getLogger(__name__)

_MAX_DAMPING_RETRIES = 6


def inverse_cholesky(hessian: Tensor, damping: float) -> Tensor:
    """Upper Cholesky factor U of ``(H + damping * mean(diag H) * I)^-1``, batched [B, D, D].

    If the damped H is still not positive definite (rank-deficient H in finite precision), the damping is
    raised tenfold, up to a few times, with a warning.
    """
    for attempt in range(_MAX_DAMPING_RETRIES):
        lower, info = torch.linalg.cholesky_ex(damp(hessian, damping))
        if not bool(info.any()):
            inverse = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if not bool(info.any()):
                return upper
        logger.warning("damped hessian not positive definite at damping %g (try %d)", damping, attempt + 1)
        damping = max(damping * 10, 1e-6)
    raise ConfigError(
        "the hessian stayed indefinite after raising the damping: calibration inputs are broken"
    )


def rows_times(matrix: Tensor, factor: Tensor) -> Tensor:
    """Row-wise ``V M``: V [R, n] times M [B, n, m] (shared when B = 1) -> [R, m]."""
    if factor.shape[0] == 1:
        return matrix @ factor[0]
    return (matrix.unsqueeze(1) @ factor).squeeze(1)


def gptq_round(
    matrix: Tensor,
    upper: Tensor,
    bits: int,
    group_size: int,
    grid: tuple[Tensor, Tensor] | None = None,
    block_size: int = 128,
) -> tuple[Tensor, Tensor, Tensor]:
    """Sequential rounding with error feedback (GPTQ's inner loop) of a matrix [R, D].

    Args:
        matrix: float64 weight [R, D] (not modified).
        upper: upper Cholesky factor of the damped inverse Hessian, [B, D, D] (B = 1 or R).
        bits: bits per code.
        group_size: columns per group.
        grid: fixed (scale, zero) [R, G] to round onto; None to set each group's min-max grid from the
            error-updated weights when the group starts (plain GPTQ). decoupleQ passes its own grid.
        block_size: columns per lazy batch update (rounded to a multiple of group_size, or to group_size).

    Returns:
        (codes [R, D] float64 holding integers, scale [R, G], zero [R, G]).
    """
    rows, columns = matrix.shape
    work = matrix.clone()
    levels = 2**bits - 1
    codes = torch.empty_like(work)
    scales, zeros = [], []
    if grid is not None:
        scale_all, zero_all = grid
    block = group_size * max(1, block_size // group_size) if group_size <= block_size else group_size
    for start in range(0, columns, block):
        stop = min(start + block, columns)
        chunk = work[:, start:stop].clone()
        errors = torch.zeros_like(chunk)
        factor = upper[:, start:stop, start:stop]
        for i in range(stop - start):
            column = start + i
            if column % group_size == 0:
                g = column // group_size
                if grid is None:
                    scale, zero = minmax_grid(chunk[:, i : i + group_size], bits, group_size)
                    scale, zero = scale[:, 0], zero[:, 0]
                    scales.append(scale)
                    zeros.append(zero)
                else:
                    scale, zero = scale_all[:, g], zero_all[:, g]
            code = torch.clamp(torch.round(chunk[:, i] / scale + zero), 0, levels)
            codes[:, column] = code
            error = (chunk[:, i] - scale * (code - zero)) / factor[:, i, i]
            chunk[:, i:] -= error[:, None] * factor[:, i, i:]
            errors[:, i] = error
        work[:, stop:] -= rows_times(errors, upper[:, start:stop, stop:])
    if grid is None:
        return codes, torch.stack(scales, dim=1), torch.stack(zeros, dim=1)
    return codes, scale_all, zero_all


def quantize_gptq(
    weight: Tensor,
    hessian: Tensor,
    bits: int,
    group_size: int | None = None,
    damping: float = 0.01,
    block_size: int = 128,
) -> QuantizedWeight:
    """Quantise a weight with GPTQ given its calibration Hessian.

    Args:
        weight: Linear weight [R, D] or Conv1d weight [R, C_in / groups, K] (viewed as [R, D]).
        hessian: H = X X^T of the layer inputs, [D, D], or per row [R, D, D] (grouped convs).
        bits: bits per code, 2..8.
        group_size: columns per group along the input dim; None for one group per row.
        damping: fraction of the mean diagonal of H added to its diagonal (paper: 0.01).
        block_size: columns per lazy batch update.

    Returns:
        The QuantizedWeight.

    Example:
        >>> import torch
        >>> x = torch.randn(8, 64)
        >>> q = quantize_gptq(torch.randn(4, 8), x @ x.T, bits=3, group_size=4)
        >>> q.codes.shape, q.scale.shape
        (torch.Size([4, 8]), torch.Size([4, 2]))
    """
    check_bits(bits)
    matrix = as_matrix(weight).detach().to(torch.float64)
    rows, columns = matrix.shape
    group_size = resolve_group_size(group_size, columns)
    upper = inverse_cholesky(batched_hessian(hessian, rows, columns), damping)
    codes, scale, zero = gptq_round(matrix, upper, bits, group_size, block_size=block_size)
    return QuantizedWeight(
        codes=codes.to(torch.uint8),
        scale=scale.float(),
        zero=zero.float(),
        bits=bits,
        group_size=group_size,
        shape=tuple(weight.shape),
    )
