"""Build the synthetic multi-speaker English speech corpus (wavs + JSONL manifests + summary).

The corpus is speaker-disjoint (train / valid / test hold different base voices), sentence-disjoint
(each split reads its own hash-assigned sentences; ``test`` and ``test_ood`` read test sentences)
and has one engine held out entirely as ``test_ood`` (see :mod:`speechkit.data.speakers`).

Each speaker is one job: it reads its own seeded shuffle of its split's sentences, in order, until
its share of the requested hours is reached. Engines are deterministic, so the same seed gives the
same manifests; files are named by speaker and a hash of the text, so a re-run finds and reuses
every file already written (and a build killed half-way resumes where it stopped).

Layout::

    out_dir/wavs/<speaker>/<speaker>-<texthash>.wav   16 kHz 16-bit mono
    out_dir/{train,valid,test,test_ood}.jsonl          Utterance manifests
    out_dir/corpus.json                                voices, speakers, hours per split, build time

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     paths = build_speech_corpus(out, hours=0.001, max_utterances_per_speaker=1, num_workers=1,
    ...                                 progress=False, speaker_ids=["espeak-en-us-m1", "flite-kal-0"])
    >>> sorted(paths)
    ['test', 'train']
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from speechkit.audio import loudness_normalize, save_audio
from speechkit.data.engines import CORPUS_SAMPLE_RATE, require_tool, synthesize
from speechkit.data.manifest import Utterance, write_manifest
from speechkit.data.sentences import load_sentences, shuffled, split_sentence_pool
from speechkit.data.speakers import CORPUS_SPLITS, Speaker, speaker_table, voices_by_split
from speechkit.errors import DataError

logger = logging.getLogger(__name__)

CORPUS_VERSION = 1
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.06, "test": 0.07, "test_ood": 0.07}
TARGET_LUFS = -23.0
MAX_PEAK = 0.95
_ENGINE_PROGRAMS = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}


def trim_silence(
    wav: np.ndarray, sample_rate: int, threshold_db: float = -40.0, margin_s: float = 0.1
) -> np.ndarray:
    """Cut leading/trailing audio quieter than ``threshold_db`` below the loudest 20 ms frame.

    A ``margin_s`` of the quiet part is kept on each side, so onsets and releases survive.

    Example:
        >>> x = np.concatenate([np.zeros(16000), np.ones(1600), np.zeros(16000)]).astype(np.float32)
        >>> len(trim_silence(x, 16000))
        4800
    """
    frame = max(1, int(0.02 * sample_rate))
    num_frames = len(wav) // frame
    if num_frames == 0:
        return wav
    energy = np.square(wav[: num_frames * frame].reshape(num_frames, frame)).mean(axis=1)
    level_db = 10 * np.log10(energy + 1e-12)
    loud = np.flatnonzero(level_db > level_db.max() + threshold_db)
    margin = int(margin_s * sample_rate)
    start = max(0, loud[0] * frame - margin)
    end = min(len(wav), (loud[-1] + 1) * frame + margin)
    return wav[start:end]


def utterance_path(speaker: Speaker, text: str) -> str:
    """The wav path (relative to the corpus folder) of one speaker saying one text.

    The name hashes the text, the speaker's voice and perturbation and the corpus version, so a
    re-run reuses a file only when it would write the same audio.

    Example:
        >>> utterance_path(Speaker("flite-slt-0", "flite", "slt", "train", {}), "Hello there.")
        'wavs/flite-slt-0/flite-slt-0-76955a5e16.wav'
    """
    key = json.dumps([CORPUS_VERSION, speaker.engine, speaker.voice, speaker.settings, text], sort_keys=True)
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    return f"wavs/{speaker.speaker_id}/{speaker.speaker_id}-{digest}.wav"


def _synthesize_speaker(job: dict[str, Any]) -> dict[str, Any]:
    """Worker: write one speaker's utterances until its time budget is met (runs in a pool process)."""
    speaker: Speaker = Speaker(**job["speaker"])
    out_dir = Path(job["out_dir"])
    records, failures, total = [], [], 0.0
    for text in job["sentences"]:
        if total >= job["target_seconds"] or len(records) >= job["max_utterances"]:
            break
        rel = utterance_path(speaker, text)
        path = out_dir / rel
        try:
            if path.is_file():
                duration = sf.info(str(path)).frames / CORPUS_SAMPLE_RATE
            else:
                wav = synthesize(speaker.engine, text, speaker.voice, speaker.settings)
                wav = trim_silence(wav, CORPUS_SAMPLE_RATE)
                wav = loudness_normalize(wav, CORPUS_SAMPLE_RATE, TARGET_LUFS, max_peak=MAX_PEAK)
                tmp = path.with_name(path.stem + ".part.wav")
                save_audio(tmp, wav, CORPUS_SAMPLE_RATE)
                tmp.replace(path)  # atomic: an interrupted build never leaves a half-written wav
                duration = len(wav) / CORPUS_SAMPLE_RATE
        except (DataError, OSError, RuntimeError, ValueError) as err:
            logger.warning("skipping %s %r: %s", speaker.speaker_id, text, err)
            failures.append({"speaker": speaker.speaker_id, "text": text, "error": str(err)})
            continue
        total += duration
        records.append(
            Utterance(
                path=rel,
                text=text,
                speaker=speaker.speaker_id,
                engine=speaker.engine,
                voice=speaker.voice,
                duration=round(duration, 4),
                sample_rate=CORPUS_SAMPLE_RATE,
                split=speaker.split,
                perturbation=dict(speaker.settings),
            )
        )
    return {"records": [dataclasses.asdict(r) for r in records], "failures": failures}


def _plan_jobs(
    speakers: list[Speaker], hours: float, seed: int, out_dir: Path, max_utterances: int
) -> list[dict[str, Any]]:
    pools = split_sentence_pool(load_sentences())
    pools["test_ood"] = pools["test"]  # out-of-domain speakers read unseen (test) sentences too
    splits = sorted({s.split for s in speakers})
    weight = sum(SPLIT_FRACTIONS[split] for split in splits)
    jobs = []
    for speaker in speakers:
        in_split = sum(1 for s in speakers if s.split == speaker.split)
        target = hours * 3600 * SPLIT_FRACTIONS[speaker.split] / weight / in_split
        # About 3.5 s per sentence; generous headroom covers short sentences and failures.
        needed = min(max_utterances, int(target / 3.5)) * 3 + 20
        sentences = shuffled(pools[speaker.split], seed=hash_seed(seed, speaker.speaker_id))[:needed]
        jobs.append(
            {
                "speaker": dataclasses.asdict(speaker),
                "sentences": sentences,
                "target_seconds": target,
                "max_utterances": max_utterances,
                "out_dir": str(out_dir),
            }
        )
    return jobs


def hash_seed(seed: int, name: str) -> int:
    """A 63-bit seed from a build seed and a name, stable across Python runs (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") >> 1


def _run_jobs(jobs: list[dict[str, Any]], num_workers: int, progress: bool) -> list[dict[str, Any]]:
    bar = tqdm(total=len(jobs), unit="speaker", desc="speech corpus", disable=not progress)
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    if num_workers <= 1:
        for index, job in enumerate(jobs):
            results[index] = _synthesize_speaker(job)
            bar.update(1)
    else:
        # spawn, not fork: the parent may hold torch / OpenMP threads that a fork would deadlock on.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
            futures = {pool.submit(_synthesize_speaker, job): index for index, job in enumerate(jobs)}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    bar.close()
    return [r for r in results if r is not None]


def build_speech_corpus(
    out_dir: str | Path,
    hours: float = 1.0,
    seed: int = 0,
    num_workers: int = 2,
    held_out_engine: str | None = "festival",
    progress: bool = True,
    max_utterances_per_speaker: int = 10_000,
    speaker_ids: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Synthesise the speech corpus into ``out_dir`` and return its manifests.

    Args:
        out_dir: corpus folder (created; existing wavs are reused).
        hours: total audio over all splits (train 80 %, valid 6 %, test 7 %, test_ood 7 %).
        seed: picks each speaker's sentences; same seed, same manifests.
        num_workers: synthesis processes (1 runs in this process).
        held_out_engine: engine whose voices form ``test_ood`` (None for no OOD split).
        progress: show a tqdm bar.
        max_utterances_per_speaker: cap per speaker (small values make quick test corpora).
        speaker_ids: build only these speakers of :func:`speaker_table` (default: all).

    Returns:
        Split name -> manifest path, for every split that has speakers.

    Raises:
        DataError: a missing engine, an unknown speaker id, or a split that ends up empty.
    """
    start = time.monotonic()
    if hours <= 0 or max_utterances_per_speaker < 1:
        raise DataError(
            f"hours must be > 0 and max_utterances_per_speaker >= 1, got {hours}, {max_utterances_per_speaker}"
        )
    out_dir = Path(out_dir)
    speakers = _select_speakers(speaker_table(held_out_engine), speaker_ids)
    for engine in sorted({s.engine for s in speakers}):
        require_tool(_ENGINE_PROGRAMS[engine])
    jobs = _plan_jobs(speakers, hours, seed, out_dir, max_utterances_per_speaker)
    logger.info("building %d speakers, %.2f h, seed %d into %s", len(jobs), hours, seed, out_dir)
    results = _run_jobs(jobs, num_workers, progress)
    by_split: dict[str, list[Utterance]] = {split: [] for split in CORPUS_SPLITS}
    failures = []
    for result in results:
        by_split_records = [Utterance(**r) for r in result["records"]]
        for record in by_split_records:
            by_split[record.split].append(record)
        failures.extend(result["failures"])
    paths = {}
    for split in sorted({s.split for s in speakers}):
        if not by_split[split]:
            raise DataError(
                f"split {split} of the speech corpus is empty; see the warnings for failed utterances"
            )
        paths[split] = write_manifest(out_dir / f"{split}.jsonl", by_split[split])
    summary = _summary(speakers, by_split, failures, seed, hours, held_out_engine, time.monotonic() - start)
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return paths


def _select_speakers(table: list[Speaker], speaker_ids: Sequence[str] | None) -> list[Speaker]:
    if speaker_ids is None:
        return table
    known = {s.speaker_id: s for s in table}
    unknown = sorted(set(speaker_ids) - set(known))
    if unknown:
        raise DataError(f"unknown speaker ids {unknown}; see speechkit.data.speakers.speaker_table()")
    wanted = set(speaker_ids)
    return [s for s in table if s.speaker_id in wanted]


def _summary(
    speakers: list[Speaker],
    by_split: dict[str, list[Utterance]],
    failures: list[dict[str, str]],
    seed: int,
    hours: float,
    held_out_engine: str | None,
    build_seconds: float,
) -> dict[str, Any]:
    present = {split: recs for split, recs in by_split.items() if recs}
    return {
        "kind": "speech",
        "version": CORPUS_VERSION,
        "seed": seed,
        "hours_requested": hours,
        "sample_rate": CORPUS_SAMPLE_RATE,
        "held_out_engine": held_out_engine,
        "num_voices": len({(s.engine, s.voice) for s in speakers}),
        "voices": voices_by_split(speakers),
        "speakers": {split: sorted({r.speaker for r in recs}) for split, recs in present.items()},
        "utterances": {split: len(recs) for split, recs in present.items()},
        "hours": {split: round(sum(r.duration for r in recs) / 3600, 4) for split, recs in present.items()},
        "failures": failures,
        "build_seconds": round(build_seconds, 1),
    }
