"""Peer codecs run through their command-line tools: Codec 2 (c2enc/c2dec) and Opus (opusenc/opusdec).

Each peer turns 16 kHz float audio into decoded 16 kHz float audio and reports the bits it wrote:

- **Codec 2** (Rowe, narrow-band sinusoidal codec) works on 8 kHz 16-bit raw PCM: the audio is
  resampled 16k -> 8k (soxr VHQ), encoded to a headerless ``.bin`` bitstream, decoded, and resampled
  back to 16k, so it is scored against the full-band reference. The payload is the ``.bin`` file: the
  codec frames as c2enc writes them (700C packs its 28-bit frames into 4 bytes, so it writes 0.8 kbps).
- **Opus** (libopus via opus-tools) in hard CBR. opusenc writes Ogg, whose page headers and
  OpusHead/OpusTags packets are container, not codec: the payload is the sum of the audio packets,
  read back from the Ogg pages (:func:`ogg_packets`); the whole file size is kept as well.

Peak memory of a peer (:func:`tool_peak_memory_mib`) is the largest peak RSS of its tool processes,
as GNU time reports it. The timed span of ``run`` is all of it (resampling, temp-file I/O, the tool processes), wall
clock; the tools are single-threaded C programs.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechkit.audio import resample
from speechkit.errors import BitstreamError

CODEC2_MODES_KBPS = {"700C": 0.7, "1200": 1.2, "3200": 3.2}
CODEC2_SAMPLE_RATE = 8000


@dataclass(frozen=True)
class RoundTrip:
    """What one encode + decode round trip produced.

    Args:
        audio: decoded float32 [T] at the input sample rate (cut or padded to the input length).
        payload_bits: bits of codec payload written (see the module docstring per peer).
        file_bits: bits of the whole file the encoder wrote.
        seconds: wall-clock seconds of the round trip.
    """

    audio: np.ndarray
    payload_bits: int
    file_bits: int
    seconds: float


@functools.cache
def gnu_time() -> str | None:
    """Path of GNU time (Debian package ``time``), which reports a child's peak RSS; None if absent."""
    path = shutil.which("time")
    if path is None:
        return None
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path if "GNU" in proc.stdout + proc.stderr else None


def _run_tool(*args: str, rss_log: list[int] | None = None) -> None:
    """Run a tool; with ``rss_log``, run it under GNU time and append its peak RSS (KiB).

    The RSS has to come from a small parent: a process forked from Python inherits (and reports
    in ``ru_maxrss``) the whole interpreter's resident pages until it execs.
    """
    command, report = list(args), None
    if rss_log is not None and gnu_time() is not None:
        report = tempfile.NamedTemporaryFile(prefix="bench-rss-", suffix=".txt", delete=False).name
        command = [gnu_time(), "-f", "%M", "-o", report, *command]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        if report is not None:
            rss_log.append(int(Path(report).read_text().split()[-1]))
    finally:
        if report is not None:
            os.unlink(report)


def _fit_length(wav: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(wav))] = wav[:length]
    return out


class Codec2Peer:
    """Codec 2 in one of its modes ("700C", "1200", "3200") via the Debian c2enc/c2dec tools.

    Args:
        mode: a key of :data:`CODEC2_MODES_KBPS`.
    """

    tools = ("c2enc", "c2dec")
    family = "Codec2"

    def __init__(self, mode: str) -> None:
        if mode not in CODEC2_MODES_KBPS:
            raise ValueError(f"unknown Codec 2 mode {mode!r}; use one of {sorted(CODEC2_MODES_KBPS)}")
        self.mode = mode
        self.name = f"Codec2 {mode}"
        self.nominal_kbps = CODEC2_MODES_KBPS[mode]

    def run(self, wav: np.ndarray, sample_rate: int, rss_log: list[int] | None = None) -> RoundTrip:
        """Encode and decode [T] float audio; returns decoded audio at ``sample_rate``.

        With ``rss_log``, the tools' peak RSS values (KiB) are appended to it (needs GNU time).
        """
        with tempfile.TemporaryDirectory(prefix="bench-codec2-") as tmp:
            raw_in, bits, raw_out = (os.path.join(tmp, n) for n in ("in.raw", "out.bin", "out.raw"))
            start = time.perf_counter()
            narrow = resample(wav, sample_rate, CODEC2_SAMPLE_RATE)
            np.round(np.clip(narrow, -1.0, 1.0) * 32767).astype("<i2").tofile(raw_in)
            _run_tool("c2enc", self.mode, raw_in, bits, rss_log=rss_log)  # a .bin name: headerless bitstream
            _run_tool("c2dec", self.mode, bits, raw_out, rss_log=rss_log)
            decoded = np.fromfile(raw_out, dtype="<i2").astype(np.float32) / 32768.0
            audio = _fit_length(resample(decoded, CODEC2_SAMPLE_RATE, sample_rate), len(wav))
            seconds = time.perf_counter() - start
            size_bits = Path(bits).stat().st_size * 8
        return RoundTrip(audio, size_bits, size_bits, seconds)


class OpusPeer:
    """Opus at a hard-CBR bitrate (kbit/s, >= 6) via opusenc/opusdec.

    Args:
        kbps: target bitrate passed to ``opusenc --bitrate``.
    """

    tools = ("opusenc", "opusdec")
    family = "Opus"

    def __init__(self, kbps: float) -> None:
        if kbps < 6:
            raise ValueError(f"opusenc accepts 6 kbit/s and more, got {kbps}")
        self.kbps = kbps
        self.name = f"Opus {kbps:g}k"
        self.nominal_kbps = float(kbps)

    def run(self, wav: np.ndarray, sample_rate: int, rss_log: list[int] | None = None) -> RoundTrip:
        """Encode and decode [T] float audio; returns decoded audio at ``sample_rate``.

        With ``rss_log``, the tools' peak RSS values (KiB) are appended to it (needs GNU time).
        """
        with tempfile.TemporaryDirectory(prefix="bench-opus-") as tmp:
            wav_in, opus, wav_out = (os.path.join(tmp, n) for n in ("in.wav", "out.opus", "out.wav"))
            start = time.perf_counter()
            sf.write(wav_in, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")
            encode = ["opusenc", "--quiet", "--bitrate", f"{self.kbps:g}", "--hard-cbr"]
            encode += ["--padding", "0", "--discard-comments", wav_in, opus]  # no slack in the Ogg header
            _run_tool(*encode, rss_log=rss_log)
            _run_tool(
                "opusdec", "--quiet", "--rate", str(sample_rate), "--float", opus, wav_out, rss_log=rss_log
            )
            decoded, _ = sf.read(wav_out, dtype="float32", always_2d=True)
            seconds = time.perf_counter() - start
            data = Path(opus).read_bytes()
        return RoundTrip(
            _fit_length(decoded[:, 0], len(wav)), opus_payload_bytes(data) * 8, len(data) * 8, seconds
        )


def tool_peak_memory_mib(peer: Codec2Peer | OpusPeer, wav: np.ndarray, sample_rate: int) -> float | None:
    """Largest peak RSS (MiB, whole process) among a peer's tool runs on ``wav``; None without GNU time."""
    if gnu_time() is None:
        return None
    rss_log: list[int] = []
    peer.run(wav, sample_rate, rss_log=rss_log)
    return max(rss_log) / 1024


def ogg_packets(data: bytes) -> list[bytes]:
    """Split a single-stream Ogg file into its packets (page headers dropped, laced segments joined).

    Args:
        data: the file's bytes.

    Returns:
        The packets in order.

    Raises:
        BitstreamError: a page does not start with the "OggS" capture pattern or is cut short.
    """
    packets: list[bytes] = []
    current = bytearray()
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS" or pos + 27 > len(data):
            raise BitstreamError(f"not an Ogg page at byte {pos}")
        num_segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + num_segments]
        pos += 27 + num_segments
        for size in lacing:  # a packet ends at the first segment shorter than 255 bytes
            current += data[pos : pos + size]
            pos += size
            if size < 255:
                packets.append(bytes(current))
                current.clear()
        if pos > len(data):
            raise BitstreamError("Ogg page runs past the end of the file")
    return packets


def opus_payload_bytes(data: bytes) -> int:
    """Bytes of Opus audio packets in an Ogg Opus file (OpusHead, OpusTags and page headers excluded)."""
    packets = ogg_packets(data)
    if len(packets) < 2 or not packets[0].startswith(b"OpusHead") or not packets[1].startswith(b"OpusTags"):
        raise BitstreamError("not an Ogg Opus stream (missing OpusHead/OpusTags)")
    return sum(len(p) for p in packets[2:])
