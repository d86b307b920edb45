"""speechkit_rt.bundle: opening, verifying and refusing bundles (folders and zips)."""

from __future__ import annotations

import io
import json
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from speechkit_export.bundle_writer import write_bundle
from speechkit_rt.bundle import Bundle
from speechkit_rt.errors import BundleError


def _fields() -> dict:
    codes = {"name": "codes", "dtype": "int64", "shape": ["B", 2, "T"]}
    audio = {"name": "audio", "dtype": "float32", "shape": ["B", "T"]}
    return {
        "task": "codec",
        "model_kind": "rvq_codec",
        "model_name": "tiny",
        "sample_rate": 16000,
        "frame_rate": 50.0,
        "token_layout": {"num_codebooks": 2, "codebook_sizes": [16, 16], "bitrates_bps": [200.0, 400.0]},
        "graphs": {
            "decoder": {
                "file": "decoder.onnx",
                "runtime": "onnxruntime",
                "inputs": [codes],
                "outputs": [audio],
            },
            "encoder": {
                "file": "encoder.mlpackage",
                "runtime": "coreml",
                "inputs": [audio],
                "outputs": [codes],
            },
        },
        "quantization": {"mode": "weight_only", "bits": 2, "group_size": 32, "method": "rtn"},
        "metrics": {"parity_max_abs": 1e-5},
    }


def _write(tmp_path: Path, zip: bool = False) -> Path:
    """A tiny bundle: an ONNX file, an .mlpackage folder and an .npz of packed codes."""
    package = tmp_path / "src" / "encoder.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    (package / "Data" / "weight.bin").write_bytes(bytes(range(64)))
    npz = io.BytesIO()
    np.savez(npz, codes=np.arange(12, dtype=np.uint8).reshape(3, 4))
    files = {
        "decoder.onnx": b"not really onnx",
        "encoder.mlpackage": package,
        "weights/codes.npz": npz.getvalue(),
    }
    return write_bundle(tmp_path / "bundle", _fields(), files, zip=zip)


def _edit_manifest(root: Path, edit) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def _zip_with(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def test_folder_and_zip_open_to_the_written_manifest(tmp_path):
    zip_path = _write(tmp_path, zip=True)
    written = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    for path in (tmp_path / "bundle", zip_path):
        with Bundle.open(path) as bundle:
            assert bundle.manifest == written
            assert bundle.graph("decoder")["runtime"] == "onnxruntime"
            assert bundle.read_bytes("decoder.onnx") == b"not really onnx"
            assert (bundle.path_of("encoder.mlpackage") / "Data" / "weight.bin").read_bytes() == bytes(
                range(64)
            )
            np.testing.assert_array_equal(
                bundle.load_arrays("weights/codes.npz")["codes"].ravel(), np.arange(12)
            )
            root = bundle.root
    assert not root.exists(), "closing a zip bundle removes its temporary folder"
    assert (tmp_path / "bundle").exists(), "closing a folder bundle leaves it alone"


def test_zip_of_a_top_level_folder_opens(tmp_path):
    folder = _write(tmp_path)
    members = {
        f"bundle/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    with Bundle.open(_zip_with(tmp_path / "by_hand.zip", members)) as bundle:
        assert bundle.read_bytes("decoder.onnx") == b"not really onnx"


@pytest.mark.parametrize("relative", ["decoder.onnx", "encoder.mlpackage/Data/weight.bin"])
def test_one_flipped_byte_is_a_sha256_mismatch(tmp_path, relative):
    root = _write(tmp_path)
    data = bytearray((root / relative).read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / relative).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"sha256 mismatch for {relative}: bundle tampered"):
        Bundle.open(root)


def test_truncated_file_is_a_size_mismatch(tmp_path):
    root = _write(tmp_path)
    (root / "decoder.onnx").write_bytes(b"not")
    with pytest.raises(BundleError, match="size mismatch for decoder.onnx"):
        Bundle.open(root)


def test_unlisted_file_is_refused(tmp_path):
    root = _write(tmp_path)
    (root / "encoder.mlpackage" / "Data" / "extra.bin").write_bytes(b"x")
    with pytest.raises(
        BundleError, match="encoder.mlpackage/Data/extra.bin: present in the bundle but not listed"
    ):
        Bundle.open(root)


def test_missing_file_is_refused(tmp_path):
    root = _write(tmp_path)
    (root / "weights" / "codes.npz").unlink()
    with pytest.raises(BundleError, match="weights/codes.npz: listed in manifest.json but missing"):
        Bundle.open(root)


def test_graph_file_not_in_files_is_refused(tmp_path):
    root = _write(tmp_path)
    _edit_manifest(root, lambda m: m["graphs"]["decoder"].update(file="other.onnx"))
    with pytest.raises(BundleError, match="graphs.decoder.file references 'other.onnx'"):
        Bundle.open(root)


def test_newer_format_version_names_both_versions(tmp_path):
    root = _write(tmp_path)
    _edit_manifest(root, lambda m: m.update(format_version=99))
    with pytest.raises(BundleError, match=r"format_version 99 is newer than this runtime supports \(1\)"):
        Bundle.open(root)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format="onnx-bundle"), "not a speechkit bundle"),
        (lambda m: m.pop("task"), "lacks required key 'task'"),
        (lambda m: m["metrics"].update(pesq=float("nan")), "NaN is not allowed"),
    ],
)
def test_bad_manifest_is_refused(tmp_path, edit, message):
    root = _write(tmp_path)
    _edit_manifest(root, edit)
    with pytest.raises(BundleError, match=message):
        Bundle.open(root)


@pytest.mark.parametrize(
    ("member", "symlink", "message"),
    [
        ("../evil", False, "has an unsafe path"),
        ("{tmp}/abs_evil", False, "has an unsafe path"),
        ("link", True, "is a symlink"),
    ],
)
def test_unsafe_zip_members_are_refused(tmp_path, monkeypatch, member, symlink, message):
    scratch = tmp_path / "scratch"  # where Bundle.open unzips, so a traversal would land in tmp_path
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    member = member.format(tmp=tmp_path)  # an absolute path that stays inside tmp_path
    members = {"manifest.json": b"{}"} if symlink else {"manifest.json": b"{}", member: b"x"}
    with pytest.raises(BundleError, match=f"member {member!r} {message}"):
        Bundle.open(_zip_with(tmp_path / "evil.zip", members, symlink=member if symlink else None))
    assert not (scratch / "evil").exists() and not (tmp_path / "abs_evil").exists()
    assert not any(scratch.iterdir()), "the temporary folder is removed after a refusal"


def test_zip_over_the_size_limit_is_refused(tmp_path):
    zip_path = _zip_with(tmp_path / "bomb.zip", {"manifest.json": b"{}", "zeros.bin": bytes(1 << 20)})
    assert zip_path.stat().st_size < 1 << 20
    with pytest.raises(BundleError, match="over the 65536-byte limit"):
        Bundle.open(zip_path, max_unzipped_bytes=1 << 16)


def test_symlink_in_a_folder_bundle_is_refused(tmp_path):
    root = _write(tmp_path)
    (root / "decoder.onnx").unlink()
    (root / "decoder.onnx").symlink_to(tmp_path / "src" / "encoder.mlpackage" / "Manifest.json")
    with pytest.raises(BundleError, match="decoder.onnx: symlinks are not allowed"):
        Bundle.open(root)


def test_file_changed_after_open_is_caught_on_read(tmp_path):
    root = _write(tmp_path)
    with Bundle.open(root) as bundle:
        (root / "decoder.onnx").write_bytes(b"NOT really onnx")
        with pytest.raises(BundleError, match="sha256 mismatch for decoder.onnx"):
            bundle.read_bytes("decoder.onnx")


def test_unknown_names_and_closed_bundle_are_refused(tmp_path):
    bundle = Bundle.open(_write(tmp_path, zip=True))
    with pytest.raises(BundleError, match="has no graph 'vocoder'"):
        bundle.graph("vocoder")
    with pytest.raises(BundleError, match="not listed"):
        bundle.path_of("../manifest.json")
    bundle.close()
    with pytest.raises(BundleError, match="is closed"):
        bundle.read_bytes("decoder.onnx")


def test_pickled_arrays_are_refused(tmp_path):
    npz = io.BytesIO()
    np.savez(npz, labels=np.array([{"a": 1}], dtype=object))
    root = write_bundle(
        tmp_path / "bundle",
        _fields(),
        {"decoder.onnx": b"g", "encoder.mlpackage/x": b"m", "w.npz": npz.getvalue()},
    )
    with Bundle.open(root) as bundle, pytest.raises(BundleError, match="w.npz: not a plain .npy/.npz"):
        bundle.load_arrays("w.npz")


def _step_graph() -> dict:
    codes = {"name": "codes", "dtype": "int64", "shape": [1, "K", 1]}
    cache = {"name": "state_cache", "dtype": "float32", "shape": [1, 8, 4]}
    return {
        "file": "decoder.onnx",
        "runtime": "onnxruntime",
        "inputs": [codes, cache],
        "outputs": [{"name": "wav", "dtype": "float32", "shape": [1, 320]}, {**cache, "name": "next_cache"}],
        "state": [{"input": "state_cache", "output": "next_cache"}],
    }


def test_state_pairs_open_and_name_their_input_and_output(tmp_path):
    root = _write(tmp_path)
    _edit_manifest(root, lambda m: m["graphs"].update(decoder_step=_step_graph()))
    with Bundle.open(root) as bundle:
        assert bundle.graph("decoder_step")["state"] == [{"input": "state_cache", "output": "next_cache"}]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g.update(state=["state_cache"]), r"state\[0\] must be an object"),
        (lambda g: g["state"][0].pop("output"), r"state\[0\] lacks required key 'output'"),
        (lambda g: g["state"][0].update(input="kv"), "names 'kv', which is not one of the graph's inputs"),
        (
            lambda g: g["state"][0].update(output="wav_out"),
            "'wav_out', which is not one of the graph's outputs",
        ),
        (lambda g: g["state"].append(dict(g["state"][0])), r"state\[1\].input repeats 'state_cache'"),
        (lambda g: g["inputs"][1].update(shape=[1, 8, "T"]), "must have a fixed shape"),
        (lambda g: g["outputs"][1].update(dtype="float16"), "dtype and shape must agree"),
        (lambda g: g["outputs"][1].update(shape=[1, 8, 5]), "dtype and shape must agree"),
    ],
)
def test_bad_state_pairs_are_refused(tmp_path, edit, message):
    graph = _step_graph()
    edit(graph)
    root = _write(tmp_path)
    _edit_manifest(root, lambda m: m["graphs"].update(decoder_step=graph))
    with pytest.raises(BundleError, match=message):
        Bundle.open(root)
