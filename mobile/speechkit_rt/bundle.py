"""Open and verify a speechkit bundle: a folder (or a .zip of it) with ``manifest.json`` plus graph files.

The runtime trusts nothing it has not checked. :meth:`Bundle.open` refuses an unknown ``format`` or a
newer ``format_version``, checks the manifest by hand against the rules of ``manifest.schema.json``
(the runtime stays free of the ``jsonschema`` package), then checks that the files on disk are exactly
the ones the manifest lists, each with its byte size and sha256. A zip is unpacked into a temporary
folder first, refusing absolute paths, ``..``, symlinks and archives that unpack to more than
``max_unzipped_bytes`` (zip bombs). Every refusal is a :class:`~speechkit_rt.errors.BundleError` that
names the file and the problem. Weight blobs are read with ``np.load(..., allow_pickle=False)`` only;
this module never unpickles anything.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "decoder.onnx").write_bytes(b"graph")
    >>> tensor = {"name": "codes", "dtype": "int64", "shape": ["B", 8, "T"]}
    >>> manifest = {
    ...     "format": "speechkit-bundle", "format_version": 1, "task": "codec", "model_kind": "rvq_codec",
    ...     "model_name": "demo", "sample_rate": 16000, "frame_rate": 50.0,
    ...     "token_layout": {"num_codebooks": 8, "codebook_sizes": [1024] * 8},
    ...     "graphs": {"decoder": {"file": "decoder.onnx", "runtime": "onnxruntime",
    ...                            "inputs": [tensor], "outputs": [{**tensor, "name": "audio"}]}},
    ...     "quantization": {"mode": "none"}, "files": hash_files(root), "speechkit_version": "0.1.0",
    ...     "created": "2025-01-01T00:00:00Z", "metrics": {}, "extra": {}}
    >>> _ = (root / "manifest.json").write_text(json.dumps(manifest))
    >>> with Bundle.open(root) as bundle:
    ...     bundle.graph("decoder")["file"], bundle.read_bytes("decoder.onnx")
    ('decoder.onnx', b'graph')
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from speechkit_rt import derived
from speechkit_rt.errors import BundleError

logger = logging.getLogger(__name__)

FORMAT = "speechkit-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "manifest.schema.json"  # shipped next to this module; the exporter validates with it
MAX_MANIFEST_BYTES = 16 << 20
MAX_UNZIPPED_BYTES = 2 << 30  # on-device models are tens of MB; 2 GiB leaves room yet stops zip bombs
MAX_ZIP_MEMBERS = 10_000

TASKS = ("codec", "tts", "asr", "speaker", "music", "enhance")
RUNTIMES = ("onnxruntime", "coreml")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MODEL_KIND = re.compile(r"[a-z0-9_]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")

# Key -> expected JSON type (int: integer, float: number, None: null), as in manifest.schema.json.
_TOP_LEVEL = {
    "format": str, "format_version": int, "task": str, "model_kind": str, "model_name": str,
    "sample_rate": int, "frame_rate": float, "token_layout": dict, "graphs": dict, "quantization": dict,
    "files": dict, "speechkit_version": str, "created": str, "metrics": dict, "extra": dict,
}  # fmt: skip
_TOKEN_LAYOUT = {
    "num_codebooks": int,
    "codebook_sizes": list,
    "global_codebook_sizes": list,
    "bitrates_bps": list,
}
_GRAPH = {
    "file": str, "runtime": str, "inputs": list, "outputs": list, "state": list, "derived": dict, "extra": dict,
}  # fmt: skip
_TENSOR = {"name": str, "dtype": str, "shape": list}
_STATE_PAIR = {"input": str, "output": str}
_QUANTIZATION = {
    "mode": str,
    "bits": (int, None),
    "group_size": (int, None),
    "method": (str, None),
    "details": dict,
}
_FILE_ENTRY = {"sha256": str, "bytes": int}
_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "an object",
    list: "an array",
    None: "null",
}


def is_relative_path(rel: str) -> bool:
    """Whether ``rel`` is a safe POSIX path inside a bundle: no leading '/', '..', '.', '\\\\', ':' or control char.

    Example:
        >>> is_relative_path("codec.mlpackage/Data/weight.bin"), is_relative_path("../evil")
        (True, False)
    """
    if any(c in "\\:" or ord(c) < 32 for c in rel):
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path) -> dict[str, Path]:
    """Every regular file under ``root`` (walking into .mlpackage folders) except the root manifest.json.

    Returns:
        ``{posix relative path: absolute Path}``, sorted by path.

    Raises:
        BundleError: on a symlink or a special file (a link could point outside the bundle).
    """
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: links are refused below
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise BundleError(f"{rel}: symlinks are not allowed in a bundle")
            if name in filenames and not path.is_file():
                raise BundleError(f"{rel}: not a regular file")
            if name in filenames and rel != MANIFEST_NAME:
                found[rel] = path
    return dict(sorted(found.items()))


def hash_files(root: Path) -> dict[str, dict[str, Any]]:
    """The manifest's ``files`` entry for a folder: ``{relative path: {"sha256": hex, "bytes": size}}``."""
    return {
        rel: {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        for rel, path in list_files(root).items()
    }


def _matches(value: Any, kind: Any) -> bool:
    """JSON Schema type semantics: bool is not a number, and 2.0 counts as an integer."""
    if isinstance(kind, tuple):
        return any(_matches(value, k) for k in kind)
    if kind is None:
        return value is None
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _fail(where: str, problem: str) -> NoReturn:
    raise BundleError(f"manifest.json: {where} {problem}")


def _check_object(obj: Any, spec: dict, required: tuple[str, ...], where: str, closed: bool = True) -> None:
    """Required keys present, no unknown keys (when ``closed``), every known key of its type."""
    if not isinstance(obj, dict):
        _fail(where, "must be an object")
    for key in required:
        if key not in obj:
            _fail(where, f"lacks required key {key!r}")
    for key, value in obj.items():
        if key not in spec:
            if closed:
                _fail(where, f"has unknown key {key!r} (format_version {FORMAT_VERSION} does not define it)")
            continue
        kind = spec[key]
        if not _matches(value, kind):
            names = " or ".join(_TYPE_NAMES[k] for k in (kind if isinstance(kind, tuple) else (kind,)))
            _fail(f"{where}.{key}", f"must be {names}, got {type(value).__name__}")


def _check_list_items(values: list, where: str, kind: Any, minimum: float) -> None:
    for i, value in enumerate(values):
        if not _matches(value, kind) or value < minimum:
            _fail(f"{where}[{i}]", f"must be {_TYPE_NAMES[kind]} >= {minimum}, got {value!r}")


def _check_token_layout(layout: dict) -> None:
    _check_object(layout, _TOKEN_LAYOUT, ("num_codebooks", "codebook_sizes"), "token_layout", closed=False)
    if layout["num_codebooks"] < 0:
        _fail("token_layout.num_codebooks", "must be >= 0")
    # (key, item type, minimum): sizes are integers >= 1, bitrates numbers >= 0.
    for key, kind, minimum in (
        ("codebook_sizes", int, 1),
        ("global_codebook_sizes", int, 1),
        ("bitrates_bps", float, 0),
    ):
        if key in layout:
            _check_list_items(layout[key], f"token_layout.{key}", kind, minimum)
    # Cross-field rules a JSON schema cannot state.
    for key in ("codebook_sizes", "bitrates_bps"):
        if key in layout and len(layout[key]) != layout["num_codebooks"]:
            _fail(
                f"token_layout.{key}",
                f"has {len(layout[key])} entries for {layout['num_codebooks']} codebooks",
            )


def _check_tensors(tensors: list, where: str) -> set[str]:
    if not tensors:
        _fail(where, "must list at least one tensor")
    names = set()
    for i, tensor in enumerate(tensors):
        at = f"{where}[{i}]"
        _check_object(tensor, _TENSOR, tuple(_TENSOR), at)
        if not tensor["name"]:
            _fail(f"{at}.name", "must not be empty")
        if tensor["name"] in names:
            _fail(f"{at}.name", f"repeats {tensor['name']!r}")
        names.add(tensor["name"])
        if tensor["dtype"] not in DTYPES:
            _fail(f"{at}.dtype", f"must be one of {DTYPES}, got {tensor['dtype']!r}")
        for axis in tensor["shape"]:
            if not (_matches(axis, int) and axis >= 0) and not (isinstance(axis, str) and axis):
                _fail(f"{at}.shape", f"entries must be sizes >= 0 or axis names, got {axis!r}")
    return names


def _check_graph(name: str, graph: dict, files: dict) -> None:
    where = f"graphs.{name}"
    if not _NAME.fullmatch(name):
        _fail(where, "is not a valid graph name (letters, digits, '_', '.', '-')")
    _check_object(graph, _GRAPH, ("file", "runtime", "inputs", "outputs"), where)
    if graph["runtime"] not in RUNTIMES:
        _fail(f"{where}.runtime", f"must be one of {RUNTIMES}, got {graph['runtime']!r}")
    _check_tensors(graph["inputs"], f"{where}.inputs")
    _check_tensors(graph["outputs"], f"{where}.outputs")
    _check_state(graph, where)
    if "derived" in graph:  # recipes of tensors rebuilt at load (speechkit_rt.derived)
        derived.check_section(graph["derived"], f"{where}.derived")
        if graph["derived"]["location"] in files:
            _fail(f"{where}.derived.location", "names a bundle file; it must be a virtual location")
    file = graph["file"]
    # A Core ML .mlpackage is a folder: it is listed through the files inside it.
    if not is_relative_path(file) or not (file in files or any(rel.startswith(file + "/") for rel in files)):
        _fail(f"{where}.file", f"references {file!r}, which manifest.json 'files' does not list")


def _check_state(graph: dict, where: str) -> None:
    """State pairs: each input and output exists once, agree in dtype and in a fixed shape.

    The convention of a step graph: state starts as zeros of the input's declared shape and dtype
    (so that shape must be fully fixed) and after each call the paired output is fed back as that
    input.
    """
    inputs = {tensor["name"]: tensor for tensor in graph["inputs"]}
    outputs = {tensor["name"]: tensor for tensor in graph["outputs"]}
    seen: set[tuple[str, str]] = set()
    for i, pair in enumerate(graph.get("state", [])):
        at = f"{where}.state[{i}]"
        _check_object(pair, _STATE_PAIR, tuple(_STATE_PAIR), at)
        source, sink = inputs.get(pair["input"]), outputs.get(pair["output"])
        if source is None:
            _fail(f"{at}.input", f"names {pair['input']!r}, which is not one of the graph's inputs")
        if sink is None:
            _fail(f"{at}.output", f"names {pair['output']!r}, which is not one of the graph's outputs")
        for side in ("input", "output"):
            if (side, pair[side]) in seen:
                _fail(f"{at}.{side}", f"repeats {pair[side]!r} (each state tensor is paired once)")
            seen.add((side, pair[side]))
        if not all(_matches(axis, int) for axis in source["shape"]):
            _fail(f"{at}.input", f"{pair['input']!r} must have a fixed shape (state starts as zeros of it)")
        if (sink["dtype"], list(sink["shape"])) != (source["dtype"], list(source["shape"])):
            _fail(
                at,
                f"pairs {pair['input']!r} ({source['dtype']} {source['shape']}) with {pair['output']!r} "
                f"({sink['dtype']} {sink['shape']}): dtype and shape must agree",
            )


def _check_files(files: dict) -> None:
    for rel, entry in files.items():
        if not is_relative_path(rel) or rel == MANIFEST_NAME:
            _fail("files", f"has an unsafe or reserved path {rel!r}")
        _check_object(entry, _FILE_ENTRY, ("sha256", "bytes"), f"files[{rel!r}]")
        if not _SHA256.fullmatch(entry["sha256"]):
            _fail(f"files[{rel!r}].sha256", "must be 64 lowercase hex digits")
        if entry["bytes"] < 0:
            _fail(f"files[{rel!r}].bytes", "must be >= 0")


def check_version(manifest: Any) -> None:
    """Refuse anything but a speechkit bundle of a ``format_version`` this runtime reads.

    Raises:
        BundleError: naming the bundle's version and the supported one.
    """
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"manifest.json: not a speechkit bundle (format {found!r}, expected {FORMAT!r})")
    version = manifest.get("format_version")
    if not _matches(version, int) or version < 1:
        raise BundleError(f"manifest.json: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"manifest.json: bundle format_version {version} is newer than this runtime supports "
            f"({FORMAT_VERSION}): upgrade speechkit_rt"
        )


def validate_manifest(manifest: Any) -> None:
    """Check a manifest against the rules of manifest.schema.json by hand, plus cross-field rules.

    Raises:
        BundleError: naming the first offending key.
    """
    check_version(manifest)
    _check_object(manifest, _TOP_LEVEL, tuple(_TOP_LEVEL), "top level")
    if manifest["task"] not in TASKS:
        _fail("task", f"must be one of {TASKS}, got {manifest['task']!r}")
    if not _MODEL_KIND.fullmatch(manifest["model_kind"]):
        _fail("model_kind", f"must be lowercase letters, digits and '_', got {manifest['model_kind']!r}")
    for key in ("model_name", "speechkit_version"):
        if not manifest[key]:
            _fail(key, "must not be empty")
    if manifest["sample_rate"] < 1 or manifest["frame_rate"] <= 0:
        _fail("sample_rate/frame_rate", "must be positive")
    if not _CREATED.match(manifest["created"]):
        _fail("created", f"must be an ISO 8601 time (YYYY-MM-DDThh:mm:ss...), got {manifest['created']!r}")
    _check_token_layout(manifest["token_layout"])
    quantization = manifest["quantization"]
    _check_object(quantization, _QUANTIZATION, ("mode",), "quantization")
    if not quantization["mode"]:
        _fail("quantization.mode", "must not be empty")
    if quantization.get("bits") is not None and not 1 <= quantization["bits"] <= 32:
        _fail("quantization.bits", f"must be in 1..32, got {quantization['bits']!r}")
    if quantization.get("group_size") is not None and quantization["group_size"] < 1:
        _fail("quantization.group_size", f"must be >= 1, got {quantization['group_size']!r}")
    for key, value in manifest["metrics"].items():
        if not _matches(value, float):
            _fail(f"metrics.{key}", f"must be a number, got {type(value).__name__}")
    _check_files(manifest["files"])
    if not manifest["graphs"]:
        _fail("graphs", "must name at least one graph")
    for name, graph in manifest["graphs"].items():
        _check_graph(name, graph, manifest["files"])


def _refuse_constant(name: str) -> NoReturn:
    raise BundleError(f"manifest.json: {name} is not allowed (numbers must be finite)")


def read_manifest(root: Path) -> dict:
    """Parse ``root/manifest.json`` (size-limited, finite numbers only); no validation.

    Raises:
        BundleError: when it is missing, a symlink, too large or not JSON.
    """
    path = Path(root) / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{root}: no manifest.json (not a speechkit bundle)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"manifest.json: {path.stat().st_size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        )
    try:
        return json.loads(path.read_bytes(), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"manifest.json: not valid JSON ({err})") from err


def _verify_files(root: Path, listed: dict) -> None:
    """The files on disk are exactly the listed ones, each with its size and sha256."""
    present = list_files(root)
    unlisted = sorted(set(present) - set(listed))
    if unlisted:
        raise BundleError(
            f"{unlisted[0]}: present in the bundle but not listed in manifest.json 'files' "
            f"({len(unlisted)} unlisted file(s) in all); refused, since it cannot be hash-checked"
        )
    missing = sorted(set(listed) - set(present))
    if missing:
        raise BundleError(
            f"{missing[0]}: listed in manifest.json but missing from the bundle ({len(missing)} missing)"
        )
    for rel, entry in listed.items():
        size = present[rel].stat().st_size
        if size != entry["bytes"]:
            raise BundleError(
                f"size mismatch for {rel}: {size} bytes, manifest says {entry['bytes']}: bundle truncated or corrupted"
            )
        if sha256_of(present[rel]) != entry["sha256"]:
            raise BundleError(f"sha256 mismatch for {rel}: bundle tampered or corrupted")


def _unzip(zip_path: Path, dest: Path, max_bytes: int) -> Path:
    """Extract a bundle zip into ``dest`` safely; returns the bundle root inside it.

    The root is ``dest`` itself, or the single top-level folder when the zip holds ``name/manifest.json``
    (what ``zip -r name.zip name`` makes). Sizes are counted while inflating, not taken from the headers.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise BundleError(f"{zip_path.name}: not a readable zip ({err})") from err
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise BundleError(f"{zip_path.name}: {len(members)} members, over the limit of {MAX_ZIP_MEMBERS}")
        declared = sum(member.file_size for member in members)
        if declared > max_bytes:
            raise BundleError(f"{zip_path.name}: unzips to {declared} bytes, over the {max_bytes}-byte limit")
        total = 0
        for member in members:
            rel = member.filename.rstrip("/") if member.is_dir() else member.filename
            if stat.S_ISLNK(member.external_attr >> 16):
                raise BundleError(f"{zip_path.name}: member {member.filename!r} is a symlink; refused")
            if not is_relative_path(rel):
                raise BundleError(f"{zip_path.name}: member {member.filename!r} has an unsafe path; refused")
            target = dest / rel
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                # "xb": a repeated name (or a file/folder clash) fails instead of overwriting.
                with archive.open(member) as source, open(target, "xb") as sink:
                    while chunk := source.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise BundleError(f"{zip_path.name}: unzips to over the {max_bytes}-byte limit")
                        sink.write(chunk)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as err:
                raise BundleError(f"{zip_path.name}: cannot extract {member.filename!r} ({err})") from err
    entries = list(dest.iterdir())
    if not (dest / MANIFEST_NAME).exists() and len(entries) == 1 and (entries[0] / MANIFEST_NAME).is_file():
        return entries[0]
    return dest


class Bundle:
    """A verified speechkit bundle, opened from a folder or a .zip; use :meth:`open`.

    Attributes:
        manifest: the parsed manifest.json (a dict; treat it as read-only).
        root: the folder the bundle's files lie in (a temporary folder for a zip, removed by :meth:`close`).

    Example:
        >>> Bundle.open("/no/such/bundle")
        Traceback (most recent call last):
        ...
        speechkit_rt.errors.BundleError: /no/such/bundle: no such bundle folder or .zip
    """

    def __init__(
        self, root: Path, manifest: dict, tempdir: tempfile.TemporaryDirectory | None = None
    ) -> None:
        self.root = root
        self.manifest = manifest
        self._tempdir = tempdir
        self._closed = False

    @classmethod
    def open(cls, path: str | os.PathLike, *, max_unzipped_bytes: int = MAX_UNZIPPED_BYTES) -> Bundle:
        """Open a bundle folder or .zip and verify its manifest, version and every file's size and sha256.

        Args:
            path: the bundle folder, or a .zip of it.
            max_unzipped_bytes: refuse a zip that unpacks to more than this many bytes.

        Returns:
            The verified bundle (a context manager; close it to remove a zip's temporary folder).

        Raises:
            BundleError: naming the file and the problem.
        """
        path = Path(path)
        if path.is_dir():
            return cls(path, _verified_manifest(path))
        if not path.exists():
            raise BundleError(f"{path}: no such bundle folder or .zip")
        if not zipfile.is_zipfile(path):
            raise BundleError(f"{path}: neither a bundle folder nor a .zip")
        tempdir = tempfile.TemporaryDirectory(prefix="speechkit-bundle-")
        try:
            root = _unzip(path, Path(tempdir.name), max_unzipped_bytes)
            return cls(root, _verified_manifest(root), tempdir)
        except BaseException:
            tempdir.cleanup()
            raise

    def graph(self, name: str) -> dict:
        """The manifest entry of graph ``name``: ``{file, runtime, inputs, outputs[, state]}``."""
        graphs = self.manifest["graphs"]
        if name not in graphs:
            raise BundleError(
                f"bundle {self.manifest['model_name']!r} has no graph {name!r} (it has {sorted(graphs)})"
            )
        return graphs[name]

    def path_of(self, relative: str) -> Path:
        """The path of a listed file, or of a listed folder such as ``decoder.mlpackage``."""
        self._check_open()
        files = self.manifest["files"]
        if relative not in files and not any(rel.startswith(relative + "/") for rel in files):
            raise BundleError(f"{relative}: not listed in the bundle's manifest.json 'files'")
        return self.root / relative

    def read_bytes(self, relative: str) -> bytes:
        """The content of a listed file, hash-checked again (the folder may have changed since open)."""
        path = self.path_of(relative)
        entry = self.manifest["files"].get(relative)
        if entry is None:
            raise BundleError(f"{relative}: is a folder, not a file")
        data = path.read_bytes()
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleError(f"sha256 mismatch for {relative}: bundle tampered or corrupted")
        return data

    def load_arrays(self, relative: str) -> dict[str, np.ndarray]:
        """Arrays of a listed .npz (or .npy, under the key ``"array"``), hash-checked, never unpickled."""
        data = self.read_bytes(relative)
        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"array": loaded}
            with loaded:
                return {key: loaded[key] for key in loaded.files}
        except (ValueError, OSError, EOFError) as err:  # object arrays need pickle: refused
            raise BundleError(f"{relative}: not a plain .npy/.npz array file ({err})") from err

    def close(self) -> None:
        """Remove the temporary folder of a zip bundle; paths from :meth:`path_of` stop being valid."""
        self._closed = True
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def _check_open(self) -> None:
        if self._closed:
            raise BundleError(f"bundle {self.manifest['model_name']!r} is closed")

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.manifest
        return f"Bundle({m['model_name']!r}, task={m['task']!r}, graphs={sorted(m['graphs'])}, root={str(self.root)!r})"


def _verified_manifest(root: Path) -> dict:
    manifest = read_manifest(root)
    validate_manifest(manifest)
    _verify_files(root, manifest["files"])
    logger.debug("verified bundle %s: %d files", root, len(manifest["files"]))
    return manifest
