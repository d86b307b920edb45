"""The speaker table and a tiny speech-corpus build: splits, voices, determinism, idempotence."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import soundfile as sf

from speechkit.data.manifest import read_manifest
from speechkit.data.sentences import sentence_split
from speechkit.data.speakers import speaker_table
from speechkit.data.speech import build_speech_corpus, trim_silence
from speechkit.errors import DataError


def test_speaker_table_has_many_voices_and_disjoint_splits() -> None:
    table = speaker_table()
    assert len({s.speaker_id for s in table}) == len(table)
    assert len({(s.engine, s.voice) for s in table}) >= 20
    voice_splits: dict[tuple[str, str], set[str]] = {}
    for s in table:
        voice_splits.setdefault((s.engine, s.voice), set()).add(s.split)
    assert all(len(splits) == 1 for splits in voice_splits.values()), "a base voice spans two splits"
    assert {s.split for s in table if s.engine == "festival"} == {"test_ood"}
    assert all(s.engine != "festival" for s in table if s.split != "test_ood")
    counts = Counter(s.split for s in table)
    assert counts["train"] > counts["valid"] > 0 and counts["test"] > 0


def test_speaker_table_is_constant_and_perturbations_in_range() -> None:
    assert speaker_table() == speaker_table()
    for s in speaker_table():
        assert 0.9 <= s.settings.get("vtl_warp", 1.0) <= 1.1


def test_other_held_out_engine_and_none() -> None:
    assert {s.engine for s in speaker_table("flite") if s.split == "test_ood"} == {"flite"}
    assert all(s.split != "test_ood" for s in speaker_table(None))
    with pytest.raises(DataError, match="held_out_engine"):
        speaker_table("sam")


def test_trim_silence_keeps_margin() -> None:
    import numpy as np

    x = np.zeros(32000, dtype=np.float32)
    x[10000:12000] = 0.5
    y = trim_silence(x, 16000, margin_s=0.05)
    # Frame granularity (20 ms = 320 samples) may add up to one frame per side.
    assert 2000 + 2 * 800 <= len(y) <= 2000 + 2 * 800 + 2 * 320
    assert np.sum(np.abs(y) == 0.5) == 2000


def _tiny_speakers() -> list[str]:
    """One speaker per (split, engine) plus extra festival ones: every split, every engine, few calls."""
    picked: dict[tuple[str, str], str] = {}
    for s in speaker_table():
        picked.setdefault((s.split, s.engine), s.speaker_id)
    return sorted(picked.values()) + ["festival-cmu_us_slt_arctic_hts-1"]


def _build(out):
    return build_speech_corpus(
        out,
        hours=0.01,
        num_workers=1,
        progress=False,
        max_utterances_per_speaker=2,
        speaker_ids=_tiny_speakers(),
    )


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech")
    start = time.monotonic()
    paths = _build(out)
    return out, paths, time.monotonic() - start


@pytest.mark.slow
def test_tiny_corpus_splits(tiny_corpus) -> None:
    out, paths, _ = tiny_corpus
    assert sorted(paths) == ["test", "test_ood", "train", "valid"]
    records = {split: read_manifest(path) for split, path in paths.items()}
    speakers = {split: {r.speaker for r in recs} for split, recs in records.items()}
    splits = sorted(speakers)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not speakers[a] & speakers[b], f"{a} and {b} share speakers"
    assert {r.engine for r in records["test_ood"]} == {"festival"}
    assert all(r.engine != "festival" for s in ("train", "valid", "test") for r in records[s])
    assert all(sentence_split(r.text) == "test" for s in ("test", "test_ood") for r in records[s])
    assert all(sentence_split(r.text) == "train" for r in records["train"])
    assert {r.engine for recs in records.values() for r in recs} == {"espeak-ng", "flite", "festival"}
    assert Counter(r.speaker for recs in records.values() for r in recs).most_common(1)[0][1] <= 2
    first = records["train"][0]
    info = sf.info(first.path)
    assert info.samplerate == 16000 and info.subtype == "PCM_16" and info.channels == 1
    assert abs(info.frames / 16000 - first.duration) < 1e-3
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["num_voices"] == len(_tiny_speakers()) and summary["failures"] == []
    assert summary["hours"]["train"] > 0 and sorted(summary["speakers"]) == sorted(paths)


@pytest.mark.slow
def test_tiny_corpus_is_deterministic_and_idempotent(tiny_corpus, tmp_path, monkeypatch) -> None:
    out, paths, first_seconds = tiny_corpus
    before = {split: path.read_text() for split, path in paths.items()}
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}

    def no_synthesis(*args, **kwargs):
        raise AssertionError("a re-run must not synthesise again")

    with monkeypatch.context() as patch:
        patch.setattr("speechkit.data.speech.synthesize", no_synthesis)
        start = time.monotonic()
        again = _build(out)
        assert time.monotonic() - start < first_seconds
    assert {split: path.read_text() for split, path in again.items()} == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == mtimes, "existing wavs were rewritten"
    # A fresh build elsewhere writes the same manifests (engines and sentence choice are deterministic).
    fresh = _build(tmp_path)
    assert {split: path.read_text() for split, path in fresh.items()} == before


def test_unknown_speaker_and_bad_hours_raise(tmp_path) -> None:
    with pytest.raises(DataError, match="unknown speaker ids"):
        build_speech_corpus(tmp_path, hours=0.01, speaker_ids=["nobody"], progress=False)
    with pytest.raises(DataError, match="hours"):
        build_speech_corpus(tmp_path, hours=0, progress=False)
