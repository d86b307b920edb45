"""JSONL manifests: one JSON object per line describing one audio file of a corpus.

Two record types cover every corpus speechkit builds: :class:`Utterance` (speech with its text and
speaker) and :class:`AudioClip` (music, noise or a room impulse response, described by ``tags``).
A line is read back as whichever type has exactly its keys; anything else is an error that names
the file and line, because a silently skipped line becomes a silently smaller training set.

Paths inside a manifest are relative to the manifest's folder, so a corpus folder can be moved or
copied as a whole. :func:`read_manifest` resolves them to absolute paths unless asked not to.

Example:
    >>> import tempfile, pathlib
    >>> utt = Utterance(path="wavs/a.wav", text="Hi there you all.", speaker="s1", engine="flite",
    ...                 voice="slt", duration=1.5, sample_rate=16000, split="train", perturbation={})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = write_manifest(pathlib.Path(folder) / "train.jsonl", [utt])
    ...     back = read_manifest(pathlib.Path(folder) / "train.jsonl", resolve_paths=False)
    >>> back == [utt]
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from speechkit.errors import DataError


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One synthesised (or recorded) utterance.

    Args:
        path: audio file, relative to the manifest's folder when written (absolute after reading
            with ``resolve_paths=True``).
        text: what is said.
        speaker: pseudo-speaker id (base voice x fixed perturbation), unique across a corpus.
        engine: synthesiser that produced it ("espeak-ng", "flite", "festival", or "recorded").
        voice: the engine's base voice name.
        duration: seconds.
        sample_rate: Hz.
        split: "train", "valid", "test" or "test_ood".
        perturbation: the fixed speaker perturbation (e.g. ``{"vtl_warp": 1.05, "rate": 170}``).
    """

    path: str
    text: str
    speaker: str
    engine: str
    voice: str
    duration: float
    sample_rate: int
    split: str
    perturbation: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class AudioClip:
    """One non-speech clip: music excerpt, noise recording or room impulse response.

    Args:
        path: audio file, relative to the manifest's folder (absolute after a resolving read).
        kind: "music", "noise" or "rir".
        duration: seconds.
        sample_rate: Hz.
        split: "train", "valid" or "test".
        tags: free description, e.g. ``{"composer": "bach", "instrument": "flute"}`` or ``{"rt60": 0.4}``.
    """

    path: str
    kind: str
    duration: float
    sample_rate: int
    split: str
    tags: dict[str, Any]


Record = Utterance | AudioClip
RECORD_TYPES: tuple[type, ...] = (Utterance, AudioClip)
# Expected JSON types of each field; ints are accepted where floats are expected.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "path": (str,),
    "text": (str,),
    "speaker": (str,),
    "engine": (str,),
    "voice": (str,),
    "kind": (str,),
    "split": (str,),
    "duration": (int, float),
    "sample_rate": (int,),
    "perturbation": (dict,),
    "tags": (dict,),
}


def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def record_to_dict(record: Record, manifest_dir: Path | None = None) -> dict[str, Any]:
    """The JSON object of a record; an absolute path is made relative to ``manifest_dir``."""
    if not isinstance(record, RECORD_TYPES):
        raise DataError(f"cannot write a {type(record).__name__} to a manifest; use Utterance or AudioClip")
    data = dataclasses.asdict(record)
    if manifest_dir is not None and os.path.isabs(data["path"]):
        data["path"] = Path(os.path.relpath(data["path"], manifest_dir)).as_posix()
    return data


def record_from_dict(data: Any, where: str = "record") -> Record:
    """Build the record type whose fields match ``data``'s keys exactly, checking value types.

    Raises:
        DataError: not an object, unknown/missing keys, wrong value types, empty path or text.
    """
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
    keys = set(data)
    best = min(RECORD_TYPES, key=lambda cls: len(keys ^ _field_names(cls)))
    missing, unknown = sorted(_field_names(best) - keys), sorted(keys - _field_names(best))
    if missing or unknown:
        raise DataError(
            f"{where}: not a valid {best.__name__} record (missing fields {missing}, unknown fields {unknown})"
        )
    for name, value in data.items():
        allowed = _FIELD_TYPES[name]
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise DataError(
                f"{where}: field {name!r} must be {'/'.join(t.__name__ for t in allowed)}, got {value!r}"
            )
    if not data["path"]:
        raise DataError(f"{where}: empty path")
    if best is Utterance and not data["text"].strip():
        raise DataError(f"{where}: empty text")
    if data["duration"] < 0 or data["sample_rate"] <= 0:
        raise DataError(f"{where}: negative duration or non-positive sample rate")
    return best(**{**data, "duration": float(data["duration"])})


def write_manifest(path: str | Path, records: Iterable[Record]) -> Path:
    """Write records as JSONL (one object per line, keys in field order), atomically.

    Absolute record paths are stored relative to the manifest's folder.

    Args:
        path: the ``.jsonl`` file to write; its folder is created.
        records: Utterance or AudioClip objects.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record_to_dict(r, path.parent.resolve()), ensure_ascii=False) for r in records]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(path: str | Path, resolve_paths: bool = True) -> list[Record]:
    """Read and validate a JSONL manifest.

    Args:
        path: the manifest file. Blank lines are allowed; every other line must be a full record.
        resolve_paths: turn each relative audio path into an absolute one under the manifest's folder.

    Returns:
        Records in file order.

    Raises:
        DataError: a missing file, or a line with bad JSON or a bad record (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    base = path.parent.resolve()
    records: list[Record] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: bad JSON ({err.msg} at column {err.colno})") from err
            record = record_from_dict(data, where)
            if resolve_paths and not os.path.isabs(record.path):
                record = dataclasses.replace(record, path=str(base / record.path))
            records.append(record)
    return records
