"""ONNX Runtime quantisation modes for exported graphs: int8 dynamic, int8 static (QDQ), 4-bit weights.

::

    int8-dynamic  quantize_dynamic: Conv and MatMul weights uint8 per output channel, activations
                  quantized to uint8 on the fly (ConvInteger / MatMulInteger). No calibration.
    int8-static   quantize_static, QDQ format: Conv and MatMul weights int8 per channel, their input
                  activations int8 (S8S8, onnxruntime's recommended QDQ setting) with MinMax ranges
                  measured on calibration feeds (clips may differ in length; Percentile and Entropy
                  calibration need equal shapes in onnxruntime 1.32).
    w4            MatMulNBits (com.microsoft): MatMul weights 4-bit, symmetric, one fp32 scale per block
                  of 32 along the input axis, round to nearest (onnxruntime's "DEFAULT" algorithm).
                  Convolutions and everything else stay fp32.

Only weights worth quantizing are touched: a Conv/MatMul whose weight is a stored initializer with at
least ``min_weight_elements`` values and not a fixed transform. That leaves fp32 the DFT bases of the
STFT/iSTFT and mel filterbanks (Constant nodes, or initializers named ``*basis``/``*filterbank``:
8-bit steps in a DFT basis would add broadband noise to every bin for no learned weight), the
quantizer's codebooks and its small 1x1 projections (an int8 nearest-neighbour search flips codes),
and the depthwise convs (7 x C values).

Weight type (int8-dynamic): QUInt8, per channel, for Conv and MatMul alike. Dynamic activations are
uint8, and ConvInteger has long had only a uint8 x uint8 CPU kernel (onnxruntime issues #6430, #23985;
onnxruntime-web likewise), so int8 conv weights fail to load on some runtimes. It also measured
better: on the codec-rvq encoder (AVX2 CPU without VNNI, where onnxruntime warns that uint8 x int8
kernels may saturate) QInt8 weights kept 43 % of codes equal to fp32, QUInt8 62 %, at the same
decoder SNR (35 dB).
Per-channel scales keep a layer's quiet output channels from rounding to zero.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> layer = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
    >>> torch.onnx.export(layer.eval(), (torch.randn(1, 5, 64),), str(folder / "mlp.onnx"),
    ...                   input_names=["x"], output_names=["y"], opset_version=18, dynamo=False)
    >>> report = quantize_graph(folder / "mlp.onnx", folder / "mlp-w4.onnx", "w4")
    >>> report["quantized_nodes"], report["dst_bytes"] < report["src_bytes"]
    ({'MatMul': 2}, True)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from speechkit.errors import ConfigError

logger = logging.getLogger(__name__)

QUANT_MODES = ("int8-dynamic", "int8-static", "w4")
_INT8_OPS = ("Conv", "MatMul")
_W4_OPS = ("MatMul",)  # MatMulNBits replaces MatMul only (not Gemm, not Conv)
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
# Names of the fixed DSP tensors of speechkit.features (DFT bases, windows, mel filterbanks): exported as
# initializers when shared (e.g. by Griffin-Lim's loop), never quantised.
_FIXED_TRANSFORMS = ("basis", "filterbank", "window")


class FeedCalibrationReader(CalibrationDataReader):
    """A ``CalibrationDataReader`` over a fixed list of input feeds (graph input name -> array).

    Args:
        feeds: one dict per calibration run, e.g. ``{"wav": [1, T] float32}`` for a codec encoder
            or ``{"codes": [1, K, N] int64}`` for its decoder (see
            :func:`speechkit_export.onnx_graphs.calibration_feeds`).

    Example:
        >>> reader = FeedCalibrationReader([{"x": np.zeros((1, 4), np.float32)}])
        >>> reader.get_next()["x"].shape, reader.get_next()
        ((1, 4), None)
    """

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]) -> None:
        self.feeds = [dict(feed) for feed in feeds]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.feeds):
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def quantize_graph(
    src: str | Path,
    dst: str | Path,
    mode: str,
    calibration: Iterable[Mapping[str, np.ndarray]] | CalibrationDataReader | None = None,
    block_size: int = 32,
    min_weight_elements: int = 4096,
) -> dict:
    """Write a quantised copy of the ONNX graph ``src`` to ``dst`` in one of :data:`QUANT_MODES`.

    Args:
        src: fp32 ONNX graph.
        dst: where to write the quantised graph.
        mode: "int8-dynamic", "int8-static" or "w4".
        calibration: int8-static only: feeds (name -> array) or a ``CalibrationDataReader``.
        block_size: w4 block length along the input axis (a power of two >= 16).
        min_weight_elements: smaller weights stay fp32.

    Returns:
        ``mode``, ``src_bytes``, ``dst_bytes``, ``size_ratio`` (dst / src), ``quantized_nodes``
        (op type -> count), ``quantized_weight_fraction`` (quantised weight values / all float
        constant values of ``src``, the fixed DFT bases included), ``float_weight_elements``,
        ``quantized_weight_elements`` and the mode's settings.

    Raises:
        ConfigError: an unknown mode, a missing calibration for int8-static, a bad block size, or a
            graph with nothing to quantise.
    """
    if mode not in QUANT_MODES:
        raise ConfigError(f"unknown quantisation mode {mode!r}; choose one of {QUANT_MODES}")
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    ops = _W4_OPS if mode == "w4" else _INT8_OPS
    nodes = _weight_nodes(model, ops, min_weight_elements)
    if not nodes:
        raise ConfigError(
            f"{src.name} has no {'/'.join(ops)} weight of >= {min_weight_elements} values to quantise"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Counted first: the w4 quantizer rewrites ``model`` in place.
    total, op_counts = _float_elements(model), dict(Counter(_op_types(model)[name] for name in nodes))
    settings: dict = {}
    if mode == "int8-dynamic":
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=list(ops),
            nodes_to_quantize=list(nodes),
            per_channel=True,
            weight_type=QuantType.QUInt8,
        )
        settings = {"weight_type": "uint8", "per_channel": True, "activations": "uint8, dynamic"}
    elif mode == "int8-static":
        reader = _calibration_reader(calibration)
        quantize_static(
            src,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops),
            nodes_to_quantize=list(nodes),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        settings = {
            "weight_type": "int8",
            "per_channel": True,
            "activations": "int8, MinMax calibrated",
            "calibration_items": len(reader.feeds) if isinstance(reader, FeedCalibrationReader) else None,
        }
    else:
        _quantize_w4(model, dst, nodes, block_size)
        settings = {"bits": 4, "block_size": block_size, "symmetric": True, "algorithm": "RTN"}
    quantized = sum(nodes.values())
    report = {
        "mode": mode,
        "src_bytes": src.stat().st_size,
        "dst_bytes": dst.stat().st_size,
        "quantized_nodes": op_counts,
        "float_weight_elements": total,
        "quantized_weight_elements": quantized,
        "quantized_weight_fraction": quantized / max(total, 1),
        **settings,
    }
    report["size_ratio"] = report["dst_bytes"] / report["src_bytes"]
    logger.info("%s: %s -> %s (%.2fx)", mode, src.name, dst.name, report["size_ratio"])
    return report


def _calibration_reader(
    calibration: Iterable[Mapping[str, np.ndarray]] | CalibrationDataReader | None,
) -> CalibrationDataReader:
    if calibration is None:
        raise ConfigError("int8-static needs calibration feeds (graph input name -> array)")
    if isinstance(calibration, CalibrationDataReader):
        return calibration
    reader = FeedCalibrationReader(calibration)
    if not reader.feeds:
        raise ConfigError("int8-static got an empty calibration set")
    return reader


def _quantize_w4(model: onnx.ModelProto, dst: Path, nodes: Mapping[str, int], block_size: int) -> None:
    if block_size < 16 or block_size & (block_size - 1):
        raise ConfigError(f"w4 block_size must be a power of two >= 16, got {block_size}")
    # Imported here: the module calls logging.basicConfig(level=INFO) when imported, and logs a line
    # per node at INFO, which we silence while it runs.
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    config = nbits.DefaultWeightOnlyQuantConfig(
        block_size=block_size,
        is_symmetric=True,
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=_W4_OPS,
        bits=4,
    )
    excluded = [n.name for n in model.graph.node if n.op_type in _W4_OPS and n.name not in nodes]
    quantizer = nbits.MatMulNBitsQuantizer(model, nodes_to_exclude=excluded, algo_config=config)
    quiet, level = logging.getLogger(nbits.__name__), logging.getLogger(nbits.__name__).level
    quiet.setLevel(logging.WARNING)
    try:
        quantizer.process()
    finally:
        quiet.setLevel(level)
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def _weight_nodes(model: onnx.ModelProto, op_types: tuple[str, ...], min_elements: int) -> dict[str, int]:
    """Name -> weight size of each ``op_types`` node whose input 1 is a learned float initializer this large."""
    initializers = {init.name: init for init in model.graph.initializer}
    nodes = {}
    for node in model.graph.node:
        weight = initializers.get(node.input[1]) if node.op_type in op_types and len(node.input) > 1 else None
        if weight is None or weight.data_type not in _FLOAT_TYPES:
            continue
        size = int(np.prod(weight.dims))
        if size >= min_elements and not any(marker in weight.name for marker in _FIXED_TRANSFORMS):
            nodes[node.name] = size
    return nodes


def _op_types(model: onnx.ModelProto) -> dict[str, str]:
    return {node.name: node.op_type for node in model.graph.node}


def _float_elements(model: onnx.ModelProto) -> int:
    """Values in float initializers and float Constant nodes (the fixed STFT bases are Constants)."""
    total = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in _FLOAT_TYPES)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if tensor.data_type in _FLOAT_TYPES:
                total += int(numpy_helper.to_array(tensor).size)
    return total
