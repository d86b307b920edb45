"""Small files shipped inside the package: a speech sample for demos, doctests and tests.

``sample_speech.wav`` is 5.1 s of 16 kHz speech from Festival's cmu_us_slt_arctic_hts voice (an
engine held out of every training split), reading ``sample_speech.txt``.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent


def sample_speech_path() -> Path:
    """Path of the bundled 16 kHz speech sample.

    Example:
        >>> sample_speech_path().name
        'sample_speech.wav'
    """
    return ASSETS_DIR / "sample_speech.wav"


def sample_speech_text() -> str:
    """The sentence spoken in :func:`sample_speech_path`."""
    return (ASSETS_DIR / "sample_speech.txt").read_text().strip()
