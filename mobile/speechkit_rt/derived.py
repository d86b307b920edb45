"""Derived initializers: deterministic graph tensors a bundle ships as a recipe, rebuilt at load.

The STFT / iSTFT DFT bases of a codec (2 x 1.6 MB float32 at n_fft = 640) and its windows are fixed
functions of a few numbers. The exporter strips them from the ``.onnx`` files (leaving an ONNX
external-data reference to a ``location`` no bundle contains) and records how to rebuild them; the
runtime rebuilds them with :mod:`speechkit_rt.features` (the definitions the torch model itself is
built from), checks the sha256 of the rebuilt float32 bytes against the recipe's, and hands them to
onnxruntime as external initializers (:func:`speechkit_rt.weights.materialize`). A recipe whose
rebuild does not hash to its ``sha256`` (a tampered or mistyped recipe, or a platform whose maths
differs) is refused, as is a kind this runtime does not know.

Manifest entry (``graphs.<name>.derived``)::

    "derived": {
        "location": "decoder.derived.bin",          external-data location the .onnx file references
        "initializers": [
            {"name": "/istft/Constant_1_output_0",  initializer name in the graph
             "kind": "dft_basis",                   speechkit_rt.features.dft_basis
             "n_fft": 640, "win_length": 640, "window": "hann_periodic", "direction": "inverse",
             "dtype": "float32", "shape": [642, 1, 640],
             "offset": 0, "length": 1643520,        bytes in the virtual external file (for runtimes
                                                    that take one in-memory file, as onnxruntime-web)
             "sha256": "..."},                      of the rebuilt C-order little-endian bytes
            {"name": "onnx::ConvTranspose_648", "kind": "window", "n_fft": 640, "win_length": 640,
             "window": "hann_periodic", "power": 2, "dtype": "float32", "shape": [1, 1, 640], ...}]}

Example:
    >>> entry = {"name": "w", "kind": "window", "n_fft": 8, "win_length": 8, "window": "hann_periodic",
    ...          "power": 1, "dtype": "float32", "shape": [8], "offset": 0, "length": 32}
    >>> entry["sha256"] = sha256_hex(compute(entry))
    >>> rebuild(entry).tolist()[:3]
    [0.0, 0.1464466154575348, 0.5]
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import numpy as np

from speechkit_rt import features
from speechkit_rt.errors import BundleError

WINDOWS = ("hann_periodic",)
# kind -> its parameter keys (besides name, kind, dtype, shape, offset, length, sha256).
KINDS: dict[str, tuple[str, ...]] = {
    "dft_basis": ("n_fft", "win_length", "window", "direction"),
    "window": ("n_fft", "win_length", "window", "power"),
}
COMMON_KEYS = ("name", "kind", "dtype", "shape", "offset", "length", "sha256")
_INT_KEYS = ("n_fft", "win_length", "power", "offset", "length")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_entry(entry: Any, where: str) -> None:
    """Refuse a malformed recipe: unknown kind, missing or unknown keys, bad values (no rebuild yet).

    Raises:
        BundleError: naming ``where`` and the problem.
    """
    if not isinstance(entry, dict):
        raise BundleError(f"manifest.json: {where} must be an object")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise BundleError(
            f"manifest.json: {where}.kind {kind!r} is not a derived-initializer kind this runtime can "
            f"rebuild ({', '.join(KINDS)}): upgrade speechkit_rt"
        )
    known = set(COMMON_KEYS) | set(KINDS[kind])
    missing = sorted(known - set(entry))
    unknown = sorted(set(entry) - known)
    if missing or unknown:
        raise BundleError(
            f"manifest.json: {where} ({kind}) lacks keys {missing} / has unknown keys {unknown}"
        )
    for key in _INT_KEYS:
        if key in entry and (
            isinstance(entry[key], bool) or not isinstance(entry[key], int) or entry[key] < 0
        ):
            raise BundleError(f"manifest.json: {where}.{key} must be an integer >= 0, got {entry[key]!r}")
    if not (isinstance(entry["name"], str) and entry["name"]):
        raise BundleError(f"manifest.json: {where}.name must be a non-empty string")
    if entry["window"] not in WINDOWS:
        raise BundleError(f"manifest.json: {where}.window must be one of {WINDOWS}, got {entry['window']!r}")
    if entry["dtype"] != "float32":
        raise BundleError(f"manifest.json: {where}.dtype must be 'float32', got {entry['dtype']!r}")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape
    ):
        raise BundleError(f"manifest.json: {where}.shape must be a list of positive integers, got {shape!r}")
    if entry["length"] != 4 * math.prod(shape):
        raise BundleError(f"manifest.json: {where}.length {entry['length']} is not 4 bytes x shape {shape}")
    if not 1 <= entry["win_length"] <= entry["n_fft"]:
        raise BundleError(f"manifest.json: {where}: need 1 <= win_length <= n_fft")
    if kind == "dft_basis" and entry["direction"] not in ("forward", "inverse"):
        raise BundleError(f"manifest.json: {where}.direction must be 'forward' or 'inverse'")
    if kind == "window" and entry["power"] not in (1, 2):
        raise BundleError(f"manifest.json: {where}.power must be 1 or 2")
    if not (isinstance(entry["sha256"], str) and _SHA256.fullmatch(entry["sha256"])):
        raise BundleError(f"manifest.json: {where}.sha256 must be 64 lowercase hex digits")


def compute(entry: dict[str, Any]) -> np.ndarray:
    """The tensor a (checked) recipe describes, float32 of ``entry["shape"]``, without the hash check.

    Raises:
        BundleError: the recipe's values make a tensor of another size than its shape.
    """
    if entry["kind"] == "dft_basis":
        values = features.dft_basis(entry["n_fft"], entry["win_length"], entry["direction"])
    else:
        values = features.window_power(entry["win_length"], entry["n_fft"], entry["power"])
    if values.size != math.prod(entry["shape"]):
        raise BundleError(
            f"derived initializer {entry['name']!r}: the {entry['kind']} recipe makes {values.size} values, "
            f"its shape {entry['shape']} needs {math.prod(entry['shape'])}"
        )
    return np.ascontiguousarray(values.reshape(entry["shape"]), dtype="<f4")


def sha256_hex(values: np.ndarray) -> str:
    """Hex sha256 of an array's float32 little-endian C-order bytes."""
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f4").tobytes()).hexdigest()


def rebuild(entry: dict[str, Any]) -> np.ndarray:
    """Rebuild one derived initializer and verify its sha256.

    Raises:
        BundleError: an unknown kind or malformed recipe, or a rebuild whose sha256 differs.
    """
    check_entry(entry, f"derived initializer {entry.get('name')!r}" if isinstance(entry, dict) else "derived")
    values = compute(entry)
    if sha256_hex(values) != entry["sha256"]:
        raise BundleError(
            f"derived initializer {entry['name']!r} ({entry['kind']}): the rebuilt tensor's sha256 differs "
            "from the manifest's: recipe tampered or corrupted (or this platform's float64 cos/sin differ)"
        )
    return values


def check_section(section: Any, where: str) -> None:
    """Check a graph's ``derived`` object: ``location`` plus ``initializers`` (recipes, names unique)."""
    if not isinstance(section, dict) or set(section) != {"location", "initializers"}:
        raise BundleError(
            f"manifest.json: {where} must be an object with exactly 'location' and 'initializers'"
        )
    location = section["location"]
    if not isinstance(location, str) or not location or any(c in location for c in "/\\:"):
        raise BundleError(f"manifest.json: {where}.location must be a plain file name, got {location!r}")
    entries = section["initializers"]
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"manifest.json: {where}.initializers must be a non-empty list")
    names = set()
    for i, entry in enumerate(entries):
        check_entry(entry, f"{where}.initializers[{i}]")
        if entry["name"] in names:
            raise BundleError(f"manifest.json: {where}.initializers[{i}] repeats the name {entry['name']!r}")
        names.add(entry["name"])


def graph_derived(graph: dict[str, Any]) -> dict[str, np.ndarray]:
    """Initializer name -> rebuilt, hash-verified float32 tensor for every recipe of a graph entry."""
    section = graph.get("derived")
    if not section:
        return {}
    return {entry["name"]: rebuild(entry) for entry in section["initializers"]}
