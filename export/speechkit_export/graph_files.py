"""The graph-file steps every ONNX export shares, between the export and the bundle writer.

* :func:`strip_derived_graphs`: the DFT bases and windows become recipes the runtime rebuilds
  (:mod:`speechkit_export.derived_initializers`);
* :func:`pack_graph_weights`: the weights of a torch-side quantised model (rtn / gptq / decoupleq)
  move out of the graphs into ``weights.npz`` (:mod:`speechkit_export.weight_blobs`).

The codec pipeline (:mod:`speechkit_export.pipeline`) and the speaker one
(:mod:`speechkit_export.speaker_pipeline`) call them in that order on the same graph specs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from speechkit_export.derived_initializers import derived_names, strip_derived
from speechkit_export.onnx_graphs import GraphSpec
from speechkit_export.weight_blobs import FLOAT16_MIN_ELEMENTS, externalize_weights, save_npz

WEIGHTS_FILE = "weights.npz"


def strip_derived_graphs(
    graphs: dict[str, GraphSpec],
    files: dict[str, Path],
    manifests: dict[str, dict],
    recipes: list,
    work_dir: Path,
) -> tuple[dict[str, Path], int]:
    """Replace the DFT bases and windows of every graph file by recipes (``derived_initializers``).

    Args:
        graphs: the graphs (their ``file`` names key ``files``).
        files: bundle file name -> current source file.
        manifests: graph name -> manifest entry; a stripped graph gets its ``derived`` section.
        recipes: from :func:`~speechkit_export.derived_initializers.recipes_for`.
        work_dir: scratch folder (a ``derived`` folder is made in it).

    Returns:
        (the bundle files with the stripped graphs, bytes stripped).
    """
    (work_dir / "derived").mkdir()
    out = dict(files)
    stripped = 0
    for name, spec in graphs.items():
        dst = work_dir / "derived" / spec.file
        section = strip_derived(files[spec.file], dst, name, recipes)
        if section is not None:
            out[spec.file] = dst
            manifests[name]["derived"] = section
            stripped += sum(entry["length"] for entry in section["initializers"])
    return out, stripped


def pack_graph_weights(
    graphs: dict[str, GraphSpec],
    layers: dict,
    manifests: dict[str, dict],
    scope: list[str],
    recipes: list,
    work_dir: Path,
) -> tuple[dict[str, GraphSpec], dict[str, Path], list[str], dict[str, Any]]:
    """Move the quantised weights (and, in quantised graphs, the other large float weights as
    float16) out of the graphs into weights.npz (see weight_blobs).

    Args:
        graphs: the float32 graphs exported from the quantised model.
        layers: layer name -> LayerQuantization (``weight_blobs.quantize_layers``).
        manifests: graph name -> manifest entry; graphs with moved weights get ``extra.weights*``.
        scope: the graphs that are quantised (their other large float tensors become float16).
        recipes: derived-initializer recipes (those tensors stay float32).
        work_dir: scratch folder.

    Returns:
        (full graphs as the runtime rebuilds them, bundle files, quantised layers found in no graph,
        quantisation details).
    """
    arrays: dict[str, np.ndarray] = {}
    quantized = {name: layer.quantized for name, layer in layers.items()}
    files: dict[str, Path] = {}
    full: dict[str, GraphSpec] = {}
    for folder in ("packed", "full"):
        (work_dir / folder).mkdir()
    placed: set[str] = set()
    for name, spec in graphs.items():
        dst, full_dst = work_dir / "packed" / spec.file, work_dir / "full" / spec.file
        float16 = FLOAT16_MIN_ELEMENTS if name in scope else None  # a float graph stays exact
        keep = derived_names(spec.path, recipes)  # rebuilt at load: stay float32 for the recipe
        entries = externalize_weights(spec.path, dst, name, quantized, arrays, full_dst, float16, keep)
        files[spec.file], full[name] = dst, dataclasses.replace(spec, path=full_dst)
        placed.update(entry["layer"] for entry in entries if "layer" in entry)
        if entries:
            manifests[name]["extra"] = {
                "weights_file": WEIGHTS_FILE,
                "weights_location": f"{name}.weights.bin",
                "weights": entries,
            }
    files[WEIGHTS_FILE] = save_npz(work_dir / WEIGHTS_FILE, arrays)
    details = {
        "scale_dtype": str(next((a.dtype for k, a in arrays.items() if k.endswith(".scale")), "-")),
        "float16_tensors": sum(key.endswith(".values") for key in arrays),
    }
    return full, files, sorted(set(quantized) - placed), details
