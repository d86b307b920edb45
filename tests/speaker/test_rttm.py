"""RTTM reading and writing: round trips, validation and error messages naming the line."""

from __future__ import annotations

import io

import pytest

from speechkit.errors import DataError
from speechkit.speaker.rttm import Segment, parse_rttm, read_rttm, write_rttm


def test_round_trip_through_a_file(tmp_path) -> None:
    segments = [Segment(1.25, 2.5, "bob"), Segment(0.0, 1.5, "alice"), Segment(2.0, 4.125, "alice")]
    path = tmp_path / "sub" / "m.rttm"
    write_rttm(path, "meet-1", segments)
    assert read_rttm(path) == {"meet-1": sorted(segments, key=lambda s: s.start)}
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "SPEAKER meet-1 1 0.000 1.500 <NA> <NA> alice <NA> <NA>"


def test_several_files_share_one_handle_and_comments_are_skipped(tmp_path) -> None:
    handle = io.StringIO()
    handle.write(";; a comment\n\n")
    write_rttm(handle, "a", [Segment(0.0, 1.0, "x")])
    write_rttm(handle, "b", [Segment(2.0, 3.0, "y"), Segment(0.5, 1.0, "z")])
    handle.write("SPKR-INFO b 1 <NA> <NA> <NA> unknown y <NA> <NA>\n")
    parsed = parse_rttm(handle.getvalue().splitlines())
    assert list(parsed) == ["a", "b"]
    assert parsed["b"] == [Segment(0.5, 1.0, "z"), Segment(2.0, 3.0, "y")]


def test_nine_field_lines_are_accepted() -> None:
    assert parse_rttm(["SPEAKER f 1 0.5 1.0 <NA> <NA> s1 <NA>"]) == {"f": [Segment(0.5, 1.5, "s1")]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("SPEAKER f 1 0.5 -1.0 <NA> <NA> s1 <NA> <NA>", "negative duration"),
        ("SPEAKER f 1 -0.5 1.0 <NA> <NA> s1 <NA> <NA>", "negative onset"),
        ("SPEAKER f 1 zero 1.0 <NA> <NA> s1 <NA> <NA>", "must be numbers"),
        ("SPEAKER f 1 0.5 nan <NA> <NA> s1 <NA> <NA>", "finite"),
        ("SPEAKER f 1 0.5 1.0", "at least 8 fields"),
    ],
)
def test_malformed_lines_name_their_line_number(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.rttm"
    path.write_text("SPEAKER f 1 0.0 1.0 <NA> <NA> s1 <NA> <NA>\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        read_rttm(path)
    assert f"{path}:3" in str(err.value)


def test_missing_file_raises(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_rttm(tmp_path / "none.rttm")


def test_segment_validation() -> None:
    assert Segment(1, 3, "a").duration == 2
    with pytest.raises(DataError, match="negative duration"):
        Segment(2.0, 1.0, "a")
    with pytest.raises(DataError, match="before 0"):
        Segment(-1.0, 1.0, "a")
    with pytest.raises(DataError, match="whitespace"):
        Segment(0.0, 1.0, "two words")
    with pytest.raises(DataError, match="whitespace"):
        write_rttm(io.StringIO(), "bad id", [])
    with pytest.raises(DataError, match="Segment objects"):
        write_rttm(io.StringIO(), "f", [(0.0, 1.0, "a")])
