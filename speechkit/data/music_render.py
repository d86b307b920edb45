"""Turn one planned excerpt of a music21 score into a mono wav: re-score, write MIDI, run fluidsynth.

Used by :mod:`speechkit.data.music`; a plan is a dict with ``composer``, ``piece`` (path inside
music21's corpus), ``ensemble``, ``programs`` (GM programs, last one for the lowest part),
``tempo_bpm``, ``target_seconds``, ``start_fraction`` and ``index``.

Example:
    >>> parts_to_programs(4, (40, 40, 41, 42)), parts_to_programs(2, (40, 40, 41, 42))
    ([40, 40, 41, 42], [40, 42])
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from speechkit.audio import loudness_normalize, save_audio
from speechkit.data.engines import require_tool
from speechkit.data.speech import trim_silence
from speechkit.errors import DataError

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
MAX_SECONDS = 30.0
RENDER_TIMEOUT_S = 120.0
TARGET_LUFS = -23.0


def parse_piece(piece: str) -> Any:
    """Parse a score of music21's bundled corpus (no pickle cache read or written); returns a Score."""
    from music21 import converter, corpus, stream

    path = Path(corpus.__file__).parent / piece
    try:
        parsed = converter.parseFile(path, forceSource=True, storePickle=False)
    except Exception as err:  # music21's parsers raise many unrelated types on malformed files
        raise DataError(f"music21 cannot parse {piece}: {err}") from err
    if isinstance(parsed, stream.Opus):
        # ABC files store each voice of a piece as a tune of the same title: merge them back into
        # parts; a collection of different tunes stays an Opus, and its first tune is used.
        merged = parsed.mergeScores()
        parsed = merged if isinstance(merged, stream.Score) else (parsed.scores[0] if parsed.scores else None)
    if isinstance(parsed, stream.Part):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    if parsed is None or not parsed.parts:
        raise DataError(f"{piece} has no parts")
    for part in parsed.parts:
        if not part.getElementsByClass(stream.Measure):
            part.makeMeasures(inPlace=True)  # unbarred scores: bar them by their time signature
    return parsed


def parts_to_programs(num_parts: int, programs: tuple[int, ...] | list[int]) -> list[int]:
    """GM program of each part: in order, with the last (lowest) part on the ensemble's bass instrument."""
    programs = list(programs)
    if num_parts == 1 or len(programs) == 1:
        return [programs[0]] * num_parts
    return [programs[min(i, len(programs) - 2)] for i in range(num_parts - 1)] + [programs[-1]]


def _measure_span(score: Any, plan: dict[str, Any]) -> tuple[int, int]:
    """First and last measure index giving about ``target_seconds`` at the plan's tempo."""
    from music21 import stream

    measures = list(score.parts[0].getElementsByClass(stream.Measure))
    if not measures:
        raise DataError(f"{plan['piece']} has no measures")
    seconds = [float(m.duration.quarterLength) * 60.0 / plan["tempo_bpm"] for m in measures]
    start = min(int(plan["start_fraction"] * len(measures)), len(measures) - 1)
    end, total = start, seconds[start]
    while total < plan["target_seconds"] and end + 1 < len(measures):
        end += 1
        total += seconds[end]
    while total < plan["target_seconds"] and start > 0:  # ran off the end: grow backwards
        start -= 1
        total += seconds[start]
    return start, end


def make_excerpt(score: Any, plan: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The re-scored excerpt (repeats removed, ensemble instruments, plan tempo) and its tags."""
    from music21 import bar, instrument, repeat, stream, tempo

    start, end = _measure_span(score, plan)
    excerpt = score.measures(start, end + 1, indicesNotNumbers=True)  # index form: end is exclusive
    for measure in excerpt.recurse().getElementsByClass(stream.Measure):
        # MIDI export expands repeats, which would double the planned length.
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = None
    removable = [instrument.Instrument, tempo.TempoIndication, repeat.RepeatExpression]
    for container in list(excerpt.recurse(streamsOnly=True, includeSelf=True)):
        container.removeByClass(removable)
    parts = list(excerpt.parts)
    for part, program in zip(parts, parts_to_programs(len(parts), plan["programs"])):
        part.insert(0, instrument.instrumentFromMidiProgram(program))
        part.insert(0, tempo.MetronomeMark(number=plan["tempo_bpm"]))
    try:
        key = str(excerpt.analyze("key"))
    except Exception:  # key analysis fails on unpitched or empty excerpts; the tag is informative only
        key = "unknown"
    signatures = list(excerpt.recurse().getElementsByClass("TimeSignature"))
    title = (
        score.metadata.title
        if score.metadata is not None and score.metadata.title
        else Path(plan["piece"]).stem
    )
    tags = {
        "composer": plan["composer"],
        "piece": plan["piece"],
        "title": str(title),
        "instrument": plan["ensemble"],
        "programs": parts_to_programs(len(parts), plan["programs"]),
        "tempo_bpm": plan["tempo_bpm"],
        "key": key,
        "time_signature": signatures[0].ratioString if signatures else "unknown",
        "measures": [start, end],
        "excerpt": plan["index"],
    }
    return excerpt, tags


def render_midi(midi_path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Render a MIDI file with fluidsynth and the FluidR3 GM soundfont; returns mono float32 [T].

    fluidsynth 2.3's fast render sometimes never stops on a valid file (it kept writing past 2 GB on
    a 20 s Monteverdi excerpt), so it writes raw samples and is stopped once ``max_seconds`` of audio
    exist; the result is cut to exactly that many samples, which keeps the output deterministic.
    """
    fluidsynth = require_tool("fluidsynth")
    max_samples = int(max_seconds * sample_rate)
    max_bytes = max_samples * 2 * 4  # stereo float32
    with tempfile.TemporaryDirectory(prefix="speechkit-music-") as tmp:
        out = Path(tmp) / "render.raw"
        cmd = [fluidsynth, "-ni", "-q", "-g", "0.5", "-r", str(sample_rate), "-T", "raw", "-O", "float"]
        cmd += ["-E", "little", "-F", str(out), SOUNDFONT, str(midi_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + RENDER_TIMEOUT_S
        while proc.poll() is None:
            if (out.is_file() and out.stat().st_size >= max_bytes) or time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(0.02)
        _, stderr = proc.communicate()
        if not out.is_file() or out.stat().st_size < max_bytes and proc.returncode != 0:
            raise DataError(f"fluidsynth failed on {midi_path}: {stderr.decode('utf-8', 'replace')[-300:]}")
        raw = np.fromfile(out, dtype="<f4", count=2 * max_samples)
    return raw[: len(raw) // 2 * 2].reshape(-1, 2).mean(axis=1).astype(np.float32)


def render_excerpt(score: Any, plan: dict[str, Any], path: Path, sample_rate: int) -> dict[str, Any]:
    """Render one planned excerpt to ``path`` (16-bit mono wav) with a ``.json`` sidecar of its tags.

    Returns:
        The tags, plus ``duration`` in seconds.

    Raises:
        DataError: music21 or fluidsynth failure, or silent / non-finite audio.
    """
    try:
        excerpt, tags = make_excerpt(score, plan)
    except DataError:
        raise
    except Exception as err:  # music21 fails in many ways on unusual scores: skip the excerpt, keep building
        raise DataError(
            f"music21 cannot make an excerpt of {plan['piece']}: {type(err).__name__}: {err}"
        ) from err
    with tempfile.TemporaryDirectory(prefix="speechkit-midi-") as tmp:
        midi_path = Path(tmp) / "excerpt.mid"
        try:
            excerpt.write("midi", fp=str(midi_path))
        except Exception as err:  # music21's MIDI writer fails on some exotic notation
            raise DataError(f"music21 cannot write MIDI for {plan['piece']}: {err}") from err
        # The notes last highestTime quarters at the plan's tempo; 3 s more lets the last ones ring out.
        seconds = float(excerpt.highestTime) * 60.0 / plan["tempo_bpm"] + 3.0
        wav = render_midi(midi_path, sample_rate, min(seconds, MAX_SECONDS + 3.0))
    if wav.size == 0 or not np.all(np.isfinite(wav)) or float(np.max(np.abs(wav))) < 1e-4:
        raise DataError(f"fluidsynth rendered silence for {plan['piece']} excerpt {plan['index']}")
    wav = trim_silence(wav, sample_rate, threshold_db=-50.0, margin_s=0.2)
    limit = int(MAX_SECONDS * sample_rate)
    if len(wav) > limit:  # a tempo-less pickup or long fermata overshoot: cut with a 0.5 s fade
        wav = wav[:limit].copy()
        fade = int(0.5 * sample_rate)
        wav[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    wav = loudness_normalize(wav, sample_rate, TARGET_LUFS, max_peak=0.95)
    tags["duration"] = round(len(wav) / sample_rate, 4)
    tmp_wav = path.with_name(path.stem + ".part.wav")
    save_audio(tmp_wav, wav, sample_rate)
    tmp_wav.replace(path)
    sidecar = path.with_suffix(".json")
    sidecar.with_suffix(".part").write_text(json.dumps(tags, indent=1), encoding="utf-8")
    sidecar.with_suffix(".part").replace(sidecar)
    return dict(tags)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """Tags of an already rendered excerpt (wav and sidecar both present), else None."""
    sidecar = path.with_suffix(".json")
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # a damaged sidecar: render again
