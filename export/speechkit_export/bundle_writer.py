"""Write a speechkit bundle: the one writer every exporter uses.

:func:`write_bundle` copies the graph and weight files into a staging folder next to ``out_dir``,
hashes every file (walking into .mlpackage folders), fills the fields the writer owns (``format``,
``format_version``, ``speechkit_version``, ``created``, ``files``), validates the manifest against
``manifest.schema.json`` (shipped by the runtime, ``speechkit_rt``, which owns the format) with the
``jsonschema`` package and against the runtime's own checks, writes ``manifest.json`` and only then
swaps the staging folder into place, so a failed export never leaves a half-written bundle. With
``zip=True`` it also writes a deterministic ``out_dir.with_suffix(".zip")`` (sorted entries, fixed
timestamps and permissions): the same inputs give the same bytes.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from speechkit_rt.bundle import Bundle
    >>> tensor = {"name": "codes", "dtype": "int64", "shape": ["B", 2, "T"]}
    >>> fields = {
    ...     "task": "codec", "model_kind": "rvq_codec", "model_name": "demo", "sample_rate": 16000,
    ...     "frame_rate": 50.0, "token_layout": {"num_codebooks": 2, "codebook_sizes": [1024, 1024]},
    ...     "graphs": {"decoder": {"file": "decoder.onnx", "runtime": "onnxruntime", "inputs": [tensor],
    ...                            "outputs": [{"name": "audio", "dtype": "float32", "shape": ["B", "T"]}]}},
    ...     "quantization": {"mode": "none"}}
    >>> out = write_bundle(Path(tempfile.mkdtemp()) / "demo", fields, {"decoder.onnx": b"graph"}, zip=True)
    >>> out.suffix, Bundle.open(out).read_bytes("decoder.onnx")
    ('.zip', b'graph')
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

from speechkit_rt.bundle import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SCHEMA_NAME,
    hash_files,
    is_relative_path,
    list_files,
    read_manifest,
    validate_manifest,
)
from speechkit_rt.errors import BundleError

logger = logging.getLogger(__name__)

# Fields the writer fills; an exporter may pass "created" (reproducible builds), not these.
WRITER_FIELDS = ("format", "format_version", "speechkit_version", "files")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can store: fixed, so zips are reproducible


def size_on_disk(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder (a bundle, an ``.mlpackage``).

    Example:
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "weights.bin").write_bytes(b"1234")
        >>> size_on_disk(folder), size_on_disk(folder / "weights.bin")
        (4, 4)
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def speechkit_version() -> str:
    """The installed speechkit version, or ``"0+unknown"`` when it is not installed as a package."""
    try:
        return importlib.metadata.version("speechkit")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def load_schema() -> dict:
    """The manifest JSON schema (draft 2020-12) shipped with ``speechkit_rt``."""
    return json.loads(resources.files("speechkit_rt").joinpath(SCHEMA_NAME).read_text(encoding="utf-8"))


def validate_manifest_schema(manifest: dict) -> None:
    """Validate a manifest against ``manifest.schema.json`` with the ``jsonschema`` package.

    Raises:
        BundleError: naming the first offending place (and how many more there are).
    """
    try:
        import jsonschema
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("the bundle writer needs jsonschema: pip install 'jsonschema>=4'") from err
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "top level"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BundleError(f"manifest.json does not match {SCHEMA_NAME} at {where}: {errors[0].message}{more}")


def write_bundle(
    out_dir: str | os.PathLike,
    manifest_fields: dict[str, Any],
    files: dict[str, Path | bytes],
    zip: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a verified bundle folder (and optionally its .zip) from graph files and manifest fields.

    Args:
        out_dir: the bundle folder to write. An existing bundle there is replaced; any other non-empty
            folder is refused unless ``overwrite``.
        manifest_fields: every manifest key except those the writer fills (:data:`WRITER_FIELDS`);
            ``metrics`` and ``extra`` default to ``{}``, ``created`` to now (UTC).
        files: bundle-relative POSIX path -> source file, source folder (an .mlpackage) or bytes.
        zip: also write ``out_dir.with_suffix(".zip")``, deterministically.
        overwrite: replace a non-empty ``out_dir`` that is not a bundle.

    Returns:
        The bundle folder, or the .zip when ``zip`` is true.

    Raises:
        BundleError: on a bad path or source, a field the writer owns, a manifest the schema or the
            runtime refuses, or an ``out_dir`` it must not replace.
    """
    out_dir = Path(out_dir)
    _check_inputs(manifest_fields, files)
    _check_out_dir(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shipped
        _copy_in(staging, files)
        manifest = _final_manifest(manifest_fields, hash_files(staging))
        text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
        (staging / MANIFEST_NAME).write_text(text, encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote bundle %s (%d files)", out_dir, len(manifest["files"]))
    if not zip:
        return out_dir
    zip_path = out_dir.with_suffix(".zip")
    _write_zip(out_dir, zip_path)
    return zip_path


def _check_inputs(manifest_fields: dict[str, Any], files: dict[str, Path | bytes]) -> None:
    owned = sorted(set(manifest_fields) & set(WRITER_FIELDS))
    if owned:
        raise BundleError(f"manifest_fields must not set {owned}: the bundle writer fills them")
    for rel, source in files.items():
        if not is_relative_path(rel) or rel == MANIFEST_NAME:
            raise BundleError(f"{rel!r}: not a safe bundle-relative path (or the reserved manifest.json)")
        if not isinstance(source, (bytes, bytearray)) and not Path(source).exists():
            raise BundleError(f"{rel}: source {source} does not exist")
        nested = [other for other in files if other.startswith(rel + "/")]
        if nested:
            raise BundleError(f"{rel}: both a file entry and the folder of {nested[0]!r}")


def _is_bundle(folder: Path) -> bool:
    try:
        return read_manifest(folder).get("format") == FORMAT
    except (BundleError, AttributeError):
        return False


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise BundleError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite and not _is_bundle(out_dir):
        raise BundleError(
            f"{out_dir}: a non-empty folder that is not a bundle; pass overwrite=True to replace it"
        )


def _copy_in(staging: Path, files: dict[str, Path | bytes]) -> None:
    for rel, source in sorted(files.items()):
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, (bytes, bytearray)):
            target.write_bytes(source)
        elif Path(source).is_dir():
            shutil.copytree(source, target)  # symlinks inside are copied as the files they point to
        else:
            shutil.copyfile(source, target)


def _final_manifest(manifest_fields: dict[str, Any], file_entries: dict[str, dict]) -> dict:
    """The fields plus the writer's, as plain JSON (tuples become lists), checked by schema and runtime."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    manifest = {"metrics": {}, "extra": {}, "created": created, **manifest_fields}
    manifest.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        speechkit_version=speechkit_version(),
        files=file_entries,
    )
    try:
        manifest = json.loads(json.dumps(manifest, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise BundleError(f"manifest fields are not plain finite JSON: {err}") from err
    validate_manifest_schema(manifest)
    validate_manifest(manifest)  # the runtime's cross-field rules too: never write what it would refuse
    return manifest


def _write_zip(folder: Path, zip_path: Path) -> None:
    """Zip the bundle folder with sorted entries, fixed timestamps and permissions, atomically."""
    entries = {**list_files(folder), MANIFEST_NAME: folder / MANIFEST_NAME}
    partial = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for rel, path in sorted(entries.items()):
            info = zipfile.ZipInfo(rel, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the permission bits below mean the same everywhere
            info.external_attr = 0o100644 << 16
            big = path.stat().st_size >= zipfile.ZIP64_LIMIT
            with open(path, "rb") as source, archive.open(info, "w", force_zip64=big) as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
    partial.replace(zip_path)
