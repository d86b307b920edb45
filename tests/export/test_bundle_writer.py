"""speechkit_export.bundle_writer: writing bundles, the manifest schema, and its agreement with the runtime."""

from __future__ import annotations

import copy
import datetime
import importlib.metadata
import json
import zipfile
from pathlib import Path

import jsonschema
import pytest

from speechkit_export.bundle_writer import load_schema, validate_manifest_schema, write_bundle
from speechkit_rt.bundle import Bundle, validate_manifest
from speechkit_rt.errors import BundleError


def _fields(**overrides) -> dict:
    codes = {"name": "codes", "dtype": "int64", "shape": ["B", 2, "T"]}
    audio = {"name": "audio", "dtype": "float32", "shape": ["B", "T"]}
    state = {"name": "cache", "dtype": "float32", "shape": [1, 8, 4]}
    fields = {
        "task": "codec",
        "model_kind": "rvq_codec",
        "model_name": "tiny",
        "sample_rate": 16000,
        "frame_rate": 50.0,
        "token_layout": {"num_codebooks": 2, "codebook_sizes": [16, 16]},
        "graphs": {
            "decoder": {
                "file": "decoder.onnx",
                "runtime": "onnxruntime",
                "inputs": [codes],
                "outputs": [audio],
            },
            "decoder_step": {
                "file": "decoder_step.onnx",
                "runtime": "onnxruntime",
                "inputs": [codes, state],
                "outputs": [audio, {**state, "name": "next_cache"}],
                "state": [{"input": "cache", "output": "next_cache"}],
            },
            "encoder": {
                "file": "encoder.mlpackage",
                "runtime": "coreml",
                "inputs": [audio],
                "outputs": [codes],
            },
        },
        "quantization": {"mode": "int8", "bits": 8, "group_size": None, "method": "dynamic"},
        "created": "2025-01-02T03:04:05+00:00",
    }
    fields.update(overrides)
    return fields


def _files(tmp_path: Path) -> dict:
    package = tmp_path / "src" / "encoder.mlpackage"
    (package / "Data" / "weights").mkdir(parents=True, exist_ok=True)
    (package / "Manifest.json").write_text("{}")
    (package / "Data" / "weights" / "weight.bin").write_bytes(b"\x00\x01" * 100)
    onnx = tmp_path / "src" / "decoder.onnx"
    onnx.write_bytes(b"onnx graph")
    return {"decoder.onnx": onnx, "decoder_step.onnx": b"step graph", "encoder.mlpackage": package}


def _manifest(tmp_path: Path) -> dict:
    root = write_bundle(tmp_path / "bundle", _fields(), _files(tmp_path))
    return json.loads((root / "manifest.json").read_text())


def test_writer_fills_its_fields_and_hashes_every_file(tmp_path):
    fields = _fields()
    del fields["created"]
    root = write_bundle(tmp_path / "bundle", fields, _files(tmp_path))
    text = (root / "manifest.json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    assert (manifest["format"], manifest["format_version"]) == ("speechkit-bundle", 1)
    assert manifest["speechkit_version"] == importlib.metadata.version("speechkit")
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(manifest["created"])
    assert abs(age.total_seconds()) < 60
    assert (manifest["metrics"], manifest["extra"]) == ({}, {})
    assert sorted(manifest["files"]) == [
        "decoder.onnx",
        "decoder_step.onnx",
        "encoder.mlpackage/Data/weights/weight.bin",
        "encoder.mlpackage/Manifest.json",
    ]
    assert manifest["files"]["encoder.mlpackage/Data/weights/weight.bin"]["bytes"] == 200


def test_zip_is_deterministic_and_opens_like_the_folder(tmp_path):
    first = write_bundle(tmp_path / "a" / "bundle", _fields(), _files(tmp_path), zip=True)
    second = write_bundle(tmp_path / "b" / "bundle", _fields(), _files(tmp_path), zip=True)
    assert first == tmp_path / "a" / "bundle.zip"
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names == sorted(names) and "manifest.json" in names
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with Bundle.open(first) as zipped, Bundle.open(tmp_path / "a" / "bundle") as folder:
        assert zipped.manifest == folder.manifest


def test_schema_accepts_a_written_manifest_and_rejects_a_missing_task(tmp_path):
    validator = jsonschema.Draft202012Validator(load_schema())
    jsonschema.Draft202012Validator.check_schema(load_schema())
    manifest = _manifest(tmp_path)
    assert validator.is_valid(manifest)
    del manifest["task"]
    assert not validator.is_valid(manifest)
    with pytest.raises(BundleError, match="'task' is a required property"):
        validate_manifest_schema(manifest)


BROKEN = {
    "missing task": lambda m: m.pop("task"),
    "task of wrong type": lambda m: m.update(task=3),
    "unknown task": lambda m: m.update(task="ocr"),
    "unknown top-level key": lambda m: m.update(comment="hi"),
    "sample_rate as string": lambda m: m.update(sample_rate="16000"),
    "sample_rate as bool": lambda m: m.update(sample_rate=True),
    "zero frame_rate": lambda m: m.update(frame_rate=0),
    "format_version 2": lambda m: m.update(format_version=2),
    "bad created": lambda m: m.update(created="yesterday"),
    "metrics not numbers": lambda m: m["metrics"].update(pesq="good"),
    "short sha256": lambda m: m["files"]["decoder.onnx"].update(sha256="abc"),
    "negative bytes": lambda m: m["files"]["decoder.onnx"].update(bytes=-1),
    "traversal in files": lambda m: m["files"].update({"../x": m["files"]["decoder.onnx"]}),
    "unknown runtime": lambda m: m["graphs"]["decoder"].update(runtime="tflite"),
    "unknown dtype": lambda m: m["graphs"]["decoder"]["inputs"][0].update(dtype="float8"),
    "graph without outputs": lambda m: m["graphs"]["decoder"].pop("outputs"),
    "graph with unknown key": lambda m: m["graphs"]["decoder"].update(opset=18),
    "no graphs": lambda m: m.update(graphs={}),
    "bits 0": lambda m: m["quantization"].update(bits=0),
    "quantization without mode": lambda m: m["quantization"].pop("mode"),
    "codebook size 0": lambda m: m["token_layout"].update(codebook_sizes=[16, 0]),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_runtime_checks_agree_with_the_schema_on_broken_manifests(tmp_path, name):
    manifest = copy.deepcopy(_manifest(tmp_path))
    BROKEN[name](manifest)
    assert not jsonschema.Draft202012Validator(load_schema()).is_valid(manifest)
    with pytest.raises(BundleError):
        validate_manifest(manifest)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["extra"].update(anything={"nested": [1, "x"]}),
        lambda m: m["token_layout"].update(vocab_size=500),
        lambda m: m["metrics"].update(pesq=1.6, parity=0),
        lambda m: m.update(sample_rate=16000.0),  # JSON Schema counts 16000.0 as an integer
    ],
)
def test_runtime_checks_agree_with_the_schema_on_valid_variants(tmp_path, edit):
    manifest = _manifest(tmp_path)
    edit(manifest)
    assert jsonschema.Draft202012Validator(load_schema()).is_valid(manifest)
    validate_manifest(manifest)


def test_runtime_only_rules_are_enforced_at_write_time(tmp_path):
    bad_state = _fields()
    bad_state["graphs"]["decoder_step"]["state"] = [{"input": "kv", "output": "next_cache"}]
    for fields, message in [
        (_fields(token_layout={"num_codebooks": 3, "codebook_sizes": [16, 16]}), "2 entries for 3 codebooks"),
        (bad_state, "names 'kv', which is not one of the graph's inputs"),
        (_fields(graphs={"x": {**_fields()["graphs"]["decoder"], "file": "x.onnx"}}), "references 'x.onnx'"),
    ]:
        with pytest.raises(BundleError, match=message):
            write_bundle(tmp_path / "bundle", fields, _files(tmp_path))
    assert not (tmp_path / "bundle").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"], "a failed write leaves no staging folder"


def test_writer_refuses_its_own_fields_and_unsafe_paths(tmp_path):
    with pytest.raises(BundleError, match=r"must not set \['files', 'format_version'\]"):
        write_bundle(tmp_path / "b", _fields(format_version=2, files={}), _files(tmp_path))
    with pytest.raises(BundleError, match="'../decoder.onnx': not a safe bundle-relative path"):
        write_bundle(tmp_path / "b", _fields(), {"../decoder.onnx": b"x"})
    with pytest.raises(BundleError, match="manifest fields are not plain finite JSON"):
        write_bundle(tmp_path / "b", _fields(metrics={"pesq": float("nan")}), _files(tmp_path))


def test_overwrite_rules(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"cat")
    with pytest.raises(BundleError, match="not a bundle; pass overwrite=True"):
        write_bundle(other, _fields(), _files(tmp_path))
    assert (other / "cat.jpg").exists()
    write_bundle(other, _fields(), _files(tmp_path), overwrite=True)
    assert not (other / "cat.jpg").exists()
    # An existing bundle is replaced without overwrite=True, and stale files go with it.
    (other / "notes.txt").write_bytes(b"stale")
    files = _files(tmp_path)
    files["decoder_step.onnx"] = b"fresh"
    with Bundle.open(write_bundle(other, _fields(), files)) as bundle:
        assert bundle.read_bytes("decoder_step.onnx") == b"fresh"
    assert not (other / "notes.txt").exists()
