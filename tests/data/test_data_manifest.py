"""JSONL manifests: round trip, path resolution and errors that name the line."""

from __future__ import annotations

import json

import pytest

from speechkit.data.manifest import AudioClip, Utterance, read_manifest, write_manifest
from speechkit.errors import DataError

UTT = Utterance(
    "wavs/s1/a.wav", "Hello there my friend.", "s1", "flite", "slt", 1.25, 16000, "train", {"vtl_warp": 1.02}
)
CLIP = AudioClip("rir/r0.wav", "rir", 0.5, 16000, "test", {"rt60": 0.4})


def test_round_trip_and_path_resolution(tmp_path) -> None:
    path = write_manifest(tmp_path / "m.jsonl", [UTT, CLIP])
    assert read_manifest(path, resolve_paths=False) == [UTT, CLIP]
    resolved = read_manifest(path)
    assert resolved[0].path == str(tmp_path.resolve() / "wavs/s1/a.wav")
    assert resolved[1].tags == {"rt60": 0.4}


def test_absolute_paths_are_stored_relative(tmp_path) -> None:
    absolute = Utterance(**{**UTT.__dict__, "path": str(tmp_path / "wavs" / "b.wav")})
    write_manifest(tmp_path / "sub" / "m.jsonl", [absolute])
    stored = json.loads((tmp_path / "sub" / "m.jsonl").read_text())
    assert stored["path"] == "../wavs/b.wav"


def _write_lines(tmp_path, lines: list[str]):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_json_names_the_line(tmp_path) -> None:
    good = json.dumps(UTT.__dict__)
    path = _write_lines(tmp_path, [good, "", good, "{not json"])
    with pytest.raises(DataError, match=r"bad\.jsonl:4: bad JSON"):
        read_manifest(path)


def test_missing_field_names_the_line_and_field(tmp_path) -> None:
    data = dict(UTT.__dict__)
    del data["speaker"]
    path = _write_lines(tmp_path, [json.dumps(UTT.__dict__), json.dumps(data)])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: .*missing fields \['speaker'\]"):
        read_manifest(path)


def test_unknown_field_and_wrong_type_are_rejected(tmp_path) -> None:
    with pytest.raises(DataError, match=r":1: .*unknown fields \['extra'\]"):
        read_manifest(_write_lines(tmp_path, [json.dumps({**UTT.__dict__, "extra": 1})]))
    with pytest.raises(DataError, match=r":1: field 'sample_rate'"):
        read_manifest(_write_lines(tmp_path, [json.dumps({**UTT.__dict__, "sample_rate": "16k"})]))
    with pytest.raises(DataError, match="expected a JSON object"):
        read_manifest(_write_lines(tmp_path, ["[1, 2]"]))


def test_missing_manifest_raises(tmp_path) -> None:
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")
