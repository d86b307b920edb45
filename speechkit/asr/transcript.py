"""The named result types of recognition: :class:`Word`, :class:`Transcript`, and their text, JSON
and SubRip (SRT) renderings.

Example:
    >>> t = Transcript("hello world", (Word("hello", 0.12, 0.5, 0.9), Word("world", 0.6, 1.04, 0.8)), 1.5)
    >>> print(t.to_srt())
    1
    00:00:00,120 --> 00:00:01,040
    hello world
    <BLANKLINE>
    >>> t.to_dict()["words"][1]["end"]
    1.04
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Word:
    """A recognised word: text, start/end in seconds from the start of the audio, confidence in [0, 1]."""

    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Transcript:
    """What :meth:`SpeechRecognizer.transcribe` returns.

    Attributes:
        text: the transcript (lowercase words separated by single spaces; "" when nothing was said).
        words: one :class:`Word` per word, in order, with monotonic times inside [0, duration].
        duration: seconds of audio transcribed.
        confidence: mean word confidence (1.0 for an empty transcript of silence).
    """

    text: str
    words: tuple[Word, ...]
    duration: float
    confidence: float = 1.0

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "duration": round(self.duration, 3),
            "confidence": round(self.confidence, 4),
            "words": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(w).items()} for w in self.words],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_srt(self, max_words: int = 12, max_seconds: float = 6.0, max_gap: float = 1.0) -> str:
        """SubRip cues of at most ``max_words`` words / ``max_seconds``, split at pauses over ``max_gap``."""
        cues: list[list[Word]] = []
        for word in self.words:
            if (
                not cues
                or len(cues[-1]) >= max_words
                or word.end - cues[-1][0].start > max_seconds
                or word.start - cues[-1][-1].end > max_gap
            ):
                cues.append([])
            cues[-1].append(word)
        blocks = [
            f"{i}\n{_srt_time(cue[0].start)} --> {_srt_time(cue[-1].end)}\n{' '.join(w.text for w in cue)}\n"
            for i, cue in enumerate(cues, start=1)
        ]
        return "\n".join(blocks)


def _srt_time(seconds: float) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"
