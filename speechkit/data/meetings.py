"""Synthetic multi-speaker conversations ("meetings") mixed from the speech corpus, with exact RTTM.

A meeting draws 2-4 speakers of one split of the speech corpus (so ``test`` and ``test_ood``
meetings hold voices no training meeting has) and lets them take turns: each turn is a speaker other
than the previous one saying one or two of their utterances (a short pause in between). The gap to
the next turn is a pause (exponential, mean ``pause_mean``, at most ``pause_max``) or, with a
probability chosen so the meeting reaches the target overlap share, negative: the next speaker
starts up to ``max_overlap`` seconds before the previous one stops. The first turns go round all
speakers, so each of them speaks.

Labels are exact: every utterance's leading and trailing silence is trimmed first (20 ms frames
quieter than -40 dB below its loudest frame, :func:`speechkit.data.speech.trim_silence` with no
margin), its trimmed extent is its RTTM segment, and every boundary falls on a whole millisecond,
which is what RTTM's three decimals hold. Overlaps only ever pair the last two turns, so at most
two speakers talk at once. Each utterance gets a random gain of +/- ``gain_jitter_db``; a mixture
whose peak would exceed 0.95 is scaled down to it.

Overlap share = time with two or more speakers / time with at least one (measured from the labels).
Before each turn the overlap probability is set so that, in expectation, the meeting's overlapped
time after the turn equals the target share of its speech time; this feedback corrects for turns
where no overlap fits, so the measured share tracks the target (0.1 gives 0.10 +/- 0.01 per
meeting). Overlaps are at most ``max_overlap`` and half of the overlapping utterance, so with the
speech corpus's 1-4 s utterances targets above about 0.2 are not reached (a warning says so).

Layout::

    out_dir/wavs/<split>/<split>-<index>.wav   16 kHz 16-bit mono mixture
    out_dir/rttm/<split>/<split>-<index>.rttm  reference segments (file id = meeting id)
    out_dir/<split>.jsonl                      one Meeting per line (paths relative to out_dir)
    out_dir/corpus.json                        counts, minutes, measured overlap share, seed

Meetings are deterministic: meeting ``i`` of a split depends only on the seed, the split, ``i``, the
config and the speech corpus.

Example:
    >>> cfg = MeetingConfig(speakers=(2, 3), minutes=(0.5, 1.0), overlap_share=0.2)
    >>> cfg.speakers, cfg.max_overlap
    ((2, 3), 1.5)
    >>> rng = np.random.default_rng(0)
    >>> plan_turn_gap(rng, overlapped=0.0, speech=10.0, turn_speech=2.0, overlap_cap=1.0, config=cfg)
    (0.416, True)
    >>> plan_turn_gap(rng, overlapped=3.0, speech=10.0, turn_speech=2.0, overlap_cap=1.0, config=cfg)[1]
    False
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from speechkit.audio import load_audio, save_audio
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.data.speakers import CORPUS_SPLITS
from speechkit.data.speech import hash_seed, trim_silence
from speechkit.errors import AudioError, DataError
from speechkit.speaker.rttm import Segment, write_rttm

__all__ = [
    "DEFAULT_MEETINGS_PER_SPLIT",
    "Meeting",
    "MeetingConfig",
    "build_meetings_corpus",
    "plan_turn_gap",
    "read_meetings",
]

logger = logging.getLogger(__name__)

CORPUS_VERSION = 1
SAMPLE_RATE = 16000
MAX_PEAK = 0.95
DEFAULT_MEETINGS_PER_SPLIT = {"train": 200, "valid": 20, "test": 40, "test_ood": 40}
_MIN_OVERLAP = 0.2  # seconds; a shorter overlap is hardly a turn-taking event
_INTRA_TURN_PAUSE = (0.1, 0.4)  # seconds between one speaker's utterances within a turn
_LEAD = (0.2, 1.0)  # seconds of silence before the first and after the last utterance


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeetingConfig:
    """How meetings are drawn.

    Args:
        speakers: (min, max) speakers per meeting, drawn uniformly per meeting.
        minutes: (min, max) meeting length in minutes; turns are added until it is reached.
        overlap_share: target share of speech time with two speakers at once (0 for none).
        max_overlap: longest overlap of two turns, seconds.
        pause_mean: mean of the exponential pause between turns, seconds.
        pause_max: longest pause between turns, seconds (longer draws are clipped).
        utterances_per_turn: (min, max) utterances a speaker says in one turn.
        gain_jitter_db: each utterance's gain is uniform in +/- this many dB.
    """

    speakers: tuple[int, int] = (2, 4)
    minutes: tuple[float, float] = (1.0, 2.0)
    overlap_share: float = 0.1
    max_overlap: float = 1.5
    pause_mean: float = 0.5
    pause_max: float = 2.0
    utterances_per_turn: tuple[int, int] = (1, 2)
    gain_jitter_db: float = 3.0

    def __post_init__(self) -> None:
        low, high = self.speakers
        if not 2 <= low <= high:
            raise DataError(f"speakers must be a range (min, max) with 2 <= min <= max, got {self.speakers}")
        if not 0 < self.minutes[0] <= self.minutes[1]:
            raise DataError(f"minutes must be a range (min, max) with 0 < min <= max, got {self.minutes}")
        if not 0 <= self.overlap_share < 1:
            raise DataError(f"overlap_share must be in [0, 1), got {self.overlap_share}")
        if self.max_overlap < _MIN_OVERLAP:
            raise DataError(f"max_overlap must be at least {_MIN_OVERLAP} s, got {self.max_overlap}")
        if not 0 <= self.pause_mean <= self.pause_max:
            raise DataError(f"need 0 <= pause_mean <= pause_max, got {self.pause_mean}, {self.pause_max}")
        if not 1 <= self.utterances_per_turn[0] <= self.utterances_per_turn[1]:
            raise DataError(f"utterances_per_turn must be a range >= 1, got {self.utterances_per_turn}")
        if self.gain_jitter_db < 0:
            raise DataError(f"gain_jitter_db must be >= 0, got {self.gain_jitter_db}")


@dataclasses.dataclass(frozen=True)
class Meeting:
    """One line of a meetings manifest.

    Args:
        path: mixture wav, relative to the corpus folder.
        rttm: its reference RTTM, relative to the corpus folder (file id = the wav's stem).
        speakers: speaker ids of the speech corpus, in order of first turn.
        duration: seconds.
        overlap_share: measured time with >= 2 speakers / time with >= 1.
        sample_rate: Hz.
        split: the speech-corpus split its voices come from.
    """

    path: str
    rttm: str
    speakers: list[str]
    duration: float
    overlap_share: float
    sample_rate: int
    split: str


def read_meetings(path: str | Path) -> list[Meeting]:
    """Read a meetings manifest (``<split>.jsonl``); paths stay relative to its folder.

    Raises:
        DataError: a missing file or a line that is not a Meeting (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"meetings manifest not found: {path}")
    fields = {f.name for f in dataclasses.fields(Meeting)}
    meetings = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: bad JSON ({err.msg})") from err
        if not isinstance(data, dict) or set(data) != fields:
            raise DataError(f"{path}:{number}: not a Meeting record (fields {sorted(fields)})")
        meetings.append(Meeting(**data))
    return meetings


def plan_turn_gap(
    rng: np.random.Generator,
    overlapped: float,
    speech: float,
    turn_speech: float,
    overlap_cap: float,
    config: MeetingConfig,
) -> tuple[float, bool]:
    """Draw the gap before the next turn: (pause seconds, False) or (overlap seconds, True).

    The overlap ``o`` is uniform in [0.2 s, ``overlap_cap``] and taken with probability
    ``p = (s (speech + turn_speech) - overlapped) / (o (1 + s))`` (clipped to [0, 1]) for the target
    share ``s``: then the expected overlapped time after the turn is ``s`` times the expected speech
    time, and a meeting behind its target catches up.

    Args:
        rng: the meeting's generator.
        overlapped: overlapped seconds so far.
        speech: speech seconds so far (time with at least one speaker).
        turn_speech: speech seconds of the next turn.
        overlap_cap: the longest overlap that keeps labels exact here (0: none possible).
        config: the meeting config.

    Returns:
        The gap in seconds, rounded to whole ms, and whether it is an overlap.
    """
    pause = round(min(rng.exponential(config.pause_mean), config.pause_max), 3)
    if overlap_cap < _MIN_OVERLAP or config.overlap_share == 0:
        return pause, False
    share = config.overlap_share
    overlap = round(rng.uniform(_MIN_OVERLAP, overlap_cap), 3)
    probability = (share * (speech + turn_speech) - overlapped) / (overlap * (1 + share))
    if rng.random() < probability:
        return overlap, True
    return pause, False


def _load_trimmed(path: str) -> np.ndarray:
    """An utterance at 16 kHz with leading/trailing silence cut (length a multiple of 20 ms)."""
    try:
        wav, _ = load_audio(path, target_sample_rate=SAMPLE_RATE)
    except AudioError as err:
        raise DataError(f"cannot use speech-corpus utterance: {err}") from err
    wav = trim_silence(wav, SAMPLE_RATE, threshold_db=-40.0, margin_s=0.0)
    frame = SAMPLE_RATE // 50
    if len(wav) < frame or len(wav) % frame or not np.any(wav):
        raise DataError(f"speech-corpus utterance {path} is silent or shorter than 20 ms")
    return wav


@dataclasses.dataclass(frozen=True)
class _Mixed:
    """One mixed meeting: wav [T] at 16 kHz, its segments, speakers, overlapped and speech seconds."""

    wav: np.ndarray
    segments: list[Segment]
    speakers: list[str]
    overlapped: float
    speech: float


def _make_meeting(
    rng: np.random.Generator,
    by_speaker: Mapping[str, list[Utterance]],
    config: MeetingConfig,
    load: Callable[[str], np.ndarray],
) -> _Mixed:
    """Mix one meeting from a split's utterances by speaker (see the module docstring)."""
    ms = SAMPLE_RATE // 1000
    voices = sorted(by_speaker)
    num_speakers = int(rng.integers(config.speakers[0], config.speakers[1] + 1))
    speakers = [voices[i] for i in rng.choice(len(voices), num_speakers, replace=False)]
    queues: dict[str, list[Utterance]] = {s: [] for s in speakers}
    target_ms = round(rng.uniform(*config.minutes) * 60_000)
    placed: list[tuple[int, int, str, np.ndarray]] = []  # (start ms, end ms, speaker, samples)
    overlapped_ms = speech_ms = 0
    turn = 0
    previous = None
    while turn < num_speakers or placed[-1][1] < target_ms:
        if turn < num_speakers:
            speaker = speakers[turn]  # the first round gives everyone a turn
        else:
            speaker = str(rng.choice([s for s in speakers if s != previous]))
        count = int(rng.integers(config.utterances_per_turn[0], config.utterances_per_turn[1] + 1))
        wavs = []
        for _ in range(count):
            # Each speaker's utterances in a fresh shuffle, reused only once all are said.
            if not queues[speaker]:
                pool = by_speaker[speaker]
                queues[speaker] = [pool[i] for i in rng.permutation(len(pool))]
            wavs.append(load(queues[speaker].pop().path))
        lengths_ms = [len(w) // ms for w in wavs]
        pauses_ms = [round(rng.uniform(*_INTRA_TURN_PAUSE) * 1000) for _ in range(count - 1)]
        if not placed:
            start_ms, overlap_ms = round(rng.uniform(*_LEAD) * 1000), 0
        else:
            last_start, last_end = placed[-1][0], placed[-1][1]
            # Overlap only where the previous utterance is the one voice, and keep the new turn's first
            # utterance alone for at least half its length: then exactly two speakers overlap by o.
            alone_from = max([last_start] + [p[1] for p in placed[:-1]])
            cap = min(config.max_overlap, (last_end - alone_from) / 1000, lengths_ms[0] / 2000)
            gap, is_overlap = plan_turn_gap(
                rng, overlapped_ms / 1000, speech_ms / 1000, sum(lengths_ms) / 1000, cap, config
            )
            overlap_ms = round(gap * 1000) if is_overlap else 0
            start_ms = last_end - overlap_ms if is_overlap else last_end + round(gap * 1000)
        for wav, length, pause in zip(wavs, lengths_ms, [*pauses_ms, 0]):
            gain = 10 ** (rng.uniform(-config.gain_jitter_db, config.gain_jitter_db) / 20)
            placed.append((start_ms, start_ms + length, speaker, wav * gain))
            start_ms += length + pause
        overlapped_ms += overlap_ms
        speech_ms += sum(lengths_ms) - overlap_ms
        previous = speaker
        turn += 1
    duration_ms = placed[-1][1] + round(rng.uniform(*_LEAD) * 1000)
    mix = np.zeros(duration_ms * ms, dtype=np.float64)
    active = np.zeros(duration_ms, dtype=np.int64)  # speakers talking in each millisecond
    for start, end, _, wav in placed:
        mix[start * ms : start * ms + len(wav)] += wav
        active[start:end] += 1
    peak = float(np.max(np.abs(mix)))
    if peak > MAX_PEAK:
        mix *= MAX_PEAK / peak
    segments = [Segment(start / 1000, end / 1000, speaker) for start, end, speaker, _ in placed]
    overlapped, speech = np.count_nonzero(active >= 2) / 1000, np.count_nonzero(active) / 1000
    return _Mixed(mix.astype(np.float32), segments, speakers, float(overlapped), float(speech))


def _load_split(speech_dir: Path, split: str, min_voices: int) -> dict[str, list[Utterance]]:
    manifest = speech_dir / f"{split}.jsonl"
    if not manifest.is_file():
        raise DataError(
            f"speech corpus {speech_dir} has no {split} split ({manifest} is missing); build it with "
            f"`speechkit data speech`, or ask for no {split} meetings (--meetings-per-split {split}=0)"
        )
    by_speaker: dict[str, list[Utterance]] = {}
    for record in read_manifest(manifest):
        if not isinstance(record, Utterance):
            raise DataError(f"{manifest} holds {type(record).__name__} records, not speech utterances")
        by_speaker.setdefault(record.speaker, []).append(record)
    if len(by_speaker) < min_voices:
        raise DataError(
            f"the {split} split of {speech_dir} has {len(by_speaker)} voices, fewer than the {min_voices} "
            f"speakers a meeting may ask for; lower --speakers or build a larger speech corpus"
        )
    return by_speaker


def build_meetings_corpus(
    out_dir: str | Path,
    speech_dir: str | Path = "data/speech",
    meetings_per_split: Mapping[str, int] | None = None,
    config: MeetingConfig | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Path]:
    """Mix meetings from a speech corpus into ``out_dir`` and return their manifests.

    Args:
        out_dir: corpus folder (created; files of the same names are overwritten).
        speech_dir: the speech corpus (``<split>.jsonl`` Utterance manifests).
        meetings_per_split: split -> number of meetings (default :data:`DEFAULT_MEETINGS_PER_SPLIT`);
            a split with 0 is skipped.
        config: how meetings are drawn (default :class:`MeetingConfig`).
        seed: same seed, same corpus.
        progress: show a tqdm bar.

    Returns:
        Split name -> manifest path, for every split with meetings.

    Raises:
        DataError: a missing speech corpus or split, an unknown split, a negative count, or a split
            with fewer voices than ``config.speakers`` allows.
    """
    start_time = time.monotonic()
    config = config or MeetingConfig()
    counts = dict(DEFAULT_MEETINGS_PER_SPLIT if meetings_per_split is None else meetings_per_split)
    unknown = sorted(set(counts) - set(CORPUS_SPLITS))
    if unknown or any(n < 0 for n in counts.values()):
        raise DataError(f"meetings per split must be >= 0 for splits of {CORPUS_SPLITS}, got {counts}")
    counts = {split: counts[split] for split in CORPUS_SPLITS if counts.get(split, 0) > 0}
    speech_dir, out_dir = Path(speech_dir), Path(out_dir)
    if not speech_dir.is_dir() or not any(speech_dir.glob("*.jsonl")):
        raise DataError(f"no speech corpus at {speech_dir}; build one first with `speechkit data speech`")
    if not counts:
        raise DataError("no meetings requested")
    pools = {split: _load_split(speech_dir, split, config.speakers[1]) for split in counts}
    load = functools.lru_cache(maxsize=2048)(_load_trimmed)
    bar = tqdm(total=sum(counts.values()), unit="meeting", desc="meetings corpus", disable=not progress)
    paths, stats = {}, {}
    for split, count in counts.items():
        rows, overlapped, speech, seconds, voices = [], 0.0, 0.0, 0.0, set()
        for index in range(count):
            meeting_id = f"{split}-{index:04d}"
            rng = np.random.default_rng(hash_seed(seed, f"meetings:{split}:{index}"))
            mixed = _make_meeting(rng, pools[split], config, load)
            wav_rel, rttm_rel = f"wavs/{split}/{meeting_id}.wav", f"rttm/{split}/{meeting_id}.rttm"
            save_audio(out_dir / wav_rel, mixed.wav, SAMPLE_RATE)
            write_rttm(out_dir / rttm_rel, meeting_id, mixed.segments)
            duration = len(mixed.wav) / SAMPLE_RATE
            share = mixed.overlapped / mixed.speech
            overlapped += mixed.overlapped
            speech += mixed.speech
            seconds += duration
            voices.update(mixed.speakers)
            rounded = round(duration, 3), round(share, 4)
            rows.append(Meeting(wav_rel, rttm_rel, mixed.speakers, *rounded, SAMPLE_RATE, split))
            bar.update(1)
        paths[split] = _write_meetings(out_dir / f"{split}.jsonl", rows)
        measured = overlapped / max(speech, 1e-9)
        if measured < config.overlap_share - 0.02:
            logger.warning(
                "%s meetings reach an overlap share of %.3f, short of the %.3f asked for; raise "
                "max_overlap or use longer utterances",
                split,
                measured,
                config.overlap_share,
            )
        stats[split] = {"overlap": measured, "minutes": seconds / 60, "voices": voices}
    bar.close()
    summary = {
        "kind": "meetings",
        "version": CORPUS_VERSION,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "speech_corpus": str(speech_dir),
        "config": dataclasses.asdict(config),
        "meetings": counts,
        "minutes": {split: round(s["minutes"], 2) for split, s in stats.items()},
        "overlap_share": {split: round(s["overlap"], 4) for split, s in stats.items()},
        "speakers": {split: sorted(s["voices"]) for split, s in stats.items()},
        "build_seconds": round(time.monotonic() - start_time, 1),
    }
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s meetings to %s", counts, out_dir)
    return paths


def _write_meetings(path: Path, rows: list[Meeting]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    text = "".join(json.dumps(dataclasses.asdict(row), ensure_ascii=False) + "\n" for row in rows)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
