"""onnxruntime quantisation modes on exported codec graphs: they load, run, shrink, and stay close."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from speechkit.checkpoint import load_model, resolve_checkpoint
from speechkit.codec.mel_rvq import MelRVQCodec, MelRVQCodecConfig
from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.errors import ConfigError
from speechkit_export.onnx_graphs import GraphSpec, calibration_feeds, check_parity, export_codec_graphs
from speechkit_export.ort_quant import QUANT_MODES, FeedCalibrationReader, quantize_graph

# Wide enough that its pointwise layers (64 x 192) and input conv (65 x 64 x 3) pass the size floor.
SMALL_RVQ = RVQCodecConfig(
    n_fft=128,
    hop_length=32,
    dim=64,
    latent_dim=16,
    num_quantizers=4,
    codebook_size=32,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
)
HOP = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[RVQCodec, dict[str, GraphSpec]]:
    torch.manual_seed(0)
    model = RVQCodec(SMALL_RVQ).eval()
    return model, export_codec_graphs(model, tmp_path_factory.mktemp("fp32"), example_frames=16)


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - test) ** 2)))


@pytest.mark.parametrize("mode", ["int8-dynamic", "w4"])
def test_weight_modes_load_run_and_shrink_the_decoder(exported, tmp_path: Path, mode: str):
    model, graphs = exported
    dst = tmp_path / f"decoder-{mode}.onnx"
    report = quantize_graph(graphs["decoder"].path, dst, mode)
    assert report["dst_bytes"] < report["src_bytes"] and dst.stat().st_size == report["dst_bytes"]
    assert 0.0 < report["quantized_weight_fraction"] < 1.0  # the iSTFT basis and codebooks stay fp32
    codes = np.random.default_rng(0).integers(0, 32, (1, 3, 23)).astype(np.int64)  # not the export shape
    wav = _run(dst, {"codes": codes})
    reference = _run(graphs["decoder"].path, {"codes": codes})
    assert wav.shape == (1, 23 * HOP) and np.all(np.isfinite(wav))
    ops = Counter(node.op_type for node in onnx.load(str(dst)).graph.node)
    if mode == "w4":
        assert report["quantized_nodes"] == {"MatMul": 5} and ops["MatMulNBits"] == 5
        assert report["block_size"] == 32
    else:
        assert report["quantized_nodes"] == {"Conv": 1, "MatMul": 5}  # 4 pointwise, 1 head
        assert ops["ConvInteger"] == 1 and ops["MatMulInteger"] == 5
    # Measured on this random model: 37 dB (int8-dynamic), 23 dB (w4); 22-38 dB over three seeds.
    assert _snr_db(reference, wav) > (25.0 if mode == "int8-dynamic" else 12.0)


def test_int8_dynamic_keeps_the_stft_basis_and_codebooks_in_float(exported, tmp_path: Path):
    _, graphs = exported
    dst = tmp_path / "encoder-int8.onnx"
    report = quantize_graph(graphs["encoder"].path, dst, "int8-dynamic")
    assert report["quantized_nodes"] == {"Conv": 2, "MatMul": 4}  # input and strided convs
    nodes = {node.name: node.op_type for node in onnx.load(str(dst)).graph.node}
    assert nodes["/stft/Conv"] == "Conv" and "/project_in/Conv" in nodes  # untouched fp32 convs
    codes = _run(dst, {"wav": np.zeros((1, 20 * HOP), np.float32)})
    assert codes.shape == (1, 4, 20) and codes.dtype == np.int64


def test_shared_dft_basis_of_griffin_lim_is_never_quantised(tmp_path: Path):
    """The mel-rvq decoder's only large weight is the STFT basis its Griffin-Lim loop shares."""
    model = MelRVQCodec(MelRVQCodecConfig(num_quantizers=2, codebook_size=16, griffin_lim_iters=2)).eval()
    graphs = export_codec_graphs(model, tmp_path, example_frames=8)
    names = {init.name for init in onnx.load(str(graphs["decoder"].path)).graph.initializer}
    assert "model.stft.basis" in names  # shared initializer, [1026, 1, 1024]
    with pytest.raises(ConfigError, match="no Conv/MatMul weight"):
        quantize_graph(graphs["decoder"].path, tmp_path / "x.onnx", "int8-dynamic")


def test_int8_static_runs_with_a_two_clip_calibration(exported, tmp_path: Path, speech_16k: np.ndarray):
    model, graphs = exported
    feeds = calibration_feeds(graphs, [speech_16k[:3000], speech_16k[8000:12000]], model.hop_length)
    assert len(feeds["decoder"]) == 2
    dst = tmp_path / "decoder-static.onnx"
    report = quantize_graph(graphs["decoder"].path, dst, "int8-static", calibration=feeds["decoder"])
    assert report["calibration_items"] == 2 and report["dst_bytes"] < report["src_bytes"]
    ops = Counter(node.op_type for node in onnx.load(str(dst)).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    codes = feeds["decoder"][1]["codes"][:, :, :40]
    wav = _run(dst, {"codes": codes})
    assert wav.shape == (1, 40 * HOP) and np.all(np.isfinite(wav))
    # Measured 21 dB here (14-21 dB over three seeds: two short clips calibrate a random model).
    assert _snr_db(_run(graphs["decoder"].path, {"codes": codes}), wav) > 10.0


def test_calibration_reader_replays_its_feeds():
    reader = FeedCalibrationReader([{"x": np.ones(2)}, {"x": np.zeros(2)}])
    assert [reader.get_next()["x"][0] for _ in range(2)] == [1.0, 0.0] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["x"][0] == 1.0


def test_bad_requests_raise_config_errors(exported, tmp_path: Path):
    _, graphs = exported
    src = graphs["decoder"].path
    assert QUANT_MODES == ("int8-dynamic", "int8-static", "w4")
    with pytest.raises(ConfigError, match="unknown quantisation mode"):
        quantize_graph(src, tmp_path / "x.onnx", "int4")
    with pytest.raises(ConfigError, match="calibration"):
        quantize_graph(src, tmp_path / "x.onnx", "int8-static")
    with pytest.raises(ConfigError, match="block_size"):
        quantize_graph(src, tmp_path / "x.onnx", "w4", block_size=48)
    with pytest.raises(ConfigError, match="no Conv/MatMul weight"):
        quantize_graph(src, tmp_path / "x.onnx", "int8-dynamic", min_weight_elements=10**9)


@pytest.mark.slow
def test_shipped_codec_rvq_quantised_graphs_stay_close(tmp_path: Path, speech_16k: np.ndarray):
    model = load_model(resolve_checkpoint("codec-rvq"))
    graphs = export_codec_graphs(model, tmp_path, example_frames=50)
    feeds = calibration_feeds(graphs, [speech_16k[:40000], speech_16k[40000:]], model.hop_length)
    # Measured decoder SNR against fp32 (5.1 s sample, torch codes): 35 dB, 32 dB, 20 dB; the first
    # codebook's codes from the quantised encoder agree on 98 %, 93 %, 96 % of frames.
    floors = {"int8-dynamic": 30.0, "int8-static": 24.0, "w4": 16.0}
    for mode, floor in floors.items():
        quantised = {}
        for name, spec in graphs.items():
            dst = tmp_path / f"{name}-{mode}.onnx"
            calibration = feeds[name] if mode == "int8-static" else None
            report = quantize_graph(spec.path, dst, mode, calibration=calibration)
            assert report["size_ratio"] < 0.45  # 14 MB fp32 graphs to 5.3-6.1 MB
            quantised[name] = dataclasses.replace(spec, file=dst.name, path=dst)
        parity = check_parity(model, quantised, speech_16k)
        assert parity["decoder_snr_db"] > floor and parity["first_codebook_equal_fraction"] > 0.88
