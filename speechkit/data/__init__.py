"""Offline corpus synthesis: speech (espeak-ng / flite / festival), music (music21 + fluidsynth), noise.

The build machines have no internet, so speechkit makes its own training data from Debian packages
and the scores bundled with music21, and describes it with JSONL manifests
(:mod:`speechkit.data.manifest`). Builders are deterministic (same seed, same manifests) and
idempotent (a re-run reuses files already written).

Example:
    >>> from speechkit.data import speaker_table
    >>> len(speaker_table()) > 20
    True
"""

from __future__ import annotations

from speechkit.data.augment import add_noise, apply_rir
from speechkit.data.manifest import AudioClip, Utterance, read_manifest, write_manifest
from speechkit.data.music import build_music_corpus
from speechkit.data.noise import build_noise_corpus, make_noise, make_rir
from speechkit.data.speakers import Speaker, speaker_table
from speechkit.data.speech import build_speech_corpus

__all__ = [
    "AudioClip",
    "Speaker",
    "Utterance",
    "add_noise",
    "apply_rir",
    "build_music_corpus",
    "build_noise_corpus",
    "build_speech_corpus",
    "make_noise",
    "make_rir",
    "read_manifest",
    "speaker_table",
    "write_manifest",
]
