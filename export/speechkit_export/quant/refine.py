"""decoupleQ's optional second stage (Guo et al. 2024, block-wise minimisation): refine only the floats.

With every layer's integer codes frozen, the scales and zero points of all quantised layers inside a
block (e.g. one ConvNeXt or transformer block) are trained jointly by gradient descent so that the
block's output matches its full-precision output on calibration inputs. This corrects the error that
layer-wise quantisation accumulates across the layers of the block. (The paper also tunes the block's
norm layers; here only the scales and zero points move.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from speechkit.errors import ConfigError
from speechkit_export.quant.quantized_weight import QuantizedWeight, expand_groups

logger = logging.getLogger(__name__)


def _dequantize(quantized: QuantizedWeight, scale: Tensor, zero: Tensor) -> Tensor:
    columns = quantized.codes.shape[1]
    scale = expand_groups(scale, columns, quantized.group_size)
    zero = expand_groups(zero, columns, quantized.group_size)
    return (scale * (quantized.codes.float() - zero)).reshape(quantized.shape)


def _call(block: nn.Module, overrides: dict[str, Tensor], batch: Any) -> Tensor:
    if isinstance(batch, dict):
        return functional_call(block, overrides, kwargs=batch)
    if isinstance(batch, (tuple, list)):
        return functional_call(block, overrides, tuple(batch))
    return functional_call(block, overrides, (batch,))


def refine_float_parts(
    block: nn.Module,
    quantized: dict[str, QuantizedWeight],
    inputs: Iterable[Any],
    steps: int = 100,
    lr: float = 1e-2,
) -> tuple[dict[str, QuantizedWeight], list[float]]:
    """Tune the scales and zero points of a block's quantised layers to match its float output.

    Args:
        block: the block with its full-precision weights (not modified); weight norm must be folded.
        quantized: layer name inside ``block`` -> its QuantizedWeight (codes stay fixed).
        inputs: calibration batches for the block (a tensor, a tuple of args or a dict of kwargs each).
        steps: Adam steps over the whole input set.
        lr: Adam learning rate, relative: scales move by about ``lr`` of their size per step.

    Returns:
        (refined QuantizedWeights, loss per step), where the loss is the block's output error energy
        over its output energy; the returned floats are those of the lowest loss seen. The loss is
        measured on the calibration inputs themselves: use enough of them that it generalises.

    Example:
        >>> import torch
        >>> from speechkit_export.quant.rtn import quantize_rtn
        >>> block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        >>> quantized = {name: quantize_rtn(block[int(name)].weight, bits=2) for name in ("0", "2")}
        >>> refined, losses = refine_float_parts(block, quantized, [torch.randn(8, 4)], steps=5)
        >>> min(losses) <= losses[0]
        True
    """
    batches = list(inputs)
    if not batches or steps < 1:
        raise ConfigError("refinement needs at least one calibration batch and one step")
    modules = dict(block.named_modules())
    for name in quantized:
        if name not in modules or not isinstance(getattr(modules[name], "weight", None), nn.Parameter):
            raise ConfigError(f"{name!r} is not a layer with a plain weight inside the block")
    with torch.no_grad():
        targets = [_call(block, {}, batch) for batch in batches]
    energy = sum(float(t.square().sum()) for t in targets)
    # Optimise log|scale| (keeps the sign, moves relative to size) and zero in code units.
    log_scale = {n: q.scale.abs().clamp_min(1e-12).log().requires_grad_() for n, q in quantized.items()}
    sign = {n: torch.sign(q.scale) for n, q in quantized.items()}
    zero = {n: q.zero.clone().requires_grad_() for n, q in quantized.items()}
    optimizer = torch.optim.Adam([*log_scale.values(), *zero.values()], lr=lr)
    best_loss, best, losses = float("inf"), {}, []
    for _ in range(steps):
        optimizer.zero_grad()
        scales = {n: sign[n] * log_scale[n].exp() for n in quantized}
        overrides = {f"{n}.weight": _dequantize(q, scales[n], zero[n]) for n, q in quantized.items()}
        loss = sum((_call(block, overrides, b) - t).square().sum() for b, t in zip(batches, targets)) / energy
        losses.append(float(loss.detach()))
        if losses[-1] < best_loss:
            best_loss = losses[-1]
            best = {n: (scales[n].detach().float(), zero[n].detach().float().clone()) for n in quantized}
        loss.backward()
        optimizer.step()
    logger.debug("block refinement loss %.5g -> %.5g", losses[0], best_loss)
    refined = {
        n: replace(q, scale=best[n][0].contiguous(), zero=best[n][1].contiguous())
        for n, q in quantized.items()
    }
    return refined, losses
