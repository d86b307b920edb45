"""The speechkit command line: demo, models, and one-line errors with exit code 2."""

from __future__ import annotations

import soundfile as sf

from speechkit.cli import main


def test_models_lists_the_shipped_default(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mel-rvq-demo" in out and "codec" in out and "MB" in out


def test_demo_round_trips_the_bundled_sample(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kbps" in out and "real time" in out
    decoded, sr = sf.read(tmp_path / "decoded.wav")
    original, _ = sf.read(tmp_path / "input.wav")
    assert sr == 16000 and len(decoded) == len(original) > 16000
    assert (tmp_path / "tokens.npy").stat().st_size > 0


def test_demo_with_a_missing_file_fails_cleanly(tmp_path, capsys):
    assert main(["demo", "-i", str(tmp_path / "nope.wav"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speechkit: error:") and "not found" in err
    assert not (tmp_path / "decoded.wav").exists()


def test_demo_with_an_unknown_model_fails_cleanly(tmp_path, capsys):
    assert main(["demo", "--model", "no-such-model", "-o", str(tmp_path)]) == 2
    assert "shipped names" in capsys.readouterr().err
