"""Weight-only quantisation in pure torch: RTN, GPTQ and decoupleQ, calibration, packing.

Every quantiser views a weight as a matrix [R, D] (R output rows; D = in_features, or C_in / groups * K
for a Conv1d) and returns a :class:`QuantizedWeight` with ``w ~= scale * (codes - zero)`` per group of
``group_size`` input columns. :func:`quantize_model` applies one to every Linear / Conv1d of a model;
:func:`refine_float_parts` is decoupleQ's optional block-wise second stage.
"""

from __future__ import annotations

from speechkit_export.quant.apply import (
    LayerQuantization,
    assign_dequantized,
    quantize_model,
    quantize_weight,
)
from speechkit_export.quant.calibration import HessianStats, collect_hessians, conv1d_columns
from speechkit_export.quant.decoupleq import DecoupleQResult, decoupleq, quantize_decoupleq
from speechkit_export.quant.gptq import quantize_gptq
from speechkit_export.quant.hessian import relative_output_error
from speechkit_export.quant.packing import pack_codes, packed_size, storage_bytes, unpack_codes
from speechkit_export.quant.quantized_weight import QuantizedWeight
from speechkit_export.quant.refine import refine_float_parts
from speechkit_export.quant.rtn import quantize_rtn

__all__ = [
    "DecoupleQResult",
    "HessianStats",
    "LayerQuantization",
    "QuantizedWeight",
    "assign_dequantized",
    "collect_hessians",
    "conv1d_columns",
    "decoupleq",
    "pack_codes",
    "packed_size",
    "quantize_decoupleq",
    "quantize_gptq",
    "quantize_model",
    "quantize_rtn",
    "quantize_weight",
    "refine_float_parts",
    "relative_output_error",
    "storage_bytes",
    "unpack_codes",
]
