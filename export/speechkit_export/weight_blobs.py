"""Torch-side low-bit weights in a bundle: quantise a codec's layers, then move them out of its ONNX graphs.

The producer side of :mod:`speechkit_rt.weights` (which documents the format):

1. :func:`quantize_codec_weights` quantises the model's Linear / Conv1d / ConvTranspose1d weights in place
   with RTN, GPTQ or
   decoupleQ (:mod:`speechkit_export.quant`), rounds every scale and zero point to the float16 the
   bundle stores, and writes the dequantised weights back, so the torch model, the exported graph and
   the runtime's rebuilt weights are the same float32 numbers.
2. The graphs are exported from that model as usual (full float32 files, used for the parity check).
3. :func:`externalize_weights` finds each quantised weight among a graph's initializers, by value (a
   Conv or ConvTranspose keeps the weight as it is; a Linear becomes a MatMul on the transposed
   weight, or a Gemm on the weight), turns it into an ONNX external-data reference and returns the packed arrays for
   ``weights.npz`` plus the manifest entries. A weight that is not found stays in the graph, in float.

What is quantised: every Linear / Conv1d / ConvTranspose1d (the upsampling conv, as its polyphase
matrix: ``quant.conv_transpose``) with at least ``min_weight_elements`` values, except the
vector quantizers' own projections (an error there moves the nearest-code search) and, when
``quantize_encoder=False``, the layers of the encoder side (``encode_codes`` / ``encode_global``),
whose rounding errors flip codes. In the graphs that are quantised, the other float tensors of
>= 2 axes and >= ``FLOAT16_MIN_ELEMENTS`` values (depthwise convs and VQ projections; codebooks and
lookup tables) are stored as float16
in ``weights.npz`` too. Biases and norms (1-D) stay float32; the fixed STFT / iSTFT bases and windows
are not stored at all (``derived_initializers``: the runtime rebuilds them from recipes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from speechkit.errors import ConfigError
from speechkit_export.quant import LayerQuantization, QuantizedWeight, assign_dequantized, quantize_model
from speechkit_export.quant.calibration import supports
from speechkit_export.quant.conv_transpose import POLYPHASE_LAYOUT
from speechkit_export.quant.packing import pack_codes

logger = logging.getLogger(__name__)

METHODS = ("rtn", "gptq", "decoupleq")
MIN_WEIGHT_ELEMENTS = 4096  # as ort_quant: smaller layers (depthwise convs, 1x1 VQ projections) stay float
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ALIGN = 64  # byte alignment of each weight in the virtual external-data file
# Float tensors (>= 2-D) of at least this many values that are not quantised are stored as float16:
# the upsampling transposed conv, depthwise convs, VQ projections, codebooks and lookup tables. On
# codec-rvq at 4 bits this cost nothing measurable (same PESQ-WB to 4 decimals, same codes; decoder
# SNR 24.2976 vs 24.2970 dB for gptq-w4) and saved 0.47 MiB.
FLOAT16_MIN_ELEMENTS = 1024
_WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def codec_layer_roles(model: nn.Module) -> dict[str, set[str]]:
    """Which quantisable layers (Linear / Conv1d / ConvTranspose1d) the encoder side and the decoder run, found with forward hooks.

    Args:
        model: a codec model (``encode_codes``, ``decode_codes``; ``encode_global`` if it has global codes).

    Returns:
        ``{"encoder": names, "decoder": names}`` (a layer both run is in both).

    Example:
        >>> from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
        >>> config = RVQCodecConfig(n_fft=64, hop_length=16, dim=16, latent_dim=8, num_quantizers=2,
        ...                         codebook_size=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> roles = codec_layer_roles(RVQCodec(config).eval())
        >>> "decoder.head" in roles["decoder"], "encoder.output" in roles["encoder"]
        (True, True)
    """
    seen: dict[str, set[str]] = {"encoder": set(), "decoder": set()}
    current = ["encoder"]
    hooks = [
        module.register_forward_hook(lambda *_, name=name: seen[current[0]].add(name))
        for name, module in model.named_modules()
        if supports(module)
    ]
    wav = 0.1 * torch.randn(1, 8 * int(model.hop_length), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            codes = model.encode_codes(wav)
            extra = {}
            if getattr(model, "global_codebook_sizes", ()):
                extra["global_codes"] = model.encode_global(wav)
            current[0] = "decoder"
            model.decode_codes(codes, **extra)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def quantize_codec_weights(
    model: nn.Module,
    method: str,
    bits: int,
    group_size: int | None,
    clips: Sequence[np.ndarray],
    quantize_encoder: bool = True,
    min_weight_elements: int = MIN_WEIGHT_ELEMENTS,
) -> dict[str, LayerQuantization]:
    """Quantise a codec's weights in place (float16 scale / zero) and return them per layer.

    Args:
        model: the codec (modified: its weights become the dequantised ones; weight norm folded).
        method: "rtn", "gptq" or "decoupleq".
        bits: bits per code, 2..8.
        group_size: columns per group (None: one group per output channel).
        clips: calibration audio, float32 [T] each at the model's rate (Hessians for GPTQ/decoupleQ,
            the relative output errors for all).
        quantize_encoder: also quantise the encoder side (see the module docstring).
        min_weight_elements: smaller weights stay float.

    Returns:
        layer name -> LayerQuantization, with the float16-rounded QuantizedWeight.

    Raises:
        ConfigError: an unknown method, or no layer left to quantise.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown weight quantisation method {method!r}; choose one of {METHODS}")
    roles = codec_layer_roles(model)
    wanted = roles["decoder"] | roles["encoder"] if quantize_encoder else roles["decoder"] - roles["encoder"]

    def skip(name: str, module: nn.Module) -> bool:
        in_quantizer = any("quantizer" in part for part in name.split("."))
        return in_quantizer or name not in wanted or module.weight.numel() < min_weight_elements

    candidates = [n for n, m in model.named_modules() if supports(m) and not skip(n, m)]
    if not candidates:
        side = "encoder or decoder" if quantize_encoder else "decoder (the encoder was left float)"
        raise ConfigError(
            f"{model.config.KIND}: its {side} has no Linear/Conv1d/ConvTranspose1d weight of >= {min_weight_elements} "
            "values to quantise"
        )
    hop = int(model.hop_length)
    batches = [torch.from_numpy(np.pad(c, (0, (-len(c)) % hop)).astype(np.float32))[None] for c in clips]

    def run(net: nn.Module) -> None:
        for wav in batches:
            extra = (
                {"global_codes": net.encode_global(wav)} if getattr(net, "global_codebook_sizes", ()) else {}
            )
            net.decode_codes(net.encode_codes(wav), **extra)

    return quantize_layers(model, method, bits, group_size, run if batches else None, skip)


def quantize_layers(
    model: nn.Module,
    method: str,
    bits: int,
    group_size: int | None,
    calibration: Callable[[nn.Module], None] | None,
    skip: Callable[[str, nn.Module], bool],
) -> dict[str, LayerQuantization]:
    """Quantise a model's Linear / Conv1d / ConvTranspose1d weights in place, with scale and zero rounded
    to the float16 the bundle stores and the dequantised weights written back (any model kind).

    Args:
        model: modified in place.
        method, bits, group_size: as :func:`quantize_codec_weights`.
        calibration: runs the model on calibration data (Hessians for GPTQ / decoupleQ); None for RTN.
        skip: ``skip(name, module)`` leaves a layer float.

    Returns:
        layer name -> LayerQuantization, with the float16-rounded QuantizedWeight.
    """
    layers = quantize_model(model, method, bits, group_size, calibration=calibration, skip=skip)
    rounded = {
        name: dataclasses.replace(layer, quantized=_float16_grid(layer.quantized))
        for name, layer in layers.items()
    }
    assign_dequantized(model, {name: layer.quantized for name, layer in rounded.items()})
    return rounded


def _float16_grid(quantized: QuantizedWeight) -> QuantizedWeight:
    """The weight with scale and zero rounded to float16, unless that overflows or zeroes a scale."""
    scale, zero = quantized.scale.half(), quantized.zero.half()
    lost = (scale == 0) & (quantized.scale != 0)
    if not (torch.isfinite(scale).all() and torch.isfinite(zero).all()) or bool(lost.any()):
        return quantized  # stored as float32 (the runtime reads either)
    return dataclasses.replace(quantized, scale=scale.float(), zero=zero.float())


def _fingerprint(array: np.ndarray) -> tuple[tuple[int, ...], str]:
    return tuple(array.shape), hashlib.sha1(
        np.ascontiguousarray(array, dtype=np.float32).tobytes()
    ).hexdigest()


def externalize_weights(
    src: str | Path,
    dst: str | Path,
    graph_name: str,
    quantized: dict[str, QuantizedWeight],
    arrays: dict[str, np.ndarray],
    full_dst: str | Path | None = None,
    float16_min_elements: int | None = FLOAT16_MIN_ELEMENTS,
    keep_float32: set[str] | frozenset[str] = frozenset(),
) -> list[dict]:
    """Write ``src`` without the data of its quantised (and large float) weights to ``dst``; add their arrays.

    Args:
        src: float32 ONNX graph exported from the model that ``quantized`` was assigned to.
        dst: where to write the graph with external-data references (location
            ``<graph_name>.weights.bin``, a file no bundle holds: the runtime supplies the weights).
        graph_name: prefix of the array keys and of the location.
        quantized: layer name -> its (float16-rounded) QuantizedWeight.
        arrays: the ``weights.npz`` arrays; this graph's ``<key>.codes/.scale/.zero`` (packed) and
            ``<key>.values`` (float16) are added.
        full_dst: also write the graph with every weight inline, as the runtime rebuilds it (the
            float16 tensors rounded): the graph to measure parity on.
        float16_min_elements: other float tensors of >= 2 axes with at least this many values (a
            transposed conv, depthwise convs, VQ projections, codebooks and lookup tables) are
            stored as float16; None keeps them float32 in the graph. 1-D tensors (biases, norms)
            always stay float32.
        keep_float32: names never stored as float16 (the DFT bases and windows the bundle derives).

    Returns:
        The ``extra.weights`` manifest entries (see :mod:`speechkit_rt.weights`), one per initializer.
    """
    model = onnx.load(str(src))
    if float16_min_elements is not None:
        _constants_to_initializers(model, float16_min_elements)
    by_value: dict[tuple, list[TensorProto]] = {}
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT and len(init.dims) >= 2:
            by_value.setdefault(_fingerprint(numpy_helper.to_array(init)), []).append(init)
    moved: list[tuple[TensorProto, dict]] = []
    for layer, weight in quantized.items():
        dense = weight.layer_weight().numpy()
        for candidate, perm in ((dense, None), (dense.T if dense.ndim == 2 else None, [1, 0])):
            for init in by_value.pop(_fingerprint(candidate), []) if candidate is not None else []:
                key = f"{graph_name}.{len(moved)}"
                scale_dtype = np.float16 if _fits_float16(weight) else np.float32
                arrays[f"{key}.codes"] = pack_codes(weight.codes, weight.bits)
                arrays[f"{key}.scale"] = weight.scale.numpy().astype(scale_dtype)
                arrays[f"{key}.zero"] = weight.zero.numpy().astype(scale_dtype)
                entry = {"name": init.name, "key": key, "layer": layer, "shape": list(weight.shape), "perm": perm,
                         "bits": weight.bits, "group_size": weight.group_size}  # fmt: skip
                if weight.conv_transpose_stride is not None:
                    entry.update(layout=POLYPHASE_LAYOUT, stride=weight.conv_transpose_stride)
                moved.append((init, entry))
    if float16_min_elements is not None:
        for inits in by_value.values():
            for init in inits:
                if init.name not in keep_float32 and math.prod(init.dims) >= float16_min_elements:
                    key = f"{graph_name}.{len(moved)}"
                    values = numpy_helper.to_array(init).astype(np.float16)
                    init.CopyFrom(numpy_helper.from_array(values.astype(np.float32), init.name))
                    arrays[f"{key}.values"] = values
                    moved.append(
                        (
                            init,
                            {"name": init.name, "key": key, "encoding": "float16", "shape": list(init.dims)},
                        )
                    )
    if full_dst is not None:
        onnx.save(model, str(full_dst))
    offset = 0
    for init, entry in moved:
        entry.update(offset=offset, length=4 * math.prod(entry["shape"]))
        _make_external(init, f"{graph_name}.weights.bin", offset, entry["length"])
        offset += math.ceil(entry["length"] / _ALIGN) * _ALIGN
    onnx.save(model, str(dst))
    logger.info("%s: %d weights moved to weights.npz", graph_name, len(moved))
    return [entry for _, entry in moved]


def _weight_inputs(model: onnx.ModelProto) -> set[str]:
    """Names read only as the weight (input 1) of Conv / ConvTranspose / MatMul / Gemm nodes."""
    uses: dict[str, set[bool]] = {}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            uses.setdefault(name, set()).add(node.op_type in _WEIGHT_OPS and index == 1)
    return {name for name, flags in uses.items() if flags == {True}}


def _constants_to_initializers(model: onnx.ModelProto, min_elements: int) -> None:
    """Turn large float Constant nodes that feed only weight inputs (the DFT bases) into initializers."""
    weights = _weight_inputs(model)
    keep = []
    for node in model.graph.node:
        tensor = (
            node.attribute[0].t if node.op_type == "Constant" and node.attribute[0].name == "value" else None
        )
        if (
            tensor is not None
            and tensor.data_type == TensorProto.FLOAT
            and node.output[0] in weights
            and math.prod(tensor.dims) >= min_elements
        ):
            model.graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(tensor), node.output[0])
            )
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _fits_float16(weight: QuantizedWeight) -> bool:
    """Whether scale and zero are exactly float16 numbers (as :func:`_float16_grid` makes them)."""
    return bool(
        torch.equal(weight.scale.half().float(), weight.scale)
        and torch.equal(weight.zero.half().float(), weight.zero)
    )


def _make_external(init: TensorProto, location: str, offset: int, length: int) -> None:
    """Drop an initializer's data, leaving an ONNX external-data reference to ``location``."""
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    del init.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays as an uncompressed .npz with fixed timestamps (same arrays, same bytes; no pickle).

    Example:
        >>> import tempfile
        >>> path = save_npz(Path(tempfile.mkdtemp()) / "w.npz", {"a.codes": np.arange(3, dtype=np.uint8)})
        >>> np.load(path, allow_pickle=False)["a.codes"].tolist()
        [0, 1, 2]
    """
    path = Path(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME), buffer.getvalue())
    return path


def graph_weight_bytes(path: str | Path) -> int:
    """Bytes of every initializer and Constant tensor of an ONNX graph, at their stored dtypes.

    For a graph whose weights live in the file this is what onnxruntime holds once loaded (before
    its own pre-packing); for a packed-weights graph, measure the full float graph it came from.
    """
    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for tensor in model.graph.initializer:
        total += _tensor_bytes(tensor)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                total += _tensor_bytes(attribute.t)
    return total


def _tensor_bytes(tensor: TensorProto) -> int:
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(math.prod(tensor.dims)) * itemsize
