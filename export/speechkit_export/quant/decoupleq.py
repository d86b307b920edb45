"""decoupleQ (Guo et al. 2024, "decoupleQ: Towards 2-bit Post-Training Uniform Quantization via
decoupling Parameters into Integer and Floating Points"), layer-wise stage.

The weight is decoupled into an integer part q and a float part (s, m) per group, ``w_hat = s * q + m``
(``m = -s * zero`` in the QuantizedWeight convention), and the layer-output error
``sum_r (w_hat_r - w_r) H (w_hat_r - w_r)^T`` is minimised by alternating (the paper's layer-wise
minimisation):

* float step: with q fixed, w_hat is linear in (s, m), so the optimum is a linear least-squares problem
  per row in the metric H. With one group per row these are the 2 x 2 normal equations; with G groups the
  groups are coupled through H, so we solve the exact 2G x 2G normal equations of each row.
* integer step: with (s, m) fixed, relax q to the box [0, 2^b - 1] and run projected gradient descent
  (accelerated, FISTA) on the box-constrained quadratic, then round; alongside, round sequentially with
  GPTQ-style error feedback onto the same fixed grid (the paper's second approximate solver), once toward
  w and once toward the relaxed optimum. Each row keeps whichever of {current q, these three} gives the
  smallest error.

Every step keeps a row's previous solution when the new one is not better, so the objective never
increases; it starts from GPTQ, RTN, or both (keeping the better per row). The objective uses the
damped H.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from speechkit.errors import ConfigError
from speechkit_export.quant.gptq import gptq_round, inverse_cholesky
from speechkit_export.quant.hessian import batched_hessian, damp, hessian_product, row_errors
from speechkit_export.quant.quantized_weight import (
    QuantizedWeight,
    as_matrix,
    check_bits,
    expand_groups,
    from_offset_form,
    num_groups,
    resolve_group_size,
)
from speechkit_export.quant.rtn import minmax_grid, round_to_grid

logger = logging.getLogger(__name__)

_CHUNK_VALUES = 1 << 24


@dataclass(frozen=True)
class DecoupleQResult:
    """A decoupleQ solution and its objective trace.

    Args:
        quantized: the QuantizedWeight.
        objective: output error ``sum_r d_r H_damped d_r^T`` after the initialisation, after each
            iteration (float step + integer step) and after the final float step; non-increasing.
            Iterations stop early at a fixed point, so the trace may be shorter than iterations + 2.
    """

    quantized: QuantizedWeight
    objective: list[float]


@dataclass
class _State:
    """Integer codes q [R, D] and float parts s, m [R, G] of ``w_hat = s * q + m`` (all float64)."""

    codes: Tensor
    scale: Tensor
    offset: Tensor


def _reconstruct(state: _State, group_size: int) -> Tensor:
    columns = state.codes.shape[1]
    scale = expand_groups(state.scale, columns, group_size)
    return scale * state.codes + expand_groups(state.offset, columns, group_size)


def _padded(matrix: Tensor, group_size: int) -> Tensor:
    """Zero-pad [R, D] to [R, G, group_size] (padded columns then meet zero rows of the padded H)."""
    pad = num_groups(matrix.shape[1], group_size) * group_size - matrix.shape[1]
    return torch.nn.functional.pad(matrix, (0, pad)).reshape(matrix.shape[0], -1, group_size)


def _normal_equations(
    weight: Tensor, hessian: Tensor, codes: Tensor, group_size: int
) -> tuple[Tensor, Tensor]:
    """Per-row normal matrix [R, 2G, 2G] and right side [R, 2G] for theta = (s_1..s_G, m_1..m_G).

    Row r is ``w_hat = A theta`` with A = [q * e_1 .. q * e_G, e_1 .. e_G] (e_g: indicator of group g), so
    the equations are ``A^T H A theta = A^T H w``.
    """
    rows, columns = codes.shape
    groups = num_groups(columns, group_size)
    pad = groups * group_size - columns
    padded_h = torch.nn.functional.pad(hessian, (0, pad, 0, pad))  # [B, Dp, Dp]
    h_grouped = padded_h.reshape(padded_h.shape[0], -1, groups, group_size)  # [B, Dp, G, gs]
    q = _padded(codes, group_size)  # [R, G, gs]
    if hessian.shape[0] == 1:
        hq = torch.einsum("ihk,rhk->rih", h_grouped[0], q)  # (H diag(q) E)[r]: [R, Dp, G]
    else:
        hq = torch.einsum("rihk,rhk->rih", h_grouped, q)
    h_one = h_grouped.sum(dim=3)  # H E: [B, Dp, G]
    hq = hq.reshape(rows, groups, group_size, groups)
    h_one = h_one.reshape(h_one.shape[0], groups, group_size, groups)
    qq = torch.einsum("rgk,rgkh->rgh", q, hq)  # E^T D H D E
    one_q = hq.sum(dim=2)  # E^T H D E
    one_one = h_one.sum(dim=2).expand(rows, groups, groups)  # E^T H E
    normal = torch.cat(
        [torch.cat([qq, one_q.transpose(1, 2)], dim=2), torch.cat([one_q, one_one], dim=2)], dim=1
    )
    hw = _padded(hessian_product(weight, hessian), group_size)  # [R, G, gs]
    rhs = torch.cat([(q * hw).sum(dim=2), hw.sum(dim=2)], dim=1)
    return normal, rhs


def _accept(old: _State, new: _State, old_err: Tensor, new_err: Tensor) -> tuple[_State, Tensor]:
    """Row-wise keep the better of two states.

    A new row must also be finite and keep every scale above 1e-6 of the row's old largest scale: a
    vanishing scale (possible when a group's codes are all equal) would blow up ``zero = -m / s``.
    """
    floor = 1e-6 * old.scale.abs().amax(dim=1, keepdim=True)
    valid = (
        torch.isfinite(new_err) & torch.isfinite(new.scale).all(dim=1) & (new.scale.abs() > floor).all(dim=1)
    )
    better = valid & (new_err <= old_err)
    pick = better[:, None]
    state = _State(
        codes=torch.where(pick, new.codes, old.codes),
        scale=torch.where(pick, new.scale, old.scale),
        offset=torch.where(pick, new.offset, old.offset),
    )
    return state, torch.where(better, new_err, old_err)


def _row_chunks(rows: int, groups: int, columns: int) -> list[slice]:
    """Row slices keeping the [rows, D, G] intermediate of the normal equations near 16M values."""
    size = max(1, _CHUNK_VALUES // max(1, groups * columns))
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def _solve_normal(normal: Tensor, rhs: Tensor) -> Tensor:
    """Solve the PSD systems [R, n, n] theta = [R, n] by Cholesky; near-singular rows go to SVD least squares.

    A system is singular when a group's codes are all equal (its scale and offset then act alike); the
    SVD solver (gelsd) returns the minimum-norm solution there.
    """
    lower, info = torch.linalg.cholesky_ex(normal)
    theta = torch.cholesky_solve(rhs.unsqueeze(2), lower).squeeze(2)
    pivots = lower.diagonal(dim1=1, dim2=2).square().amin(dim=1)
    scale = normal.diagonal(dim1=1, dim2=2).amax(dim=1)
    bad = (info != 0) | ~(pivots > 1e-10 * scale)
    if bool(bad.any()):
        theta[bad] = torch.linalg.lstsq(normal[bad], rhs[bad].unsqueeze(2), driver="gelsd").solution.squeeze(
            2
        )
    return theta


def _float_step(
    weight: Tensor, hessian: Tensor, state: _State, errors: Tensor, group_size: int
) -> tuple[_State, Tensor]:
    """Optimal (s, m) for fixed codes: least squares in the metric H."""
    shared = hessian.shape[0] == 1
    solutions = []
    for rows in _row_chunks(weight.shape[0], state.scale.shape[1], weight.shape[1]):
        block = hessian if shared else hessian[rows]
        normal, rhs = _normal_equations(weight[rows], block, state.codes[rows], group_size)
        solutions.append(_solve_normal(normal, rhs))
    theta = torch.cat(solutions)
    groups = state.scale.shape[1]
    new = _State(codes=state.codes, scale=theta[:, :groups], offset=theta[:, groups:])
    new_err = row_errors(_reconstruct(new, group_size) - weight, hessian)
    return _accept(state, new, errors, new_err)


def _projected_gradient(
    weight: Tensor, hessian: Tensor, state: _State, group_size: int, levels: int, steps: int, top_eig: Tensor
) -> Tensor:
    """FISTA on the relaxed codes in the box [0, levels] with (s, m) fixed; returns continuous codes.

    Runs in float32 (half the time of float64 on CPU): the relaxed codes only seed the rounding, whose
    candidates are then scored in float64.
    """
    columns = weight.shape[1]
    weight, hessian = weight.float(), hessian.float()
    scale = expand_groups(state.scale, columns, group_size).float()
    offset = expand_groups(state.offset, columns, group_size).float()
    # Per-row Lipschitz constant of the gradient:
    # 2 * lambda_max(diag(s) H diag(s)) <= 2 * max(s^2) * lambda_max(H).
    lipschitz = 2 * scale.square().amax(dim=1) * top_eig.float()
    step = (1 / lipschitz)[:, None]
    current = state.codes.float()
    probe, momentum = current, 1.0
    for _ in range(steps):
        gradient = 2 * scale * hessian_product(scale * probe + offset - weight, hessian)
        following = torch.clamp(probe - step * gradient, 0, levels)
        next_momentum = (1 + (1 + 4 * momentum**2) ** 0.5) / 2
        probe = following + ((momentum - 1) / next_momentum) * (following - current)
        current, momentum = following, next_momentum
    return current.double()


def _integer_step(
    weight: Tensor,
    hessian: Tensor,
    upper: Tensor,
    state: _State,
    errors: Tensor,
    group_size: int,
    bits: int,
    pgd_steps: int,
    top_eig: Tensor,
) -> tuple[_State, Tensor]:
    """Better codes for fixed (s, m): rounded PGD relaxation or fixed-grid sequential rounding, per row."""
    levels = 2**bits - 1
    relaxed = _projected_gradient(weight, hessian, state, group_size, levels, pgd_steps, top_eig)
    grid = (state.scale, -state.offset / state.scale)
    relaxed_weight = _reconstruct(_State(codes=relaxed, scale=state.scale, offset=state.offset), group_size)
    candidates = (
        torch.round(relaxed),
        gptq_round(weight, upper, bits, group_size, grid=grid)[0],
        # Rounding toward the box-constrained optimum instead of w: it differs from w where the box
        # clipped, and in our measurements often wins at 2 bits.
        gptq_round(relaxed_weight, upper, bits, group_size, grid=grid)[0],
    )
    for codes in candidates:
        candidate = _State(codes=codes, scale=state.scale, offset=state.offset)
        candidate_err = row_errors(_reconstruct(candidate, group_size) - weight, hessian)
        state, errors = _accept(state, candidate, errors, candidate_err)
    return state, errors


def _initial_state(matrix: Tensor, upper: Tensor, bits: int, group_size: int, init: str) -> _State:
    if init == "gptq":
        codes, scale, zero = gptq_round(matrix, upper, bits, group_size)
    else:
        scale, zero = minmax_grid(matrix, bits, group_size)
        codes = round_to_grid(matrix, scale, zero, bits, group_size)
    return _State(codes=codes, scale=scale, offset=-scale * zero)


def _alternate(
    matrix: Tensor,
    damped: Tensor,
    upper: Tensor,
    state: _State,
    settings: tuple[int, int, int, int],
    top_eig: Tensor,
) -> tuple[_State, Tensor, Tensor]:
    """Alternate float and integer steps from ``state``; returns (state, row errors [R], trace [S, R]).

    Stops early once an iteration changes nothing (every step keeps the old row unless it improves, so
    a still iteration means a fixed point).
    """
    bits, group_size, iterations, pgd_steps = settings
    errors = row_errors(_reconstruct(state, group_size) - matrix, damped)
    trace = [errors]
    for _ in range(iterations):
        state, errors = _float_step(matrix, damped, state, errors, group_size)
        state, errors = _integer_step(
            matrix, damped, upper, state, errors, group_size, bits, pgd_steps, top_eig
        )
        trace.append(errors)
        if bool((errors == trace[-2]).all()):
            break
    state, errors = _float_step(matrix, damped, state, errors, group_size)
    trace.append(errors)
    return state, errors, torch.stack(trace)


def _same_length(first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """Pad the shorter trace [S, R] by repeating its final entry (the early stop held it there)."""
    steps = max(first.shape[0], second.shape[0])

    def pad(trace: Tensor) -> Tensor:
        return torch.cat([trace, trace[-1:].expand(steps - trace.shape[0], -1)])

    return pad(first), pad(second)


def decoupleq(
    weight: Tensor,
    hessian: Tensor,
    bits: int,
    group_size: int | None = None,
    iterations: int = 4,
    damping: float = 0.01,
    pgd_steps: int = 16,
    init: str = "both",
) -> DecoupleQResult:
    """Run decoupleQ's layer-wise alternating minimisation and return the solution with its objective trace.

    Args:
        weight: Linear weight [R, D] or Conv1d weight [R, C_in / groups, K] (viewed as [R, D]).
        hessian: H = X X^T of the layer inputs, [D, D], or per row [R, D, D] (grouped convs).
        bits: bits per code, 2..8.
        group_size: columns per group along the input dim; None for one group per row.
        iterations: alternations of float step and integer step.
        damping: fraction of the mean diagonal of H added to its diagonal.
        pgd_steps: projected-gradient steps per integer step.
        init: starting point: "gptq", "rtn", or "both" (run from each, keep the better per row; rows are
            independent problems, so this is exact). From RTN tends to win per-channel at 2-3 bits, from
            GPTQ with small groups; "both" costs twice the time.

    Returns:
        DecoupleQResult(quantized, objective); for "both" the trace is the per-row minimum of the two runs.

    Example:
        >>> import torch
        >>> x = torch.randn(8, 64)
        >>> result = decoupleq(torch.randn(4, 8), x @ x.T, bits=2, iterations=2)
        >>> len(result.objective), result.objective[-1] <= result.objective[0]
        (4, True)
    """
    check_bits(bits)
    if init not in ("gptq", "rtn", "both"):
        raise ConfigError(f"init must be 'gptq', 'rtn' or 'both', got {init!r}")
    if iterations < 0 or pgd_steps < 0:
        raise ConfigError(f"iterations and pgd_steps must be >= 0, got {iterations} and {pgd_steps}")
    matrix = as_matrix(weight).detach().to(torch.float64)
    rows, columns = matrix.shape
    group_size = resolve_group_size(group_size, columns)
    raw = batched_hessian(hessian, rows, columns)
    damped = damp(raw, damping)
    upper = inverse_cholesky(raw, damping)
    settings = (bits, group_size, iterations, pgd_steps)
    top_eig = torch.linalg.eigvalsh(damped)[:, -1]
    state, errors, trace = None, None, None
    for start in ("gptq", "rtn") if init == "both" else (init,):
        initial = _initial_state(matrix, upper, bits, group_size, start)
        run_state, run_errors, run_trace = _alternate(matrix, damped, upper, initial, settings, top_eig)
        if state is None:
            state, errors, trace = run_state, run_errors, run_trace
        else:
            state, errors = _accept(state, run_state, errors, run_errors)
            trace = torch.minimum(*_same_length(trace, run_trace))
    history = trace.sum(dim=1).tolist()
    logger.debug("decoupleQ objective %s", history)
    quantized = from_offset_form(
        state.codes, state.scale, state.offset, bits, group_size, tuple(weight.shape)
    )
    return DecoupleQResult(quantized=quantized, objective=history)


def quantize_decoupleq(
    weight: Tensor,
    hessian: Tensor,
    bits: int,
    group_size: int | None = None,
    iterations: int = 4,
    damping: float = 0.01,
    pgd_steps: int = 16,
    init: str = "both",
) -> QuantizedWeight:
    """Quantise a weight with decoupleQ (arguments as for :func:`decoupleq`); returns the QuantizedWeight.

    Example:
        >>> import torch
        >>> x = torch.randn(8, 64)
        >>> quantize_decoupleq(torch.randn(4, 8), x @ x.T, bits=3, group_size=4).scale.shape
        torch.Size([4, 2])
    """
    return decoupleq(weight, hessian, bits, group_size, iterations, damping, pgd_steps, init).quantized
