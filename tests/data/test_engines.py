"""Each TTS engine speaks one short sentence as finite, non-silent 16 kHz audio."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.data.engines import synthesize
from speechkit.errors import DataError

TEXT = "The sun is warm today."


@pytest.mark.parametrize(
    ("engine", "voice", "settings"),
    [
        ("espeak-ng", "en-gb-scotland+f2", {"rate": 160, "pitch": 60}),
        ("flite", "slt", {"duration_stretch": 1.1, "f0_mean": 180.0}),
        ("flite", "kal", {}),
        ("festival", "kal_diphone", {"f0_mean": 95.0}),
        ("festival", "cmu_us_slt_arctic_hts", {"duration_stretch": 0.95}),
    ],
)
def test_engine_speaks(engine: str, voice: str, settings: dict) -> None:
    wav = synthesize(engine, TEXT, voice, settings)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 0.5 < len(wav) / 16000 < 5.0
    assert np.all(np.isfinite(wav)) and np.sqrt(np.mean(wav**2)) > 0.01


def test_vtl_warp_shortens_and_raises() -> None:
    plain = synthesize("espeak-ng", TEXT, "en-us+m1")
    warped = synthesize("espeak-ng", TEXT, "en-us+m1", {"vtl_warp": 1.1})
    assert len(warped) == pytest.approx(len(plain) / 1.1, abs=2)


def test_bad_requests_raise_data_error() -> None:
    with pytest.raises(DataError, match="unknown TTS engine"):
        synthesize("sam", TEXT, "x")
    with pytest.raises(DataError, match="unknown flite voice"):
        synthesize("flite", TEXT, "nobody")
    with pytest.raises(DataError, match="espeak-ng failed|espeak-ng.*exit"):
        synthesize("espeak-ng", TEXT, "xx-nonexistent-voice")
    with pytest.raises(DataError, match="empty text"):
        synthesize("flite", "  ", "slt")


def test_missing_tool_names_the_debian_package(monkeypatch) -> None:
    monkeypatch.setattr("speechkit.data.engines.shutil.which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install festival"):
        synthesize("festival", TEXT, "kal_diphone")
