"""Quantise every Linear / Conv1d / ConvTranspose1d weight of a model in place and report what it cost per layer.

Calibration is a single pass over the full-precision model (all H collected before any layer is
quantised); GPTQ's layer-by-layer variant, where later layers see the already-quantised earlier ones,
is not done here. Weight normalisation is folded into the plain weight first (the quantised tensor is
the effective weight). Biases stay in float. A ``nn.ConvTranspose1d`` is quantised as its polyphase
matrix (``quant.conv_transpose``: rows (output channel, phase), columns (input channel, lag), the view in
which its output error is a per-row quadratic form), by every method; transposed convs that view does
not cover (groups, dilation, padding) are left untouched.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from speechkit.errors import ConfigError
from speechkit_export.quant.calibration import Calibration, collect_hessians, supports
from speechkit_export.quant.conv_transpose import polyphase_matrix
from speechkit_export.quant.decoupleq import quantize_decoupleq
from speechkit_export.quant.gptq import quantize_gptq
from speechkit_export.quant.hessian import relative_output_error
from speechkit_export.quant.quantized_weight import QuantizedWeight, check_bits
from speechkit_export.quant.rtn import quantize_rtn

logger = logging.getLogger(__name__)

METHODS = ("rtn", "gptq", "decoupleq")


@dataclass(frozen=True)
class LayerQuantization:
    """What quantising one layer produced.

    Args:
        quantized: the layer's QuantizedWeight.
        relative_error: ``trace(dW H dW^T) / trace(W H W^T)`` on the calibration inputs, or None when the
            model was quantised without calibration data (RTN only).
    """

    quantized: QuantizedWeight
    relative_error: float | None


def quantize_weight(
    weight: Tensor,
    method: str,
    bits: int,
    group_size: int | None = None,
    hessian: Tensor | None = None,
    damping: float = 0.01,
    iterations: int = 4,
) -> QuantizedWeight:
    """Quantise one weight with the named method.

    Args:
        weight: Linear [R, D] or Conv1d [R, C_in / groups, K] weight.
        method: "rtn", "gptq" or "decoupleq".
        bits: bits per code, 2..8.
        group_size: columns per group along the input dim; None for one group per row.
        hessian: H [D, D] or [R, D, D]; required by "gptq" and "decoupleq", ignored by "rtn".
        damping: H damping (fraction of its mean diagonal) for "gptq" and "decoupleq".
        iterations: decoupleQ alternations.

    Returns:
        The QuantizedWeight.

    Example:
        >>> import torch
        >>> quantize_weight(torch.randn(3, 4), "rtn", bits=4).codes.dtype
        torch.uint8
    """
    if method not in METHODS:
        raise ConfigError(f"unknown quantisation method {method!r}; choose one of {METHODS}")
    if method == "rtn":
        return quantize_rtn(weight, bits, group_size)
    if hessian is None:
        raise ConfigError(f"method {method!r} needs a hessian (calibration data)")
    if method == "gptq":
        return quantize_gptq(weight, hessian, bits, group_size, damping=damping)
    return quantize_decoupleq(weight, hessian, bits, group_size, iterations=iterations, damping=damping)


def _fold_weight_norm(module: nn.Module) -> None:
    """Replace a weight-normalised weight by the plain tensor it currently evaluates to."""
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    elif hasattr(module, "weight_g") and hasattr(module, "weight_v"):  # the legacy hook-based weight norm
        torch.nn.utils.remove_weight_norm(module)


def quantizable_layers(
    model: nn.Module, skip: Callable[[str, nn.Module], bool] | None = None
) -> dict[str, nn.Module]:
    """name -> every nn.Linear / nn.Conv1d / supported nn.ConvTranspose1d of ``model`` that
    ``skip(name, module)`` does not exclude."""
    return {
        name: module
        for name, module in model.named_modules()
        if supports(module) and not (skip is not None and skip(name, module))
    }


def quantize_model(
    model: nn.Module,
    method: str = "decoupleq",
    bits: int = 4,
    group_size: int | None = None,
    calibration: Calibration | None = None,
    skip: Callable[[str, nn.Module], bool] | None = None,
    damping: float = 0.01,
    iterations: int = 4,
) -> dict[str, LayerQuantization]:
    """Quantise the weights of every Linear, Conv1d and ConvTranspose1d of a model in place (weights
    become dequantised).

    Args:
        model: the model, modified in place (weight norm folded, weights replaced).
        method: "rtn", "gptq" or "decoupleq".
        bits: bits per code, 2..8.
        group_size: columns per group along each weight's input dim; None for one group per output row.
        calibration: batches or a callable that runs the model (see ``calibration.Calibration``);
            required by "gptq" and "decoupleq"; optional for "rtn" (then only the errors need it).
        skip: predicate ``skip(name, module) -> True`` to leave a layer in float.
        damping: H damping for "gptq" and "decoupleq".
        iterations: decoupleQ alternations.

    Returns:
        layer name -> LayerQuantization (QuantizedWeight and relative output error).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> report = quantize_model(model, "gptq", bits=4, calibration=[torch.randn(16, 8)])
        >>> sorted(report), report["0"].relative_error < 0.1
        (['0', '2'], True)
    """
    check_bits(bits)
    if method not in METHODS:
        raise ConfigError(f"unknown quantisation method {method!r}; choose one of {METHODS}")
    if calibration is None and method != "rtn":
        raise ConfigError(f"method {method!r} needs calibration data")
    layers = quantizable_layers(model, skip)
    for module in layers.values():
        _fold_weight_norm(module)
    stats = collect_hessians(model, calibration, layers) if calibration is not None else {}
    report: dict[str, LayerQuantization] = {}
    for name, module in layers.items():
        weight, stride = _weight_matrix(module)
        hessian = stats[name].per_row(weight.shape[0]) if name in stats else None
        if hessian is None and method != "rtn":
            logger.warning("layer %s saw no calibration data; left in float", name)
            continue
        quantized = quantize_weight(weight, method, bits, group_size, hessian, damping, iterations)
        if stride is not None:
            quantized = dataclasses.replace(quantized, conv_transpose_stride=stride)
        dequantized = quantized.dequantize()
        error = None if hessian is None else relative_output_error(weight, dequantized, hessian)
        with torch.no_grad():
            module.weight.copy_(quantized.layer_weight().to(module.weight))
        report[name] = LayerQuantization(quantized=quantized, relative_error=error)
        logger.info("%s %s %d-bit: relative output error %s", name, method, bits, error)
    return report


def assign_dequantized(model: nn.Module, quantized: dict[str, QuantizedWeight]) -> None:
    """Write each QuantizedWeight's dequantised weight into the layer of that name (in place).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> assign_dequantized(model, {"0": quantize_rtn(torch.zeros(3, 4), bits=2)})
        >>> float(model[0].weight.detach().abs().sum())
        0.0
    """
    modules = dict(model.named_modules())
    for name, weight in quantized.items():
        module = modules.get(name)
        dense = weight.layer_weight()
        if module is None or module.weight.shape != dense.shape:
            raise ConfigError(f"no layer {name!r} with a weight of shape {tuple(dense.shape)} in the model")
        _fold_weight_norm(module)
        with torch.no_grad():
            module.weight.copy_(dense.to(module.weight))


def _weight_matrix(module: nn.Module) -> tuple[Tensor, int | None]:
    """The weight as the quantisers see it and, for a ConvTranspose1d, its stride (polyphase view)."""
    weight = module.weight.detach()
    if isinstance(module, nn.ConvTranspose1d):
        stride = module.stride[0]
        return polyphase_matrix(weight, stride), stride
    return weight, None
