"""Offline TTS engines (espeak-ng, flite, festival) wrapped as ``text -> float32 16 kHz mono``.

Each engine runs as a subprocess writing a temporary wav file, with a timeout, and its output is
checked (non-empty, finite, not silent) and resampled to the corpus rate with soxr VHQ. A missing
engine raises :class:`~speechkit.errors.DataError` naming the Debian package that installs it.

Speaker variety beyond the engines' own voices comes from a vocal-tract-length (VTL) warp done
by resampling: reading audio recorded at ``sample_rate * warp`` as if it were at ``sample_rate``
scales every frequency (formants and pitch) by ``warp`` and the duration by ``1 / warp``, like
``sox speed``. VTL perturbation (Jaitly & Hinton 2013, "Vocal Tract Length Perturbation improves
speech recognition") is the usual cheap way to widen speaker coverage.

Example:
    >>> wav = synthesize("espeak-ng", "Hello there, my friend.", "en-us+m3", {"vtl_warp": 1.05})
    >>> wav.dtype, wav.ndim, len(wav) > 8000
    (dtype('float32'), 1, True)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from speechkit.audio import resample
from speechkit.errors import DataError

CORPUS_SAMPLE_RATE = 16000
DEFAULT_TIMEOUT_S = 60.0
ENGINES = ("espeak-ng", "flite", "festival")

ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
)
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")

# Debian package providing each external program / festival voice (for error messages).
_PACKAGES = {
    "espeak-ng": "espeak-ng",
    "flite": "flite",
    "text2wave": "festival",
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
_FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices"))


def require_tool(name: str) -> str:
    """Path of program ``name`` or a DataError naming the Debian package that installs it."""
    found = shutil.which(name)
    if found is None:
        package = _PACKAGES.get(name, name)
        raise DataError(f"{name} is not installed; install it with `apt-get install {package}`")
    return found


def _require_festival_voice(voice: str) -> None:
    if not any(root.is_dir() and any(root.glob(f"*/{voice}")) for root in _FESTIVAL_VOICE_DIRS):
        package = _PACKAGES.get(voice, f"the festvox package of {voice}")
        raise DataError(
            f"festival voice {voice} is not installed; install it with `apt-get install {package}`"
        )


def _run(cmd: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise DataError(f"{cmd[0]} timed out after {timeout:.0f} s") from err
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise DataError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {message}")


def _espeak_cmd(text_file: Path, out: Path, voice: str, settings: Mapping[str, Any]) -> list[str]:
    cmd = [require_tool("espeak-ng"), "-v", voice, "-w", str(out), "-f", str(text_file)]
    if "rate" in settings:  # words per minute, espeak default 175
        cmd += ["-s", str(int(settings["rate"]))]
    if "pitch" in settings:  # 0-99, default 50
        cmd += ["-p", str(int(settings["pitch"]))]
    return cmd


def _flite_cmd(text_file: Path, out: Path, voice: str, settings: Mapping[str, Any]) -> list[str]:
    if voice not in FLITE_VOICES:
        raise DataError(f"unknown flite voice {voice!r}; choose one of {FLITE_VOICES}")
    cmd = [require_tool("flite"), "-voice", voice, "-f", str(text_file), "-o", str(out)]
    if "duration_stretch" in settings:
        cmd += ["--setf", f"duration_stretch={float(settings['duration_stretch']):.3f}"]
    if "f0_mean" in settings:  # Hz; the rms voice ignores it
        cmd += ["--setf", f"int_f0_target_mean={float(settings['f0_mean']):.1f}"]
    return cmd


def _festival_cmd(text_file: Path, out: Path, voice: str, settings: Mapping[str, Any]) -> list[str]:
    if voice not in FESTIVAL_VOICES:
        raise DataError(f"unknown festival voice {voice!r}; choose one of {FESTIVAL_VOICES}")
    _require_festival_voice(voice)
    cmd = [require_tool("text2wave"), "-o", str(out), "-eval", f"(voice_{voice})"]
    if "duration_stretch" in settings:
        cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {float(settings['duration_stretch']):.3f})"]
    if "f0_mean" in settings and voice.endswith("_diphone"):
        # Diphone voices take their mean pitch from int_lr_params; the HTS voice has its own model.
        cmd += [
            "-eval",
            f"(set! int_lr_params (cons (list 'target_f0_mean {float(settings['f0_mean']):.1f}) int_lr_params))",
        ]
    return cmd + [str(text_file)]


_COMMANDS = {"espeak-ng": _espeak_cmd, "flite": _flite_cmd, "festival": _festival_cmd}


def synthesize(
    engine: str,
    text: str,
    voice: str,
    settings: Mapping[str, Any] | None = None,
    sample_rate: int = CORPUS_SAMPLE_RATE,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> np.ndarray:
    """Speak ``text`` with one engine voice and return float32 mono audio at ``sample_rate``.

    Args:
        engine: "espeak-ng", "flite" or "festival".
        text: the sentence.
        voice: engine voice: espeak-ng ``accent+variant`` (e.g. "en-gb-x-rp+f2"), a flite voice
            (kal, kal16, awb, rms, slt) or a festival voice (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts).
        settings: optional engine settings: espeak-ng ``rate`` (wpm) and ``pitch`` (0-99); flite and
            festival ``duration_stretch`` and ``f0_mean`` (Hz); any engine ``vtl_warp`` (see module doc).
        sample_rate: output rate in Hz.
        timeout: seconds before the engine process is killed.

    Returns:
        Audio [T], float32.

    Raises:
        DataError: unknown engine/voice, missing tool, engine failure or timeout, empty/silent/NaN output.
    """
    settings = dict(settings or {})
    if engine not in _COMMANDS:
        raise DataError(f"unknown TTS engine {engine!r}; choose one of {ENGINES}")
    if not text.strip():
        raise DataError("cannot synthesise empty text")
    with tempfile.TemporaryDirectory(prefix="speechkit-tts-") as tmp:
        text_file, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(text.strip() + "\n", encoding="utf-8")
        _run(_COMMANDS[engine](text_file, out, voice, settings), timeout)
        if not out.is_file() or out.stat().st_size <= 44:
            raise DataError(f"{engine} voice {voice} wrote no audio for {text!r}")
        try:
            wav, native_rate = sf.read(str(out), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise DataError(f"{engine} voice {voice} wrote an unreadable wav: {err}") from err
    wav = wav.mean(axis=1)
    if wav.size == 0 or not np.all(np.isfinite(wav)) or float(np.max(np.abs(wav))) < 1e-4:
        raise DataError(f"{engine} voice {voice} produced empty, silent or non-finite audio for {text!r}")
    warp = float(settings.get("vtl_warp", 1.0))
    if not 0.5 <= warp <= 2.0:
        raise DataError(f"vtl_warp {warp} is outside 0.5-2.0")
    # Pretend the audio was recorded at native_rate * warp: frequencies scale by warp (module doc).
    return resample(wav, int(round(native_rate * warp)), sample_rate)
