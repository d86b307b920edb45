"""Peer text-to-speech engines for the TTS benchmark: eSpeak NG and Flite, run as command-line tools.

Each peer speaks a sentence into a temporary WAV file, which is read back as 16 kHz float32 mono
(resampled with soxr VHQ when the engine writes another rate), so its output goes through the same
recogniser and speaker encoder as speechkit's. One voice each by default:

- **eSpeak NG** (formant synthesis) with ``en-us``: 22.05 kHz;
- **Flite** (CMU, 2.2) with ``slt``, its US English female clustergen voice at 16 kHz. Flite's own
  default, ``kal``, is an 8 kHz diphone voice: band-limited, so not the fair peer.

The tools are single-threaded C programs; the timed span of :meth:`TtsPeer.synthesize` is all of
it (process start, file I/O, resampling), so "x real time" is what a caller pays end to end.

Example:
    >>> peers = available_tts_peers()  # those whose tool is on PATH
    >>> all(peer.sample_rate == 16000 for peer in peers)
    True
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import soundfile as sf

from speechkit.audio import resample

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class TtsPeer:
    """A TTS engine run as a subprocess; subclasses give the command line.

    Args:
        voice: the engine's voice name.

    Attributes:
        audio_seconds / processing_seconds: totals over every :meth:`synthesize` call since the last
            :meth:`reset_timing`.
    """

    tool = ""
    engine = ""
    default_voice = ""
    sample_rate = SAMPLE_RATE

    def __init__(self, voice: str | None = None) -> None:
        self.voice = voice or self.default_voice
        self.name = f"{self.engine} {self.voice}"
        self.reset_timing()

    def reset_timing(self) -> None:
        """Forget the timing totals."""
        self.audio_seconds = 0.0
        self.processing_seconds = 0.0

    @property
    def x_real_time(self) -> float:
        """Audio seconds produced per processing second since the last reset (higher is faster)."""
        return self.audio_seconds / self.processing_seconds if self.processing_seconds > 0 else float("nan")

    def command(self, text_file: str, wav_file: str) -> list[str]:
        """The command line that reads the sentence from ``text_file`` and writes ``wav_file``."""
        raise NotImplementedError

    def synthesize(self, text: str) -> np.ndarray:
        """Speak one sentence.

        Args:
            text: the sentence (passed through a file, so any leading "-" or quotes are safe).

        Returns:
            float32 [T] at 16 kHz, mono.

        Raises:
            RuntimeError: the tool is missing or failed (its stderr tail is in the message).
        """
        if shutil.which(self.tool) is None:
            raise RuntimeError(f"{self.tool} is not on PATH: install it with `bash scripts/setup.sh`")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"bench-{self.tool}-") as tmp:
            text_file, wav_file = os.path.join(tmp, "text.txt"), os.path.join(tmp, "out.wav")
            with open(text_file, "w", encoding="utf-8") as f:
                f.write(text.strip() + "\n")
            proc = subprocess.run(
                self.command(text_file, wav_file), capture_output=True, text=True, check=False
            )
            if proc.returncode != 0 or not os.path.isfile(wav_file):
                raise RuntimeError(f"{self.tool} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
            wav, rate = sf.read(wav_file, dtype="float32", always_2d=True)
        audio = wav.mean(axis=1)
        if rate != SAMPLE_RATE:
            audio = resample(audio, rate, SAMPLE_RATE)
        self.processing_seconds += time.perf_counter() - start
        self.audio_seconds += len(audio) / SAMPLE_RATE
        return np.ascontiguousarray(audio, dtype=np.float32)


class EspeakNgPeer(TtsPeer):
    """eSpeak NG (``espeak-ng -v VOICE -f text -w out.wav``), US English by default."""

    tool = "espeak-ng"
    engine = "eSpeak NG"
    default_voice = "en-us"

    def command(self, text_file: str, wav_file: str) -> list[str]:
        return [self.tool, "-v", self.voice, "-f", text_file, "-w", wav_file]


class FlitePeer(TtsPeer):
    """Flite (``flite -voice VOICE -f text -o out.wav``), the 16 kHz ``slt`` voice by default."""

    tool = "flite"
    engine = "Flite"
    default_voice = "slt"

    def command(self, text_file: str, wav_file: str) -> list[str]:
        return [self.tool, "-voice", self.voice, "-f", text_file, "-o", wav_file]


def available_tts_peers() -> list[TtsPeer]:
    """eSpeak NG and Flite with their default voices, each only if its tool is on PATH (else a warning)."""
    peers: list[TtsPeer] = []
    for peer_class in (EspeakNgPeer, FlitePeer):
        if shutil.which(peer_class.tool) is None:
            logger.warning("%s not found on PATH: skipping the %s peer", peer_class.tool, peer_class.engine)
        else:
            peers.append(peer_class())
    return peers
