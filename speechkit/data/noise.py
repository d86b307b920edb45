"""Generated background noise and synthetic room impulse responses, with their manifests.

Noise types: white, pink (1/f), brown (1/f^2), band-limited, mains hum with harmonics, babble
(modulated speech-shaped noise, or real corpus speech when a speech corpus is given), impulsive
clicks, and fan-like noise (low-passed noise plus blade-pass tones). Room impulse responses are
exponentially decaying noise with a direct path, a few early reflections and a frequency-dependent
decay (high bands die faster, as air and wall absorption make them), RT60 0.1-1.0 s.

Layout::

    out_dir/noise/<type>/<type>-s<seed>-<index>.wav   16-bit, RMS -25 dBFS
    out_dir/rir/rir-s<seed>-<index>.wav               32-bit float, peak 1
    out_dir/noise.jsonl, out_dir/rir.jsonl            AudioClip manifests (split in each record)
    out_dir/corpus.json                               summary

The augmentations themselves (:func:`add_noise`, :func:`apply_rir`) live in
:mod:`speechkit.data.augment` and are re-exported here.

Example:
    >>> rng = np.random.default_rng(0)
    >>> wav, params = make_noise("pink", rng, 16000, 16000)
    >>> wav.shape, params["type"]
    ((16000,), 'pink')
    >>> rir, rir_params = make_rir(rng, 16000, rt60=0.3)
    >>> rir_params["rt60"], int(np.argmax(np.abs(rir))) == rir_params["direct_delay_samples"]
    (0.3, True)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt
from tqdm import tqdm

from speechkit.audio import load_audio, save_audio
from speechkit.data.augment import add_noise, apply_rir, fit_length
from speechkit.data.manifest import AudioClip, Utterance, read_manifest, write_manifest
from speechkit.errors import DataError

__all__ = ["NOISE_TYPES", "add_noise", "apply_rir", "build_noise_corpus", "make_noise", "make_rir"]

logger = logging.getLogger(__name__)

NOISE_TYPES = ("white", "pink", "brown", "bandlimited", "hum", "babble", "clicks", "fan")
NOISE_RMS_DBFS = -25.0
CLIP_SECONDS = 10.0


def _colored(rng: np.random.Generator, n: int, exponent: float, sample_rate: int = 16000) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f^exponent (0 white, 1 pink, 2 brown), flat below 20 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)  # no sub-audio drift
    spectrum /= freqs ** (exponent / 2)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def _band(
    x: np.ndarray, low: float | None, high: float | None, sample_rate: int, order: int = 4
) -> np.ndarray:
    nyquist = sample_rate / 2
    if low and high:
        sos = butter(order, [low / nyquist, min(high, 0.95 * nyquist) / nyquist], "bandpass", output="sos")
    elif low:
        sos = butter(order, low / nyquist, "highpass", output="sos")
    else:
        sos = butter(order, min(high, 0.95 * nyquist) / nyquist, "lowpass", output="sos")
    return sosfilt(sos, x)


def _envelope(rng: np.random.Generator, n: int, sample_rate: int, rate_hz: float) -> np.ndarray:
    """Smooth random amplitude envelope in [0, 1] with syllable-like fluctuations at ``rate_hz``."""
    num_points = max(4, int(n / sample_rate * rate_hz * 2))
    points = rng.uniform(0, 1, num_points) ** 2
    return np.interp(np.linspace(0, num_points - 1, n), np.arange(num_points), points)


def _hum(rng: np.random.Generator, n: int, sample_rate: int) -> tuple[np.ndarray, dict[str, Any]]:
    mains = float(rng.choice([50.0, 60.0]))
    num_harmonics = int(rng.integers(3, 9))
    t = np.arange(n) / sample_rate
    amps = rng.uniform(0.2, 1.0, num_harmonics) / np.arange(1, num_harmonics + 1)
    wav = sum(
        a * np.sin(2 * np.pi * mains * (k + 1) * t + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps)
    )
    floor = _colored(rng, n, 1.0, sample_rate)
    wav = wav + floor * (
        np.sqrt(np.mean(wav**2)) / np.sqrt(np.mean(floor**2)) * 10 ** (-40 / 20)
    )  # -40 dB hiss
    return wav, {"mains_hz": mains, "harmonics": num_harmonics}


def _babble(rng: np.random.Generator, n: int, sample_rate: int, speech: list[np.ndarray] | None):
    talkers = int(rng.integers(3, 9))
    if speech:
        picks = rng.choice(len(speech), size=min(talkers, len(speech)), replace=False)
        streams = [fit_length(speech[i], n, rng) for i in picks]
        source = "corpus"
    else:
        # Speech-shaped noise (pink, 100-4000 Hz) gated at 3-6 Hz syllable rates: a talker without words.
        streams = [
            _band(_colored(rng, n, 1.0, sample_rate), 100, 4000, sample_rate)
            * _envelope(rng, n, sample_rate, rng.uniform(3, 6))
            for _ in range(talkers)
        ]
        source = "modulated_noise"
    streams = [s / (np.sqrt(np.mean(s**2)) + 1e-12) for s in streams]
    return np.sum(streams, axis=0), {"talkers": len(streams), "source": source}


def _clicks(rng: np.random.Generator, n: int, sample_rate: int) -> tuple[np.ndarray, dict[str, Any]]:
    rate = float(rng.uniform(0.5, 8.0))
    wav = 10 ** (-45 / 20) * rng.standard_normal(n)
    count = rng.poisson(rate * n / sample_rate)
    burst = int(0.005 * sample_rate)
    decay = np.exp(-np.arange(burst) / (0.0008 * sample_rate))
    for start in rng.integers(0, max(1, n - burst), size=count):
        wav[start : start + burst] += rng.uniform(0.2, 1.0) * rng.standard_normal(burst) * decay
    return wav, {"clicks_per_second": round(rate, 2)}


def _fan(rng: np.random.Generator, n: int, sample_rate: int) -> tuple[np.ndarray, dict[str, Any]]:
    cutoff = float(rng.uniform(300, 2000))
    blade_hz = float(rng.uniform(40, 200))
    t = np.arange(n) / sample_rate
    body = _band(_colored(rng, n, 1.0, sample_rate), None, cutoff, sample_rate, order=2)
    body /= np.sqrt(np.mean(body**2)) + 1e-12
    tones = sum(np.sin(2 * np.pi * blade_hz * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    wobble = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
    return wobble * (body + 0.3 * tones), {"cutoff_hz": round(cutoff, 1), "blade_hz": round(blade_hz, 1)}


def make_noise(
    noise_type: str,
    rng: np.random.Generator,
    num_samples: int,
    sample_rate: int,
    speech: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Generate one noise clip.

    Args:
        noise_type: one of :data:`NOISE_TYPES`.
        rng: numpy Generator (all randomness comes from it).
        num_samples: length T.
        sample_rate: Hz.
        speech: utterances [T_i] to build babble from (None: modulated speech-shaped noise).

    Returns:
        (float32 [T] at RMS -25 dBFS, or lower where that would put peaks above 0.9;
        parameters including ``type``).
    """
    n = num_samples
    if noise_type in ("white", "pink", "brown"):
        wav, params = _colored(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[noise_type], sample_rate), {}
    elif noise_type == "bandlimited":
        low = float(np.exp(rng.uniform(np.log(50), np.log(2000))))
        high = min(low * float(rng.uniform(1.5, 8.0)), 0.45 * sample_rate)
        wav, params = (
            _band(rng.standard_normal(n), low, high, sample_rate),
            {"low_hz": round(low, 1), "high_hz": round(high, 1)},
        )
    elif noise_type == "hum":
        wav, params = _hum(rng, n, sample_rate)
    elif noise_type == "babble":
        wav, params = _babble(rng, n, sample_rate, speech)
    elif noise_type == "clicks":
        wav, params = _clicks(rng, n, sample_rate)
    elif noise_type == "fan":
        wav, params = _fan(rng, n, sample_rate)
    else:
        raise DataError(f"unknown noise type {noise_type!r}; choose one of {NOISE_TYPES}")
    wav = wav * (10 ** (NOISE_RMS_DBFS / 20) / (np.sqrt(np.mean(wav**2)) + 1e-12))
    wav = wav * min(1.0, 0.9 / np.max(np.abs(wav)))  # impulsive types: lower the level rather than clip
    return wav.astype(np.float32), {"type": noise_type, **params}


def make_rir(
    rng: np.random.Generator, sample_rate: int, rt60: float | None = None, drr_db: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Synthesise a room impulse response: direct path, early reflections, decaying diffuse tail.

    Args:
        rng: numpy Generator.
        sample_rate: Hz.
        rt60: broadband 60 dB decay time in seconds (default: uniform 0.1-1.0).
        drr_db: direct-to-reverberant energy ratio (default: uniform -3 to 12 dB).

    Returns:
        (float32 [L] with peak 1 at the direct path, L about 1.2 x RT60; parameters).
    """
    rt60 = float(rt60) if rt60 is not None else round(float(rng.uniform(0.1, 1.0)), 3)
    drr_db = float(drr_db) if drr_db is not None else round(float(rng.uniform(-3.0, 12.0)), 2)
    if not 0.01 <= rt60 <= 5.0:
        raise DataError(f"rt60 {rt60} s is outside 0.01-5 s")
    length = int((1.2 * rt60 + 0.05) * sample_rate)
    delay = int(rng.integers(int(0.001 * sample_rate), int(0.01 * sample_rate)))
    t = np.arange(length - delay) / sample_rate
    tail = np.zeros(length - delay)
    # Octave-ish bands with shorter decay at high frequencies (air and wall absorption).
    edges = [None, 500.0, 2000.0, None]
    for (low, high), factor in zip(zip(edges[:-1], edges[1:]), (1.15, 1.0, 0.7)):
        band_noise = _band(rng.standard_normal(length - delay), low, high, sample_rate, order=2)
        tail += band_noise * 10 ** (-3 * t / (rt60 * factor))  # amplitude -60 dB at rt60
    tail *= np.clip(t / 0.005, 0, 1)  # diffuse field builds up over the first 5 ms
    for _ in range(int(rng.integers(3, 8))):  # a few discrete early reflections within 50 ms
        at = int(rng.uniform(0.002, 0.05) * sample_rate)
        if at < len(tail):
            tail[at] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.6) * 10 ** (-3 * at / sample_rate / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))  # direct path has energy 1
    tail *= min(1.0, 0.9 / np.max(np.abs(tail)))  # the direct path stays the largest peak
    rir = np.zeros(length)
    rir[delay] = 1.0
    rir[delay + 1 :] += tail[1:]
    actual_drr = 10 * np.log10(1.0 / np.sum(tail[1:] ** 2))
    params = {"rt60": rt60, "drr_db": round(float(actual_drr), 2), "direct_delay_samples": delay}
    return rir.astype(np.float32), params


def _splits(count: int) -> list[str]:
    """train/valid/test labels for ``count`` items of one type: about 10 % valid, 10 % test."""
    held = max(1, round(0.1 * count)) if count >= 3 else 0
    return ["train"] * (count - 2 * held) + ["valid"] * held + ["test"] * held


def _babble_speech(
    speech_corpus: Path | None, split: str, sample_rate: int, limit: int = 40
) -> list[np.ndarray]:
    if speech_corpus is None or not (speech_corpus / f"{split}.jsonl").is_file():
        return []
    records = [r for r in read_manifest(speech_corpus / f"{split}.jsonl") if isinstance(r, Utterance)]
    return [
        load_audio(r.path, target_sample_rate=sample_rate)[0]
        for r in records[:: max(1, len(records) // limit)]
    ]


def build_noise_corpus(
    out_dir: str | Path,
    minutes: float = 10.0,
    seed: int = 0,
    sample_rate: int = 16000,
    num_rirs: int = 200,
    speech_corpus: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate noise clips and room impulse responses with manifests into ``out_dir``.

    Args:
        out_dir: corpus folder (existing files with the same names are kept).
        minutes: total noise audio, in 10 s clips spread evenly over :data:`NOISE_TYPES`.
        seed: same seed, same corpus.
        sample_rate: Hz of noise and RIRs.
        num_rirs: number of room impulse responses.
        speech_corpus: a speech corpus folder; babble of split X mixes its ``X.jsonl`` speech
            (so test babble never contains training talkers). None: modulated-noise babble.
        progress: show a tqdm bar.

    Returns:
        {"noise": noise manifest, "rir": RIR manifest}.
    """
    start = time.monotonic()
    if minutes <= 0 or num_rirs < 0:
        raise DataError(f"minutes must be > 0 and num_rirs >= 0, got {minutes}, {num_rirs}")
    out_dir = Path(out_dir)
    speech_dir = Path(speech_corpus) if speech_corpus is not None else None
    num_clips = max(len(NOISE_TYPES), round(minutes * 60 / CLIP_SECONDS))
    per_type = [
        num_clips // len(NOISE_TYPES) + (i < num_clips % len(NOISE_TYPES)) for i in range(len(NOISE_TYPES))
    ]
    babble_cache: dict[str, list[np.ndarray]] = {}
    clips, rirs = [], []
    bar = tqdm(total=num_clips + num_rirs, desc="noise corpus", disable=not progress)
    for type_index, (noise_type, count) in enumerate(zip(NOISE_TYPES, per_type)):
        for index, split in enumerate(_splits(count)):
            rng = np.random.default_rng([seed, type_index, index])
            speech = None
            if noise_type == "babble":
                speech = babble_cache.setdefault(split, _babble_speech(speech_dir, split, sample_rate))
            wav, params = make_noise(
                noise_type, rng, int(CLIP_SECONDS * sample_rate), sample_rate, speech or None
            )
            rel = f"noise/{noise_type}/{noise_type}-s{seed}-{index:04d}.wav"
            clips.append(_save_clip(out_dir, rel, wav, sample_rate, "noise", split, params, "PCM_16"))
            bar.update(1)
    for index, split in enumerate(_splits(num_rirs)):
        rir, params = make_rir(np.random.default_rng([seed, 1000, index]), sample_rate)
        rel = f"rir/rir-s{seed}-{index:04d}.wav"
        rirs.append(_save_clip(out_dir, rel, rir, sample_rate, "rir", split, params, "FLOAT"))
        bar.update(1)
    bar.close()
    paths = {
        "noise": write_manifest(out_dir / "noise.jsonl", clips),
        "rir": write_manifest(out_dir / "rir.jsonl", rirs),
    }
    summary = {
        "kind": "noise",
        "seed": seed,
        "sample_rate": sample_rate,
        "noise_types": dict(zip(NOISE_TYPES, per_type)),
        "babble_source": "corpus speech" if speech_dir is not None else "modulated noise",
        "minutes": {
            s: round(sum(c.duration for c in clips if c.split == s) / 60, 3)
            for s in ("train", "valid", "test")
        },
        "rirs": {s: sum(1 for r in rirs if r.split == s) for s in ("train", "valid", "test")},
        "build_seconds": round(time.monotonic() - start, 1),
    }
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return paths


def _save_clip(
    out_dir: Path,
    rel: str,
    wav: np.ndarray,
    sample_rate: int,
    kind: str,
    split: str,
    tags: dict,
    subtype: str,
) -> AudioClip:
    path = out_dir / rel
    if not path.is_file():
        tmp = path.with_name(path.stem + ".part.wav")
        save_audio(tmp, wav, sample_rate, subtype=subtype)
        tmp.replace(path)
    duration = sf.info(str(path)).frames / sample_rate
    return AudioClip(
        path=rel, kind=kind, duration=round(duration, 4), sample_rate=sample_rate, split=split, tags=tags
    )
