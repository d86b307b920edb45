"""Strip deterministic tensors (DFT bases, windows) from exported graphs, leaving recipes to rebuild them.

A codec's STFT / iSTFT modules carry fixed DFT bases ([2F, 1, n_fft] float32: 1.6 MB each at
n_fft = 640) and windows, which ``torch.onnx.export`` bakes into the graphs. They are functions of
n_fft and the window alone, so a bundle needs only the recipe: :func:`strip_derived` finds the graph
tensors whose float32 bytes equal a recipe's (built with the same ``speechkit_rt.features`` functions
the torch modules are built from), turns each into an initializer with an ONNX external-data reference
to ``<graph>.derived.bin`` (a location no bundle holds) and returns the manifest's
``graphs.<name>.derived`` object, with the sha256 of the rebuilt bytes. The runtime
(``speechkit_rt.derived``) rebuilds them, checks that hash and supplies them as external initializers.
Matching is by value, so a basis that a quantiser rewrote (an int8 Conv weight) is left in place.

Example:
    >>> from speechkit.features import ISTFT
    >>> [(r["kind"], r.get("direction", r.get("power"))) for r in recipes_for(ISTFT(64, 16))]
    [('dft_basis', 'inverse'), ('window', 1), ('window', 2)]
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from torch import nn

from speechkit.features import ISTFT, STFT
from speechkit_export.weight_blobs import _make_external
from speechkit_rt import derived

logger = logging.getLogger(__name__)

_ALIGN = 64  # byte alignment of each tensor in the virtual external-data file


def recipes_for(model: nn.Module) -> list[dict[str, Any]]:
    """The recipes (without name, shape, offset, length) of every STFT / ISTFT module of a model, deduplicated.

    Each recipe carries ``values`` (the float32 tensor, flat) for matching; it is not written to the manifest.
    """
    recipes: dict[tuple, dict[str, Any]] = {}
    for module in model.modules():
        if not isinstance(module, (STFT, ISTFT)):
            continue
        common = {"n_fft": int(module.n_fft), "win_length": int(module.win_length), "window": "hann_periodic"}
        direction = "forward" if isinstance(module, STFT) else "inverse"
        for extra in ({"kind": "dft_basis", "direction": direction}, {"kind": "window", "power": 1},
                      {"kind": "window", "power": 2}):  # fmt: skip
            recipe = {"kind": extra["kind"], **common, **{k: v for k, v in extra.items() if k != "kind"}}
            key = tuple(sorted(recipe.items()))
            if key not in recipes:
                recipes[key] = {**recipe, "values": _values(recipe)}
    return list(recipes.values())


def _values(recipe: dict[str, Any]) -> np.ndarray:
    """The recipe's tensor, flat float32, computed by the runtime's own code (speechkit_rt.derived)."""
    size = _values_size(recipe)
    return derived.compute({**recipe, "name": "-", "shape": [size]}).reshape(-1)


def _values_size(recipe: dict[str, Any]) -> int:
    bins = recipe["n_fft"] // 2 + 1
    return 2 * bins * recipe["n_fft"] if recipe["kind"] == "dft_basis" else recipe["n_fft"]


def _index(recipes: Sequence[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(r["values"].size, hashlib.sha256(r["values"].tobytes()).hexdigest()): r for r in recipes}


def _inline_float(tensor: TensorProto) -> np.ndarray | None:
    if tensor.data_type != TensorProto.FLOAT or tensor.data_location == TensorProto.EXTERNAL:
        return None
    return np.ascontiguousarray(numpy_helper.to_array(tensor), dtype="<f4")


def _matches(model: onnx.ModelProto, recipes: Sequence[dict[str, Any]]) -> list[tuple[str, Any, dict]]:
    """(name, initializer or Constant node, recipe) of every graph tensor equal to a recipe's tensor."""
    index = _index(recipes)
    found = []

    def match(tensor: TensorProto) -> dict[str, Any] | None:
        if math.prod(tensor.dims) not in {size for size, _ in index}:
            return None
        values = _inline_float(tensor)
        if values is None:
            return None
        return index.get((values.size, hashlib.sha256(values.tobytes()).hexdigest()))

    for init in model.graph.initializer:
        recipe = match(init)
        if recipe is not None:
            found.append((init.name, init, recipe))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            recipe = match(node.attribute[0].t)
            if recipe is not None:
                found.append((node.output[0], node, recipe))
    return found


def derived_names(path: str | Path, recipes: Sequence[dict[str, Any]]) -> set[str]:
    """Names of the tensors of an ONNX file that :func:`strip_derived` would strip."""
    model = onnx.load(str(path), load_external_data=False)
    return {name for name, _, _ in _matches(model, recipes)}


def strip_derived(
    src: str | Path, dst: str | Path, graph_name: str, recipes: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """Write ``src`` to ``dst`` with every recipe-equal tensor replaced by an external-data reference.

    Args:
        src: an ONNX file (its other external-data references, e.g. packed weights, are kept as they are).
        dst: where to write it (only when something was stripped).
        graph_name: prefix of the location ``<graph_name>.derived.bin``.
        recipes: from :func:`recipes_for`.

    Returns:
        The manifest's ``graphs.<name>.derived`` object, or None when no tensor matched (``dst`` not written).
    """
    model = onnx.load(str(src), load_external_data=False)
    found = _matches(model, recipes)
    if not found:
        return None
    location = f"{graph_name}.derived.bin"
    entries, offset, constants = [], 0, set()
    for name, holder, recipe in found:
        if isinstance(holder, onnx.NodeProto):  # a Constant node becomes an initializer of the same name
            model.graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(holder.attribute[0].t), name)
            )
            constants.add(name)
            init = model.graph.initializer[-1]
        else:
            init = holder
        shape = [int(d) for d in init.dims]
        length = 4 * math.prod(shape)
        params = {k: v for k, v in recipe.items() if k != "values"}
        entries.append({"name": name, **params, "dtype": "float32", "shape": shape, "offset": offset,
                        "length": length, "sha256": derived.sha256_hex(recipe["values"])})  # fmt: skip
        _make_external(init, location, offset, length)
        offset += math.ceil(length / _ALIGN) * _ALIGN
    keep = [n for n in model.graph.node if not (n.op_type == "Constant" and n.output[0] in constants)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    onnx.save(model, str(dst))
    section = {"location": location, "initializers": entries}
    derived.check_section(section, f"graphs.{graph_name}.derived")
    logger.info("%s: %d derived initializers (%d bytes) stripped", graph_name, len(entries), offset)
    return section
