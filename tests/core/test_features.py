"""speechkit.features: torch STFT/log-mel equal their numpy twin; ISTFT inverts STFT; ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechkit.features import ISTFT, STFT, LogMelSpectrogram
from speechkit_rt.features import log_mel_spectrogram, mel_filterbank, stft

SETTINGS = [(512, 160, 80, 2.0), (1024, 320, 100, 1.0), (400, 160, 40, 2.0)]


@pytest.mark.parametrize("n_fft,hop,n_mels,power", SETTINGS)
def test_log_mel_matches_numpy_twin_on_real_speech(speech_16k, n_fft, hop, n_mels, power):
    module = LogMelSpectrogram(16000, n_fft, hop, n_mels, power=power)
    torch_mel = module(torch.from_numpy(speech_16k)[None])[0].numpy()
    numpy_mel = log_mel_spectrogram(speech_16k, 16000, n_fft, hop, n_mels, power=power)
    assert torch_mel.shape == numpy_mel.shape == (n_mels, 1 + len(speech_16k) // hop)
    assert np.abs(torch_mel - numpy_mel).max() < 1e-4


def test_dft_conv_path_equals_fft_path(speech_16k):
    wav = torch.from_numpy(speech_16k)[None]
    fast, exportable = STFT(512, 128), STFT(512, 128, use_dft_matmul=True)
    (r1, i1), (r2, i2) = fast(wav), exportable(wav)
    scale = torch.sqrt(r1**2 + i1**2).max()
    assert torch.allclose(r1, r2, atol=1e-5 * scale) and torch.allclose(i1, i2, atol=1e-5 * scale)
    reference = stft(speech_16k, 512, 128)
    assert np.abs(r1[0].numpy() - reference.real).max() < 1e-5 * float(scale)


@pytest.mark.parametrize("use_dft_matmul", [False, True])
def test_istft_inverts_stft(speech_16k, use_dft_matmul):
    hop = 256
    wav = torch.from_numpy(speech_16k[: hop * 200])[None]
    real, imag = STFT(1024, hop)(wav)
    back = ISTFT(1024, hop, use_dft_matmul=use_dft_matmul)(real, imag)
    assert back.shape == wav.shape
    assert (back - wav).abs().max() < 1e-4


def test_features_stay_float32_under_bf16_autocast(speech_16k):
    module = LogMelSpectrogram(16000, 512, 160, 80)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mel = module(torch.from_numpy(speech_16k)[None])
    assert mel.dtype == torch.float32
    reference = log_mel_spectrogram(speech_16k, 16000, 512, 160, 80)
    assert np.abs(mel[0].numpy() - reference).max() < 1e-4


def test_mel_filterbank_is_slaney_normalised():
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and fb.min() >= 0
    freqs = np.linspace(0, 8000, 257)
    areas = (fb * (freqs[1] - freqs[0])).sum(axis=1)  # unit-area triangles up to discretisation
    assert np.allclose(areas[5:], 1.0, atol=0.15)
    with pytest.raises(ValueError):
        mel_filterbank(16000, 512, 40, f_min=5000, f_max=4000)


@pytest.mark.slow
def test_log_mel_exports_to_onnx(tmp_path, speech_16k):
    import onnxruntime as ort

    module = LogMelSpectrogram(16000, 512, 160, 80).eval()
    path = tmp_path / "mel.onnx"
    torch.onnx.export(
        module,
        (torch.from_numpy(speech_16k[:16000])[None],),
        str(path),
        input_names=["audio"],
        output_names=["log_mel"],
        dynamic_axes={"audio": {0: "batch", 1: "samples"}, "log_mel": {0: "batch", 2: "frames"}},
        opset_version=18,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for length in (8000, len(speech_16k)):  # a length other than the traced one
        out = session.run(None, {"audio": speech_16k[None, :length]})[0][0]
        reference = log_mel_spectrogram(speech_16k[:length], 16000, 512, 160, 80)
        assert out.shape == reference.shape
        assert np.abs(out - reference).max() < 2e-4  # float32 DFT-as-convolution vs float64 FFT


@pytest.mark.parametrize("use_dft_matmul", [False, True])
def test_same_padding_gives_n_frames_and_n_hops(speech_16k, use_dft_matmul):
    hop = 160
    wav = torch.from_numpy(speech_16k[: hop * 300])[None]
    real, imag = STFT(640, hop, padding="same", use_dft_matmul=use_dft_matmul)(wav)
    assert real.shape[-1] == 300
    reference = stft(speech_16k[: hop * 300], 640, hop, padding="same")
    assert np.abs(real[0].numpy() - reference.real).max() < 1e-3
    back = ISTFT(640, hop, padding="same", use_dft_matmul=use_dft_matmul)(real, imag)
    assert back.shape == wav.shape
    # Edges see only part of the window overlap; the interior must be exact.
    assert (back - wav)[:, hop:-hop].abs().max() < 1e-4
