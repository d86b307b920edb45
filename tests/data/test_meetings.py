"""Synthetic meetings from a tiny fake speech corpus: exact labels, overlap share, splits, errors."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.cli import register
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.data.meetings import MeetingConfig, build_meetings_corpus, read_meetings
from speechkit.errors import DataError
from speechkit.speaker.rttm import read_rttm

SR = 16000
VOICES = {"train": 5, "valid": 3, "test": 4}
SHORT = MeetingConfig(speakers=(2, 3), minutes=(0.15, 0.25), overlap_share=0.1)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    """Per split a few voices, each with four 0.5-1.2 s tone or noise bursts padded with silence."""
    root = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)
    for split, num_voices in VOICES.items():
        rows = []
        for v in range(num_voices):
            speaker = f"{split}-voice{v}"
            for u in range(4):
                n = int(rng.uniform(0.5, 1.2) * SR)
                t = np.arange(n) / SR
                burst = 0.3 * np.sin(2 * np.pi * (200 + 60 * v + 15 * u) * t)
                if u % 2:
                    burst = 0.2 * rng.standard_normal(n) * np.hanning(n) ** 0.1
                pad = int(rng.integers(1000, 3000))  # not a multiple of the 20 ms trimming frame
                wav = np.concatenate([np.zeros(pad), burst, np.zeros(pad + 123)]).astype(np.float32)
                rel = f"wavs/{speaker}/{speaker}-{u}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(root / rel), wav, SR, subtype="PCM_16")
                rows.append(
                    Utterance(rel, f"utterance {u}", speaker, "fake", "v", len(wav) / SR, SR, split, {})
                )
        write_manifest(root / f"{split}.jsonl", rows)
    return root


@pytest.fixture(scope="module")
def corpus(speech_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("meetings")
    counts = {"train": 30, "valid": 4, "test": 6}
    paths = build_meetings_corpus(out, speech_dir, counts, SHORT, seed=3, progress=False)
    return out, paths


def test_rttm_marks_exactly_where_the_mixture_has_sound(corpus) -> None:
    out, paths = corpus
    for meeting in read_meetings(paths["valid"])[:3] + read_meetings(paths["train"])[:3]:
        wav, sr = sf.read(str(out / meeting.path), dtype="float32")
        assert sr == SR and wav.ndim == 1 and np.max(np.abs(wav)) <= 0.95 + 1e-4
        (file_id, segments), *rest = read_rttm(out / meeting.rttm).items()
        assert not rest and file_id == (out / meeting.path).stem
        labelled = np.zeros(len(wav), dtype=bool)
        for seg in segments:
            start, end = round(seg.start * SR), round(seg.end * SR)
            labelled[start:end] = True
            inside = wav[start:end]
            assert np.sqrt(np.mean(inside**2)) > 0.02
            # Tight labels: sound within the first and last 20 ms (one trimming frame).
            assert np.max(np.abs(inside[:320])) > 0.01 and np.max(np.abs(inside[-320:])) > 0.01
        assert not np.any(wav[~labelled])  # exact digital silence outside the labels
        assert sorted({s.speaker for s in segments}) == sorted(meeting.speakers)


def test_speakers_length_and_manifest(corpus) -> None:
    out, paths = corpus
    assert sorted(paths) == ["test", "train", "valid"]
    for split, path in paths.items():
        for meeting in read_meetings(path):
            assert meeting.split == split and meeting.sample_rate == SR
            assert 2 <= len(meeting.speakers) <= 3 and len(set(meeting.speakers)) == len(meeting.speakers)
            assert 0.15 * 60 <= meeting.duration <= 0.25 * 60 + 6
            assert meeting.duration == pytest.approx(sf.info(str(out / meeting.path)).duration, abs=1e-3)


def test_overlap_share_near_target_and_turns_alternate(corpus) -> None:
    out, paths = corpus
    train = read_meetings(paths["train"])
    shares = [m.overlap_share for m in train]
    weights = [m.duration for m in train]
    assert np.average(shares, weights=weights) == pytest.approx(0.1, abs=0.03)
    summary = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    assert summary["overlap_share"]["train"] == pytest.approx(0.1, abs=0.03)
    for meeting in train[:5]:
        segments = next(iter(read_rttm(out / meeting.rttm).values()))
        active = np.zeros(round(meeting.duration * 1000) + 1, dtype=int)
        for seg in segments:
            active[round(seg.start * 1000) : round(seg.end * 1000)] += 1
        assert active.max() <= 2  # overlaps only ever pair two speakers
        assert np.count_nonzero(active >= 2) / np.count_nonzero(active) == pytest.approx(
            meeting.overlap_share, abs=1e-3
        )


def test_no_overlap_when_target_is_zero(speech_dir, tmp_path) -> None:
    config = dataclasses.replace(SHORT, overlap_share=0.0)
    paths = build_meetings_corpus(tmp_path, speech_dir, {"valid": 3}, config, seed=0, progress=False)
    assert [m.overlap_share for m in read_meetings(paths["valid"])] == [0.0, 0.0, 0.0]


def test_splits_do_not_share_voices(corpus) -> None:
    out, paths = corpus
    summary = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    assert summary["kind"] == "meetings" and summary["meetings"] == {"train": 30, "valid": 4, "test": 6}
    voices = {split: {s for m in read_meetings(p) for s in m.speakers} for split, p in paths.items()}
    for split, ids in voices.items():
        assert ids and all(v.startswith(f"{split}-") for v in ids)
        assert sorted(ids) == summary["speakers"][split]


def test_same_seed_same_corpus(speech_dir, tmp_path) -> None:
    def build(folder, seed):
        paths = build_meetings_corpus(folder, speech_dir, {"valid": 2}, SHORT, seed=seed, progress=False)
        return paths["valid"].read_text(), (folder / "wavs/valid/valid-0001.wav").read_bytes()

    first = build(tmp_path / "a", 1)
    assert build(tmp_path / "b", 1) == first
    assert build(tmp_path / "c", 2) != first


def test_errors_for_missing_corpus_split_and_too_few_voices(speech_dir, tmp_path) -> None:
    with pytest.raises(DataError, match="no speech corpus"):
        build_meetings_corpus(tmp_path / "out", tmp_path / "nowhere", {"train": 1}, SHORT, progress=False)
    with pytest.raises(DataError, match="no test_ood split"):
        build_meetings_corpus(tmp_path / "out", speech_dir, {"test_ood": 1}, SHORT, progress=False)
    wide = dataclasses.replace(SHORT, speakers=(2, 4))
    with pytest.raises(DataError, match="valid split .* has 3 voices"):
        build_meetings_corpus(tmp_path / "out", speech_dir, {"valid": 1}, wide, progress=False)
    with pytest.raises(DataError, match="speakers must be a range"):
        MeetingConfig(speakers=(1, 3))


def test_cli_builds_and_prints(speech_dir, tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="speechkit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["data", "meetings", "--speech", str(speech_dir), "--out", str(tmp_path), "--quiet",
         "--meetings-per-split", "train=2", "valid=0", "test=1", "test_ood=0",
         "--speakers", "2", "3", "--minutes", "0.1", "0.2", "--overlap", "0.2"]
    )  # fmt: skip
    assert args.meetings_per_split == {"train": 2, "valid": 0, "test": 1, "test_ood": 0}
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "meetings corpus" in out and "overlap_share" in out
    assert (tmp_path / "train.jsonl").is_file() and not (tmp_path / "valid.jsonl").exists()
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "meetings", "--meetings-per-split", "dev=3"])
