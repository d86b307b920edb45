"""Where a bundle's bytes go: every tensor of its ONNX graphs and weights file, by what it is.

:func:`bundle_size_breakdown` reads a bundle folder's manifest, graphs and ``weights.npz`` and sums
the stored bytes per category:

==================  ===============================================================================
packed weights      quantised Conv / MatMul weights: codes + scale + zero in weights.npz
conv/linear float   Conv / ConvTranspose / MatMul / Gemm weights kept float (inline or float16 in the npz)
dft bases/windows   STFT / iSTFT bases and windows stored in the bundle (0 once derived)
codebooks           VQ codebooks and lookup tables (read by Gather, Slice, ReduceL2, ...: not a weight input)
norms/biases        1-D float tensors (biases, LayerNorm scales, layer scales)
int8 weights        integer initializers (onnxruntime int8 / MatMulNBits modes) and their scales
graph structure     the .onnx files minus the tensors in them (nodes, names, shapes)
container           weights.npz minus its arrays (zip and .npy headers)
==================  ===============================================================================

``derived (rebuilt)`` is reported beside them: the bytes of recipe-rebuilt tensors (not on disk).

Example:
    >>> breakdown = bundle_size_breakdown("bundles/codec-rvq-rtn-w4")  # doctest: +SKIP
    >>> breakdown["packed weights"]  # doctest: +SKIP
    3276800
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

CATEGORIES = (
    "packed weights",
    "conv/linear float",
    "int8 weights",
    "dft bases/windows",
    "codebooks",
    "norms/biases",
    "graph structure",
    "container",
)
_WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _tensor_bytes(tensor: TensorProto) -> int:
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(math.prod(tensor.dims)) * itemsize


def _classify(name: str, dims: list[int], dtype: int, uses: set[tuple[str, int]]) -> str:
    """The category of one tensor from its shape, type and the (op, input index) pairs that read it."""
    if dtype not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
        return "int8 weights"
    weight_input = bool(uses) and all(op in _WEIGHT_OPS and index == 1 for op, index in uses)
    if weight_input and len(dims) == 3 and dims[1] == 1 and dims[0] == 2 * (dims[2] // 2 + 1):
        return "dft bases/windows"  # [2F, 1, n_fft]: a DFT basis as a conv kernel
    if weight_input and len(dims) == 3 and dims[:2] == [1, 1]:
        return "dft bases/windows"  # [1, 1, n_fft]: the overlap-add envelope's window
    if weight_input:
        return "conv/linear float"
    if len(dims) <= 1 or math.prod(dims) == max(dims):
        return "norms/biases"
    return "codebooks"


def graph_tensors(path: str | Path) -> list[dict]:
    """``{name, dims, dtype, category, bytes, external}`` for every initializer and Constant tensor."""
    model = onnx.load(str(path), load_external_data=False)
    uses: dict[str, set[tuple[str, int]]] = {}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            uses.setdefault(name, set()).add((node.op_type, index))
    tensors = [(init.name, init) for init in model.graph.initializer]
    tensors += [
        (node.output[0], node.attribute[0].t)
        for node in model.graph.node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
    ]
    out = []
    for name, tensor in tensors:
        dims = [int(d) for d in tensor.dims]
        out.append(
            {
                "name": name,
                "dims": dims,
                "dtype": tensor.data_type,
                "category": _classify(name, dims, tensor.data_type, uses.get(name, set())),
                "bytes": _tensor_bytes(tensor),
                "external": tensor.data_location == TensorProto.EXTERNAL,
            }
        )
    return out


def bundle_size_breakdown(bundle: str | Path) -> dict[str, int]:
    """Stored bytes per category (see the module docstring) of an ONNX bundle folder, plus
    ``"derived (rebuilt)"`` and ``"total"`` (every file except the manifest)."""
    root = Path(bundle)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    totals = dict.fromkeys(CATEGORIES, 0)
    totals["derived (rebuilt)"] = 0
    npz_arrays: dict[str, int] = {}
    npz_files = set()
    for graph in manifest["graphs"].values():
        if graph["runtime"] != "onnxruntime":
            continue
        path = root / graph["file"]
        tensors = {t["name"]: t for t in graph_tensors(path)}
        inline = sum(t["bytes"] for t in tensors.values() if not t["external"])
        totals["graph structure"] += path.stat().st_size - inline
        for t in tensors.values():
            if not t["external"]:
                totals[t["category"]] += t["bytes"]
        for entry in graph.get("derived", {}).get("initializers", []):
            totals["derived (rebuilt)"] += entry["length"]
        extra = graph.get("extra", {})
        if extra.get("weights_file"):
            npz_files.add(extra["weights_file"])
            arrays = npz_arrays or _npz_sizes(root / extra["weights_file"])
            npz_arrays = arrays
            for entry in extra.get("weights", []):
                key = entry["key"]
                if entry.get("encoding", "packed") == "packed":
                    totals["packed weights"] += sum(arrays[f"{key}.{p}"] for p in ("codes", "scale", "zero"))
                else:
                    category = tensors[entry["name"]]["category"]
                    totals[category] += arrays[f"{key}.values"]
    for file in npz_files:
        totals["container"] += (root / file).stat().st_size - sum(npz_arrays.values())
    totals["total"] = sum(entry["bytes"] for entry in manifest["files"].values())
    return totals


def _npz_sizes(path: Path) -> dict[str, int]:
    """Array name -> data bytes of an .npz (read without pickle)."""
    sizes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            array = np.load(io.BytesIO(data), allow_pickle=False)
            sizes[info.filename.removesuffix(".npy")] = int(array.nbytes)
    return sizes
