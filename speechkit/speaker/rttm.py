"""RTTM files: who speaks when, as the NIST Rich Transcription Time Marked format writes it.

One ``SPEAKER`` line per speech segment, ten whitespace-separated fields::

    SPEAKER <file-id> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>

Onset and duration are in seconds; :func:`write_rttm` writes them with three decimals (whole
milliseconds), as pyannote and dscore do. :func:`read_rttm` keeps ``SPEAKER`` lines only (other
types, such as legacy ``SPKR-INFO`` lines, and ``;;`` comments are skipped) and refuses a malformed
line with a :class:`~speechkit.errors.DataError` that names the file and line number.

Example:
    >>> import io
    >>> handle = io.StringIO()
    >>> write_rttm(handle, "meeting-1", [Segment(0.5, 2.0, "alice"), Segment(1.75, 3.0, "bob")])
    >>> print(handle.getvalue(), end="")
    SPEAKER meeting-1 1 0.500 1.500 <NA> <NA> alice <NA> <NA>
    SPEAKER meeting-1 1 1.750 1.250 <NA> <NA> bob <NA> <NA>
    >>> parse_rttm(handle.getvalue().splitlines())["meeting-1"][1]
    Segment(start=1.75, end=3.0, speaker='bob')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from speechkit.errors import DataError

__all__ = ["Segment", "parse_rttm", "read_rttm", "write_rttm"]

# Fields up to and including the speaker name; the two trailing <NA> fields are optional on read.
_MIN_FIELDS = 8


@dataclasses.dataclass(frozen=True)
class Segment:
    """One stretch of speech by one speaker.

    Args:
        start: onset in seconds (>= 0).
        end: offset in seconds (>= start).
        speaker: speaker label, without whitespace (RTTM fields are whitespace-separated).

    Raises:
        DataError: non-finite or negative times, end before start, or an empty/blank-containing label.

    Example:
        >>> Segment(1.0, 2.5, "s1").duration
        1.5
    """

    start: float
    end: float
    speaker: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise DataError(f"segment times must be finite, got start {self.start}, end {self.end}")
        if self.start < 0:
            raise DataError(f"segment starts before 0 s: {self.start}")
        if self.end < self.start:
            raise DataError(f"segment has a negative duration: {self.start} s to {self.end} s")
        _check_name(self.speaker, "speaker label")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise DataError(f"{what} must be a non-empty string without whitespace, got {name!r}")


def parse_rttm(lines: Iterable[str], where: str = "rttm") -> dict[str, list[Segment]]:
    """Parse RTTM text lines into segments by file id (each list sorted by start, end, speaker).

    Args:
        lines: the file's lines.
        where: how error messages name the source (a path, usually).

    Returns:
        File id -> its segments, file ids in order of first appearance.

    Raises:
        DataError: a ``SPEAKER`` line with too few fields, a non-numeric or negative onset or
            duration (the message gives ``where:line``).
    """
    by_file: dict[str, list[Segment]] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":  # blank, ";;" comment or another line type
            continue
        here = f"{where}:{number}"
        if len(fields) < _MIN_FIELDS:
            raise DataError(
                f"{here}: a SPEAKER line needs at least {_MIN_FIELDS} fields "
                f"(type file channel onset duration NA NA speaker), got {len(fields)}: {line.strip()!r}"
            )
        file_id, onset_text, duration_text, speaker = fields[1], fields[3], fields[4], fields[7]
        try:
            onset, duration = float(onset_text), float(duration_text)
        except ValueError as err:
            raise DataError(
                f"{here}: onset and duration must be numbers, got {onset_text!r} and {duration_text!r}"
            ) from err
        if not (math.isfinite(onset) and math.isfinite(duration)):
            raise DataError(f"{here}: onset and duration must be finite, got {onset} and {duration}")
        if duration < 0:
            raise DataError(f"{here}: negative duration {duration}")
        if onset < 0:
            raise DataError(f"{here}: negative onset {onset}")
        by_file.setdefault(file_id, []).append(Segment(onset, onset + duration, speaker))
    return {file_id: sorted(segs, key=_order) for file_id, segs in by_file.items()}


def read_rttm(path: str | Path) -> dict[str, list[Segment]]:
    """Read an RTTM file: file id -> segments sorted by start (see :func:`parse_rttm`).

    Raises:
        DataError: a missing file or a malformed line (named by its number).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"RTTM file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        return parse_rttm(handle, where=str(path))


def write_rttm(path_or_file: str | Path | TextIO, file_id: str, segments: Iterable[Segment]) -> None:
    """Write one file's segments as RTTM ``SPEAKER`` lines, sorted by start.

    Args:
        path_or_file: a path (overwritten; its folder is created) or an open text handle (lines are
            appended, so several file ids can share one RTTM file).
        file_id: the recording's id (no whitespace).
        segments: :class:`Segment` objects; times are written in whole milliseconds.

    Raises:
        DataError: a bad file id or something that is not a Segment.
    """
    _check_name(file_id, "file id")
    segments = list(segments)
    for segment in segments:
        if not isinstance(segment, Segment):
            raise DataError(f"write_rttm takes Segment objects, got {type(segment).__name__}")
    text = "".join(
        f"SPEAKER {file_id} 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {s.speaker} <NA> <NA>\n"
        for s in sorted(segments, key=_order)
    )
    if isinstance(path_or_file, (str, Path)):
        path = Path(path_or_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    elif hasattr(path_or_file, "write"):
        path_or_file.write(text)
    else:
        raise DataError(f"write_rttm needs a path or a text file, got {type(path_or_file).__name__}")


def _order(segment: Segment) -> tuple[float, float, str]:
    return (segment.start, segment.end, segment.speaker)
