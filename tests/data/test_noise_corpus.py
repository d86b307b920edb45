"""Noise types, synthetic RIRs, the augmentations and a tiny noise-corpus build."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechkit.data.augment import add_noise, apply_rir, measured_snr_db
from speechkit.data.manifest import read_manifest
from speechkit.data.noise import NOISE_TYPES, build_noise_corpus, make_noise, make_rir
from speechkit.errors import AudioError, DataError


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_noise_types_are_finite_and_at_level(noise_type: str) -> None:
    wav, params = make_noise(noise_type, np.random.default_rng(1), 16000, 16000)
    assert wav.shape == (16000,) and wav.dtype == np.float32 and params["type"] == noise_type
    rms_db = 20 * np.log10(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    assert np.all(np.isfinite(wav)) and np.max(np.abs(wav)) <= 0.9 + 1e-6
    assert -45.0 < rms_db <= -24.9


def test_noise_colours_have_their_slopes() -> None:
    def high_to_low_db(wav: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(wav)) ** 2
        freqs = np.fft.rfftfreq(len(wav), 1 / 16000)
        return 10 * np.log10(
            spec[(freqs > 4000) & (freqs < 6000)].mean() / spec[(freqs > 200) & (freqs < 400)].mean()
        )

    rng = np.random.default_rng(0)
    white, pink, brown = (
        high_to_low_db(make_noise(t, rng, 32000, 16000)[0]) for t in ("white", "pink", "brown")
    )
    assert abs(white) < 2 and -16 < pink < -10 and -32 < brown < -22  # 0, ~-13, ~-26 dB over 4 octaves


def test_babble_uses_given_speech() -> None:
    rng = np.random.default_rng(0)
    speech = [np.sin(np.arange(4000) * 0.05 * k).astype(np.float32) for k in range(1, 6)]
    wav, params = make_noise("babble", rng, 16000, 16000, speech=speech)
    assert params["source"] == "corpus" and 3 <= params["talkers"] <= 5 and np.std(wav) > 0


def test_unknown_noise_type_raises() -> None:
    with pytest.raises(DataError, match="unknown noise type"):
        make_noise("purple", np.random.default_rng(0), 100, 16000)


@pytest.mark.parametrize("rt60", [0.1, 0.5, 1.0])
def test_rir_decays_and_has_a_direct_path(rt60: float) -> None:
    rir, params = make_rir(np.random.default_rng(2), 16000, rt60=rt60)
    energy = rir.astype(np.float64) ** 2
    tenth = len(rir) // 10
    assert 10 * np.log10(energy[-tenth:].sum() / energy[:tenth].sum()) < -40
    assert int(np.argmax(np.abs(rir))) == params["direct_delay_samples"] and np.max(np.abs(rir)) == 1.0
    # Schroeder backward integration of the reverberant tail: -5 to -25 dB slope x 3 estimates RT60.
    tail = energy[params["direct_delay_samples"] + 1 :]
    edc = 10 * np.log10(np.cumsum(tail[::-1])[::-1] / tail.sum())
    t20 = 3 * (np.argmax(edc < -25) - np.argmax(edc < -5)) / 16000
    assert 0.6 * rt60 < t20 < 1.3 * rt60


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0])
def test_add_noise_hits_the_snr(snr_db: float) -> None:
    rng = np.random.default_rng(3)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    noise = make_noise("pink", rng, 5000, 16000)[0]  # shorter: tiled
    noisy = add_noise(speech, noise, snr_db, rng=rng)
    assert noisy.shape == speech.shape
    assert abs(measured_snr_db(speech, noisy) - snr_db) < 0.1


def test_add_noise_rejects_silence() -> None:
    with pytest.raises(AudioError):
        add_noise(np.zeros(100, dtype=np.float32), np.ones(100, dtype=np.float32), 10.0)


def test_apply_rir_keeps_length_level_and_timing() -> None:
    rng = np.random.default_rng(4)
    dry = np.zeros(16000, dtype=np.float32)
    dry[4000:4400] = rng.standard_normal(400)
    rir, params = make_rir(rng, 16000, rt60=0.4)
    wet = apply_rir(dry, rir)
    assert wet.shape == dry.shape
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(dry**2)), rel=1e-3)
    assert np.argmax(np.abs(np.correlate(wet[3000:5000], dry[4000:4400], "valid"))) == 1000  # no delay
    assert np.abs(wet[5000:]).max() > 0.001  # the tail rings on after the dry burst


def test_tiny_noise_corpus(tmp_path) -> None:
    paths = build_noise_corpus(tmp_path, minutes=1.5, num_rirs=6, progress=False)
    clips = read_manifest(paths["noise"])
    rirs = read_manifest(paths["rir"])
    assert {c.tags["type"] for c in clips} == set(NOISE_TYPES)
    assert {r.split for r in rirs} == {"train", "valid", "test"} and all(
        0.1 <= r.tags["rt60"] <= 1.0 for r in rirs
    )
    wav, rate = sf.read(clips[0].path)
    assert rate == 16000 and len(wav) == 160000
    first = paths["noise"].read_text()
    assert build_noise_corpus(tmp_path, minutes=1.5, num_rirs=6, progress=False)["noise"].read_text() == first
