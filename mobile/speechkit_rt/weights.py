"""Packed low-bit weights: rebuild a graph's float weights from ``weights.npz`` and open it in onnxruntime.

ONNX has no 2- or 3-bit tensor type, so a bundle quantised with RTN / GPTQ / decoupleQ ships each
quantised weight as integer codes packed into bytes plus a float scale and zero point per group (and
its other float tensors of >= 1024 values, such as codebooks and depthwise convs, as float16;
the fixed STFT bases are derived initializers, :mod:`speechkit_rt.derived`), and its ``.onnx`` file
keeps only a reference to those initializers (ONNX external data with a ``location`` no bundle
contains). :func:`materialize` dequantises them and hands them to
onnxruntime with ``SessionOptions.add_external_initializers``, so the session is a plain
onnxruntime session with every graph optimisation (constant folding, weight pre-packing) intact.

Manifest entry of such a graph (``graphs.<name>.extra``)::

    "weights_file": "weights.npz",             the bundle file with the packed arrays
    "weights_location": "decoder.weights.bin", the external-data location the .onnx file references
    "weights": [                                one entry per initializer the .onnx file lacks
        {"name": "onnx::MatMul_380",            initializer name in the graph
         "key": "decoder.3",                    arrays <key>.codes, <key>.scale, <key>.zero in the npz
         "shape": [192, 64],                    the weight viewed as rows: R = shape[0], D = prod(shape[1:])
         "perm": [1, 0],                        axes permutation to the initializer's layout, or null
         "bits": 2, "group_size": 64,
         "offset": 0, "length": 49152},         float32 bytes in the virtual external file
        {"name": "decoder.up.conv.weight", "key": "decoder.9", "shape": [512, 256, 2], "perm": null,
         "layout": "conv_transpose_polyphase",  a ConvTranspose [C_in, C_out, M * s] stored as its
         "stride": 2,                           polyphase matrix [C_out * s, C_in, M] (see below)
         "bits": 4, "group_size": 64, "offset": ..., "length": ...},
        {"name": "/istft/Constant_1_output_0",  a float16 entry: array <key>.values, same shape
         "key": "decoder.7", "encoding": "float16", "shape": [642, 1, 640], "offset": ..., "length": ...}]

Arrays (never pickled): ``codes`` uint8 [ceil(R * D * bits / 8)], the codes of the [R, D] matrix in
C order packed LSB-first into one bit stream (code i at bits ``[i * bits, (i + 1) * bits)``, stream
bit k = bit ``k % 8`` of byte ``k // 8``); ``scale`` and ``zero`` float16 (or float32) [R, G],
G = ceil(D / group_size). Inside group g of row r::

    w[r, j] = scale[r, g] * (codes[r, j] - zero[r, g])     computed in float32

then reshaped to ``shape`` and permuted by ``perm``. A ``conv_transpose_polyphase`` entry's matrix
(row ``o * s + p``, column ``i * M + m``) holds ``W[i, o, m * s + p]`` of the transposed conv's
weight W [C_in, C_out, M * s] (its sub-pixel form, in which GPTQ / decoupleQ see the exact output
error); :func:`from_polyphase` puts it back. Other layouts are refused. A float16 entry's ``values`` [shape] are cast to
float32. ``offset``/``length`` lay the float32 weights
out as one file, so a runtime without named external initializers (onnxruntime-web's
``externalData``, ``AddExternalInitializersFromFilesInMemory``) can pass the same weights as an
in-memory file called ``weights_location``.

Example:
    >>> packed = np.array([0b11100100], dtype=np.uint8)   # codes 0, 1, 2, 3 at 2 bits
    >>> unpack_codes(packed, bits=2, count=4).tolist()
    [0, 1, 2, 3]
    >>> dequantize(packed, np.array([[0.5]], np.float16), np.array([[1.0]], np.float16),
    ...            bits=2, group_size=4, shape=(1, 4)).tolist()
    [[-0.5, 0.0, 0.5, 1.0]]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from speechkit_rt import derived
from speechkit_rt.bundle import Bundle
from speechkit_rt.errors import BundleError

logger = logging.getLogger(__name__)

POLYPHASE_LAYOUT = "conv_transpose_polyphase"
_ENTRY_KEYS = {"packed": ("name", "key", "shape", "bits", "group_size"), "float16": ("name", "key", "shape")}


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first ``count`` codes of an LSB-first packed bit stream, uint8 [count].

    Args:
        packed: uint8 bytes.
        bits: bits per code, 1..8.
        count: number of codes.

    Returns:
        uint8 [count].

    Raises:
        BundleError: too few bytes for ``count`` codes, or bits out of range.
    """
    if not 1 <= bits <= 8:
        raise BundleError(f"packed weights: bits must be in 1..8, got {bits}")
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if count < 0 or packed.size < math.ceil(count * bits / 8):
        raise BundleError(f"packed weights: {packed.size} bytes cannot hold {count} codes of {bits} bits")
    if bits == 8:
        return packed[:count].copy()
    stream = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits)
    # Weight of each bit of a code: 1, 2, 4, ... (LSB first).
    return (stream @ (1 << np.arange(bits, dtype=np.uint16))).astype(np.uint8)


def dequantize(
    packed: np.ndarray,
    scale: np.ndarray,
    zero: np.ndarray,
    bits: int,
    group_size: int,
    shape: Sequence[int],
    perm: Sequence[int] | None = None,
) -> np.ndarray:
    """Float32 weight from packed codes and per-group scale / zero point (see the module docstring).

    Args:
        packed: uint8 packed codes of the [R, D] matrix.
        scale: [R, G] float scales.
        zero: [R, G] float zero points in code units.
        bits: bits per code.
        group_size: columns per group along D.
        shape: the weight shape whose first axis is R (product of the rest is D).
        perm: optional axes permutation applied last (e.g. [1, 0] for a MatMul's [D, R] weight).

    Returns:
        C-contiguous float32 array of shape ``shape`` permuted by ``perm``.

    Raises:
        BundleError: on inconsistent sizes.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or any(s < 1 for s in shape) or group_size < 1:
        raise BundleError(f"packed weights: bad shape {shape} or group_size {group_size}")
    rows = shape[0]
    columns = math.prod(shape[1:])
    groups = math.ceil(columns / group_size)
    scale, zero = np.asarray(scale), np.asarray(zero)
    if scale.shape != (rows, groups) or zero.shape != (rows, groups):
        raise BundleError(
            f"packed weights: scale {scale.shape} / zero {zero.shape} do not match [{rows}, {groups}] "
            f"for shape {shape} and group_size {group_size}"
        )
    codes = unpack_codes(packed, bits, rows * columns).reshape(rows, columns).astype(np.float32)
    # Per-column scale / zero [R, D]; the same float32 ops as the exporter's torch dequantisation.
    scale = np.repeat(scale.astype(np.float32), group_size, axis=1)[:, :columns]
    zero = np.repeat(zero.astype(np.float32), group_size, axis=1)[:, :columns]
    weight = (scale * (codes - zero)).reshape(shape)
    if perm is not None:
        weight = weight.transpose(tuple(int(p) for p in perm))
    return np.ascontiguousarray(weight, dtype=np.float32)


def from_polyphase(matrix: np.ndarray, stride: int) -> np.ndarray:
    """A transposed conv's weight [C_in, C_out, M * s] from its polyphase matrix [C_out * s, C_in, M].

    Example:
        >>> from_polyphase(np.array([[[0.0, 2.0]], [[1.0, 3.0]]]), 2).tolist()   # C_in 1, C_out 1, K 4
        [[[0.0, 1.0, 2.0, 3.0]]]
    """
    if matrix.ndim != 3 or stride < 1 or matrix.shape[0] % stride:
        raise BundleError(f"packed weights: polyphase matrix {matrix.shape} does not fit stride {stride}")
    rows, in_channels, taps = matrix.shape
    # [C_out, s, C_in, M] -> [C_in, C_out, M, s]
    view = matrix.reshape(rows // stride, stride, in_channels, taps).transpose(2, 0, 3, 1)
    return np.ascontiguousarray(view.reshape(in_channels, rows // stride, taps * stride))


def weight_entries(bundle: Bundle, graph_name: str) -> list[dict[str, Any]]:
    """The ``extra.weights`` entries of a graph (empty when its .onnx file holds every weight)."""
    extra = bundle.graph(graph_name).get("extra", {})
    entries = extra.get("weights", [])
    if extra.get("weights_file") and not isinstance(entries, list):
        raise BundleError(f"graphs.{graph_name}.extra.weights must be a list")
    for i, entry in enumerate(entries):
        encoding = entry.get("encoding", "packed") if isinstance(entry, dict) else None
        if encoding not in _ENTRY_KEYS:
            raise BundleError(f"graphs.{graph_name}.extra.weights[{i}]: unknown encoding {encoding!r}")
        missing = [key for key in _ENTRY_KEYS[encoding] if key not in entry]
        if missing:
            raise BundleError(f"graphs.{graph_name}.extra.weights[{i}] lacks {missing}")
    return entries


def graph_weights(bundle: Bundle, graph_name: str) -> dict[str, np.ndarray]:
    """Initializer name -> dequantised float32 weight for every packed weight of a graph.

    Args:
        bundle: an opened bundle.
        graph_name: e.g. "decoder".

    Returns:
        ``{initializer name: float32 array}`` in the layout the graph expects (empty when the graph
        has no packed weights).

    Raises:
        BundleError: a missing weights file or array, or sizes that do not fit.
    """
    extra = bundle.graph(graph_name).get("extra", {})
    entries = weight_entries(bundle, graph_name)
    if not entries:
        return {}
    file = extra.get("weights_file")
    if not isinstance(file, str):
        raise BundleError(f"graphs.{graph_name}.extra lists packed weights but names no weights_file")
    arrays = bundle.load_arrays(file)
    weights = {}
    for entry in entries:
        weights[entry["name"]] = _rebuild(arrays, entry, file)
    return weights


def _rebuild(arrays: dict[str, np.ndarray], entry: dict[str, Any], file: str) -> np.ndarray:
    key = entry["key"]
    try:
        if entry.get("encoding", "packed") == "float16":
            values = arrays[f"{key}.values"]
            if list(values.shape) != list(entry["shape"]):
                raise BundleError(
                    f"{file}: {key}.values has shape {values.shape}, manifest says {entry['shape']}"
                )
            return np.ascontiguousarray(values, dtype=np.float32)
        packed, scale, zero = (arrays[f"{key}.{part}"] for part in ("codes", "scale", "zero"))
    except KeyError as err:
        raise BundleError(f"{file}: no array {err.args[0]!r} for weight {entry['name']!r}") from None
    bits, group_size = int(entry["bits"]), int(entry["group_size"])
    weight = dequantize(packed, scale, zero, bits, group_size, entry["shape"], entry.get("perm"))
    layout = entry.get("layout")
    if layout is None:
        return weight
    if layout != POLYPHASE_LAYOUT:
        raise BundleError(f"{file}: weight {entry['name']!r} has unknown layout {layout!r}")
    return from_polyphase(weight, int(entry.get("stride", 0)))


def materialize(
    bundle: Bundle,
    graph_name: str,
    num_threads: int | None = None,
    session_options: ort.SessionOptions | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> ort.InferenceSession:
    """An onnxruntime session of a bundle graph, with its packed weights dequantised and its derived
    initializers (``graphs.<name>.derived``, :mod:`speechkit_rt.derived`) rebuilt, all supplied as
    external initializers.

    A graph with neither opens as it is, so a runtime may call this for every graph.

    Args:
        bundle: an opened bundle.
        graph_name: e.g. "decoder".
        num_threads: intra-op threads (ignored when ``session_options`` is given).
        session_options: options to use (the weights are added to them).
        providers: onnxruntime execution providers.

    Returns:
        The session. The float weights live as long as it does (onnxruntime does not copy them).

    Raises:
        BundleError: a graph that is not an onnxruntime graph, bad packed weights, or a graph
            onnxruntime refuses (e.g. a weight whose shape does not match the graph).
    """
    graph = bundle.graph(graph_name)
    if graph["runtime"] != "onnxruntime":
        raise BundleError(f"graph {graph_name!r} is a {graph['runtime']} graph, not an onnxruntime one")
    options = session_options
    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
    weights = graph_weights(bundle, graph_name)
    rebuilt = derived.graph_derived(graph)  # DFT bases and windows, rebuilt and sha256-checked
    clash = sorted(set(weights) & set(rebuilt))
    if clash:
        raise BundleError(f"graph {graph_name!r}: {clash[0]!r} is both a packed and a derived initializer")
    weights.update(rebuilt)
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in weights.values()]
    if weights:
        options.add_external_initializers(list(weights), values)
    try:
        session = ort.InferenceSession(bundle.read_bytes(graph["file"]), options, providers=list(providers))
    except Exception as err:  # onnxruntime's errors are not in a Python hierarchy of their own
        raise BundleError(f"{graph['file']}: onnxruntime cannot load it ({err})") from err
    # onnxruntime keeps pointers into these buffers: they must live as long as the session.
    session._speechkit_weights = (weights, values)
    logger.debug("materialised %s: %d weights (%d derived)", graph_name, len(weights), len(rebuilt))
    return session
