"""Codec ONNX graphs: declarations, dynamic lengths and codebook counts, torch vs onnxruntime parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from speechkit.checkpoint import load_model, resolve_checkpoint
from speechkit.codec.esc import ESCCodec, ESCCodecConfig
from speechkit.codec.mel_rvq import MelRVQCodec, MelRVQCodecConfig
from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.codec.single_codec import SingleCodec, SingleCodecConfig
from speechkit.errors import ConfigError
from speechkit_export.onnx_graphs import (
    CODEC_GRAPHS,
    ResidualCodebookTable,
    calibration_feeds,
    check_parity,
    export_codec_graphs,
)

TINY_RVQ = RVQCodecConfig(
    n_fft=128,
    hop_length=32,
    dim=32,
    latent_dim=16,
    num_quantizers=4,
    codebook_size=32,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
)
TINY_MEL = MelRVQCodecConfig(
    n_fft=256, hop_length=64, n_mels=20, num_quantizers=3, codebook_size=16, griffin_lim_iters=4
)
TINY_SINGLE = SingleCodecConfig(
    dim=32,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
    codebook_size=64,
    reference_channels=16,
    reference_blocks=1,
    global_dim=16,
    global_num_codes=2,
    global_codebook_size=16,
    lstm_hidden_size=16,
)
# Measured on these tiny random models and on speech: every code equal, decoder errors ~1e-7 (RVQ,
# Single-Codec) and 3e-4 of a 10^2-scale signal (mel-rvq, Griffin-Lim); the bounds leave margin.
MIN_CODES_EQUAL = 0.99
MIN_DECODER_SNR_DB = 80.0


def test_rvq_codes_of_the_first_k_codebooks_do_not_depend_on_k():
    """So the encoder graph may emit all K codebooks and a lower bitrate slices them."""
    model = RVQCodec(TINY_RVQ).eval()
    wav = torch.randn(1, 64 * 30) * 0.1
    every = model.encode_codes(wav)
    for k in range(1, TINY_RVQ.num_quantizers):
        assert torch.equal(model.encode_codes(wav, k), every[:, :k])


def test_codebook_table_decodes_any_number_of_stages_like_the_quantizer():
    quantizer = RVQCodec(TINY_RVQ).eval().quantizer
    table = ResidualCodebookTable(quantizer)
    codes = torch.randint(0, TINY_RVQ.codebook_size, (2, TINY_RVQ.num_quantizers, 7))
    for k in range(1, TINY_RVQ.num_quantizers + 1):
        torch.testing.assert_close(table(codes[:, :k]), quantizer.decode(codes[:, :k]), atol=1e-6, rtol=0)


def _check(report: dict[str, float], frames: int) -> None:
    assert report["num_frames"] == frames
    assert report["codes_equal_fraction"] >= MIN_CODES_EQUAL
    assert report["decoder_snr_db"] >= MIN_DECODER_SNR_DB
    if "partial_decoder_snr_db" in report:
        assert report["partial_decoder_snr_db"] >= MIN_DECODER_SNR_DB


def test_rvq_codec_graphs_match_torch_at_another_length(tmp_path: Path, speech_16k: np.ndarray):
    model = RVQCodec(TINY_RVQ).eval()
    graphs = export_codec_graphs(model, tmp_path, example_frames=20)
    assert set(graphs) == set(CODEC_GRAPHS["rvq_codec"]) == {"encoder", "decoder"}
    assert graphs["encoder"].to_manifest() == {
        "file": "encoder.onnx",
        "runtime": "onnxruntime",
        "inputs": [{"name": "wav", "dtype": "float32", "shape": [1, "num_samples"]}],
        "outputs": [{"name": "codes", "dtype": "int64", "shape": [1, 4, "num_frames"]}],
    }
    assert (tmp_path / "decoder.onnx").is_file() and not model.training
    # 37 frames of 64 samples (plus a partial one, padded) against an export at 20 frames.
    report = check_parity(model, graphs, speech_16k[16000 : 16000 + 64 * 37 + 10])
    _check(report, 38)
    assert report["decoder_max_abs"] < 1e-5


def test_mel_rvq_graphs_match_torch_given_its_initial_phase(tmp_path: Path, speech_16k: np.ndarray):
    model = MelRVQCodec(TINY_MEL).eval()
    graphs = export_codec_graphs(model, tmp_path, example_frames=20)
    phase = graphs["decoder"].inputs[1]
    assert phase.name == "initial_phase" and phase.shape == (1, 129, "num_stft_frames")
    _check(check_parity(model, graphs, speech_16k[: 64 * 45]), 45)


@pytest.mark.slow
def test_single_codec_graphs_export_global_codes_and_any_length(tmp_path: Path, speech_16k: np.ndarray):
    model = SingleCodec(TINY_SINGLE).eval()
    graphs = export_codec_graphs(model, tmp_path, example_frames=20)
    assert set(graphs) == {"encoder", "global_encoder", "decoder"}
    assert graphs["global_encoder"].outputs[0].shape == (1, 2)
    assert [spec.name for spec in graphs["decoder"].inputs] == ["codes", "global_codes"]
    for frames in (25, 31):  # an odd token count: the resampling module pads a partial block
        report = check_parity(model, graphs, speech_16k[: 640 * frames])
        _check(report, frames)
        assert report["global_codes_equal_fraction"] == 1.0


def test_calibration_feeds_follow_the_graph_inputs(tmp_path: Path, speech_16k: np.ndarray):
    model = MelRVQCodec(TINY_MEL).eval()
    graphs = export_codec_graphs(model, tmp_path, example_frames=10)
    feeds = calibration_feeds(graphs, [speech_16k[:1000], speech_16k[1000:3000]], model.hop_length)
    assert [feed["wav"].shape for feed in feeds["encoder"]] == [(1, 1024), (1, 2048)]
    decoder = feeds["decoder"][1]
    assert decoder["codes"].shape == (1, 3, 32) and decoder["codes"].dtype == np.int64
    assert decoder["initial_phase"].shape == (1, 129, 33)


def test_exported_graph_declares_its_dynamic_axes(tmp_path: Path):
    graphs = export_codec_graphs(RVQCodec(TINY_RVQ).eval(), tmp_path, example_frames=10)
    graph = onnx.load(str(graphs["decoder"].path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, "num_codebooks", "num_frames"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_unexportable_kind_and_low_opset_are_refused(tmp_path: Path):
    esc = ESCCodec(
        ESCCodecConfig(
            patch_bins=40,
            dims=(8, 16),
            depths=(1, 1),
            time_strides=(1, 2),
            head_dim=8,
            num_streams=2,
            num_groups=2,
            codebook_size=16,
        )
    )
    with pytest.raises(ConfigError, match="esc_codec"):
        export_codec_graphs(esc, tmp_path)
    with pytest.raises(ConfigError, match="opset"):
        export_codec_graphs(RVQCodec(TINY_RVQ), tmp_path, opset=16)


@pytest.mark.slow
def test_shipped_codec_rvq_exports_with_exact_codes(tmp_path: Path, speech_16k: np.ndarray):
    model = load_model(resolve_checkpoint("codec-rvq"))
    graphs = export_codec_graphs(model, tmp_path, example_frames=50)
    report = check_parity(model, graphs, speech_16k)  # 5.1 s of unseen speech, 256 frames
    # Measured: every one of 12 x 256 codes equal, decoder max-abs 6e-7 (SNR 122 dB).
    assert report["codes_equal_fraction"] >= MIN_CODES_EQUAL
    assert report["decoder_max_abs"] < 1e-4 and report["decoder_snr_db"] >= 90.0
