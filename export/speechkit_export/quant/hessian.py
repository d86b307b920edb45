"""The layer-output metric the calibrated quantisers minimise, and the small algebra around it.

For a layer ``y = W x`` with calibration inputs X [D, N] (one column per sample), the output error of a
quantised W_hat is ``||(W_hat - W) X||^2 = trace((W_hat - W) H (W_hat - W)^T)`` with ``H = X X^T``
(GPTQ, Frantar et al. 2022, eq. 1; decoupleQ, Guo et al. 2024, layer-wise objective). Rows are
independent, so each row r costs ``d_r H d_r^T``. A grouped Conv1d gives every conv group its own H,
so the quantisers take H either shared [D, D] or per row [R, D, D]; internally it is always [B, D, D]
with B = 1 or R.
"""

from __future__ import annotations

import torch
from torch import Tensor

from speechkit.errors import ConfigError


def batched_hessian(hessian: Tensor, rows: int, columns: int) -> Tensor:
    """Check H against a weight [R, D] and return it as float64 [B, D, D] (B = 1 shared, or R)."""
    if hessian.dim() == 2:
        hessian = hessian.unsqueeze(0)
    if hessian.dim() != 3 or hessian.shape[1:] != (columns, columns) or hessian.shape[0] not in (1, rows):
        raise ConfigError(
            f"hessian must be [{columns}, {columns}] or [{rows}, {columns}, {columns}] for a weight "
            f"[{rows}, {columns}], got {tuple(hessian.shape)}"
        )
    if not torch.isfinite(hessian).all():
        raise ConfigError("hessian holds NaN or Inf: the calibration inputs were not finite")
    return hessian.to(torch.float64)


def damp(hessian: Tensor, damping: float) -> Tensor:
    """Add ``damping * mean(diag H)`` to the diagonal of each H [B, D, D] (GPTQ section 4, "dampening").

    A layer whose calibration inputs were all zero (mean diagonal 0) gets the identity instead, so its
    quantisation falls back to plain weight-space rounding rather than failing.
    """
    if damping < 0:
        raise ConfigError(f"damping must be >= 0, got {damping}")
    diagonal = hessian.diagonal(dim1=-2, dim2=-1)
    mean = diagonal.mean(dim=-1)
    amount = torch.where(mean > 0, damping * mean, torch.ones_like(mean))
    eye = torch.eye(hessian.shape[-1], dtype=hessian.dtype, device=hessian.device)
    return hessian + amount[:, None, None] * eye


def hessian_product(matrix: Tensor, hessian: Tensor) -> Tensor:
    """Row-wise ``V H``: V [R, D] times H [B, D, D] (shared when B = 1) -> [R, D]."""
    if hessian.shape[0] == 1:
        return matrix @ hessian[0]
    return (matrix.unsqueeze(1) @ hessian).squeeze(1)


def row_errors(delta: Tensor, hessian: Tensor) -> Tensor:
    """Per-row output error ``d_r H d_r^T`` of a weight difference [R, D] -> [R]."""
    return (hessian_product(delta, hessian) * delta).sum(dim=1)


def relative_output_error(weight: Tensor, dequantized: Tensor, hessian: Tensor) -> float:
    """``trace((W_hat - W) H (W_hat - W)^T) / trace(W H W^T)``: output-error energy over output energy.

    Args:
        weight: original weight, any shape [R, ...] (viewed as [R, D]).
        dequantized: quantised weight, same shape.
        hessian: H = X X^T, [D, D] or per row [R, D, D] (any positive scale: it cancels).

    Returns:
        The ratio as a float (0 for an exact weight; about 1 for a weight as bad as zero).

    Example:
        >>> import torch
        >>> w = torch.ones(2, 3)
        >>> relative_output_error(w, 0.5 * w, torch.eye(3))
        0.25
    """
    rows = weight.shape[0]
    weight = weight.reshape(rows, -1).to(torch.float64)
    delta = dequantized.reshape(rows, -1).to(torch.float64) - weight
    hessian = batched_hessian(hessian, rows, weight.shape[1])
    energy = row_errors(weight, hessian).sum()
    if energy <= 0:
        return 0.0 if bool((row_errors(delta, hessian) <= 0).all()) else float("inf")
    return float(row_errors(delta, hessian).sum() / energy)
