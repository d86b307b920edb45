"""Music excerpts from music21's corpus rendered with fluidsynth."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.music import ENSEMBLES, _plan_excerpts, piece_split_table, select_pieces
from speechkit.data.music_render import parse_piece, parts_to_programs, read_sidecar, render_excerpt

CHORALE = "bach/bwv66.6.mxl"


def test_piece_selection_is_deterministic_and_varied() -> None:
    pieces = select_pieces(12, seed=0)
    assert pieces == select_pieces(12, seed=0) and pieces != select_pieces(12, seed=1)
    assert len({composer for composer, _ in pieces}) == 12


def test_piece_split_keeps_every_split_and_is_by_piece() -> None:
    table = piece_split_table([f"bach/p{i}.mxl" for i in range(20)])
    assert sorted(set(table.values())) == ["test", "train", "valid"]
    assert list(table.values()).count("test") == 2


def test_parts_to_programs_puts_bass_last() -> None:
    assert parts_to_programs(3, ENSEMBLES["brass"]) == [56, 60, 58]
    assert parts_to_programs(5, ENSEMBLES["strings"]) == [40, 40, 41, 41, 42]


@pytest.mark.slow
def test_render_one_excerpt(tmp_path) -> None:
    plan = {**_plan_excerpts("bach", CHORALE, seed=0)[0], "target_seconds": 4.0, "tempo_bpm": 120}
    path = tmp_path / "x.wav"
    tags = render_excerpt(parse_piece(CHORALE), plan, path, 24000)
    wav, rate = sf.read(path)
    assert rate == 24000 and wav.ndim == 1
    assert np.sqrt(np.mean(wav**2)) > 0.01
    # 4 s of measures at 120 bpm (+ release tail) and not the doubled length of expanded repeats.
    assert 3.0 < tags["duration"] < 8.0 and abs(len(wav) / 24000 - tags["duration"]) < 1e-3
    for key in ("composer", "piece", "instrument", "tempo_bpm", "key", "time_signature", "programs"):
        assert key in tags
    assert tags["tempo_bpm"] == 120 and tags["instrument"] == plan["ensemble"]
    assert read_sidecar(path)["key"] == tags["key"]
