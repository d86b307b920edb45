"""speechkit_rt.codec and speechkit_rt.cli: a tiny codec bundle run with onnxruntime against the torch model."""

from __future__ import annotations

import io
import json
import logging
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.audio import prepare_input as sdk_prepare_input
from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.errors import AudioError as SdkAudioError
from speechkit.tokenizers.tokens import Tokens
from speechkit_export.bundle_writer import write_bundle
from speechkit_export.onnx_graphs import export_codec_graphs
from speechkit_rt.cli import EXIT_BUNDLE, EXIT_INPUT, main
from speechkit_rt.codec import CodecRuntime
from speechkit_rt.errors import AudioError, BitstreamError, BundleError
from speechkit_rt.token_file import RuntimeTokens, write_token_file

TINY = RVQCodecConfig(
    n_fft=64,
    hop_length=16,
    dim=16,
    latent_dim=8,
    num_quantizers=3,
    codebook_size=16,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
)
NAME, FINGERPRINT = "tiny-rvq", "0123456789abcdef"
# Measured on this tiny random model and the bundled speech: every code equal, decoder max |error|
# 2e-7 on audio of peak 0.37. The bounds leave margin for other CPUs and onnxruntime versions.
MIN_CODES_EQUAL = 0.99
MAX_DECODER_ABS = 1e-4


def build_tiny_codec(seed: int = 0) -> RVQCodec:
    """The tiny random RVQ codec, named and fingerprinted as a loaded checkpoint would be."""
    torch.manual_seed(seed)
    model = RVQCodec(TINY).eval()
    model.checkpoint_name, model.fingerprint = NAME, FINGERPRINT
    return model


def codec_manifest_fields(model: RVQCodec, graph_entries: dict, **changes) -> dict:
    """Manifest fields of a codec bundle as ``manifest.schema.json`` asks (the writer adds the rest)."""
    codec = model.task_api()
    sizes = list(codec.codebook_sizes)
    fields = {
        "task": "codec",
        "model_kind": codec.kind,
        "model_name": codec.name,
        "sample_rate": codec.sample_rate,
        "frame_rate": codec.frame_rate,
        "token_layout": {
            "num_codebooks": len(sizes),
            "codebook_sizes": sizes,
            "bitrates_bps": [codec.bitrate(k) for k in range(1, len(sizes) + 1)],
        },
        "graphs": graph_entries,
        "quantization": {"mode": "none"},
        "extra": {"fingerprint": codec.fingerprint, "hop_length": int(model.hop_length)},
        "created": "2025-01-01T00:00:00Z",
    }
    fields.update(changes)
    return fields


def build_tiny_codec_bundle(root: Path) -> tuple[RVQCodec, Path]:
    """Export the tiny codec and write ``root/bundle`` and ``root/bundle.zip``; returns (model, zip)."""
    model = build_tiny_codec()
    graphs = export_codec_graphs(model, root / "graphs")
    files = {spec.file: spec.path for spec in graphs.values()}
    return model, write_bundle(
        root / "bundle",
        codec_manifest_fields(model, {name: spec.to_manifest() for name, spec in graphs.items()}),
        files,
        zip=True,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> types.SimpleNamespace:
    root = tmp_path_factory.mktemp("codec_bundle")
    model, zip_path = build_tiny_codec_bundle(root)
    return types.SimpleNamespace(model=model, codec=model.task_api(), zip=zip_path, folder=root / "bundle")


@pytest.fixture
def runtime(tiny):
    with CodecRuntime.open(tiny.folder, num_threads=1) as codec:
        yield codec


def _as_runtime_tokens(tokens: Tokens) -> RuntimeTokens:
    return RuntimeTokens(
        tokens.codes,
        tokens.frame_rate,
        tokens.codebook_sizes,
        tokens.kind,
        int(tokens.extras["num_samples"][0]),
    )


def test_properties_match_the_sdk_codec(tiny, runtime):
    codec = tiny.codec
    assert (runtime.sample_rate, runtime.frame_rate) == (codec.sample_rate, codec.frame_rate)
    assert runtime.codebook_sizes == codec.codebook_sizes and runtime.hop_length == tiny.model.hop_length
    assert (runtime.kind, runtime.name, runtime.fingerprint) == (codec.kind, codec.name, codec.fingerprint)
    for k in (None, 1, 2, 3):
        assert runtime.bitrate(k) == codec.bitrate(k)
    for kbps in (0.1, 2.0, 3.0, 4.0, 5.0, 100.0):
        assert runtime.num_codebooks_for(kbps) == codec.num_codebooks_for(kbps)


def test_encode_and_decode_match_the_torch_model(tiny, runtime, speech_16k):
    wav = speech_16k[: 16000 + 7]  # not a multiple of the hop: exercises the padding
    expected = tiny.codec.encode(wav, 16000)
    tokens = runtime.encode(wav, 16000)
    assert tokens.codes.shape == expected.codes.shape and tokens.num_samples == len(wav)
    assert np.mean(tokens.codes == expected.codes) >= MIN_CODES_EQUAL
    for k in (1, 2, 3):  # a lower bitrate is a slice, decoded by the same graph
        reference = tiny.codec.decode(expected.select(k))
        decoded = runtime.decode(_as_runtime_tokens(expected).select(k))
        assert decoded.dtype == np.float32 and decoded.shape == reference.shape == (len(wav),)
        assert np.max(np.abs(decoded - reference)) <= MAX_DECODER_ABS
    assert np.array_equal(runtime.encode(wav, 16000, num_codebooks=1).codes, tokens.codes[:, :1])


def test_zip_bundle_gives_the_same_tokens(tiny, runtime, speech_16k):
    with CodecRuntime.open(tiny.zip, num_threads=1) as from_zip:
        np.testing.assert_array_equal(
            from_zip.encode(speech_16k[:4000], 16000).codes, runtime.encode(speech_16k[:4000], 16000).codes
        )


def test_stereo_is_mixed_and_other_rates_resampled(tiny, runtime, speech_16k, caplog):
    wav = speech_16k[:8000]
    stereo = np.stack([wav, 0.5 * wav], axis=1)
    np.testing.assert_array_equal(
        runtime.encode(stereo, 16000).codes, runtime.encode(0.75 * wav, 16000).codes
    )
    with caplog.at_level(logging.INFO, logger="speechkit_rt.audio_io"):
        tokens = runtime.encode(np.repeat(wav, 3), 48000)  # a crude 48 kHz version of the clip
    assert "resampling audio from 48000 Hz to 16000 Hz" in caplog.text
    sdk_tokens = tiny.codec.encode(np.repeat(wav, 3), 48000)
    assert tokens.num_samples == int(sdk_tokens.extras["num_samples"][0]) == 8000
    # soxr and our resampler differ in their transition bands, so codes may differ a little.
    assert np.mean(tokens.codes == sdk_tokens.codes) >= 0.8


@pytest.mark.parametrize(
    ("wav", "sample_rate"),
    [
        (np.zeros(0, dtype=np.float32), 16000),
        (np.array([0.1, np.nan] * 100, dtype=np.float32), 16000),
        (np.array([0.1, np.inf] * 100, dtype=np.float32), 16000),
        (np.zeros(400, dtype=np.float32), 16000),
        (np.full((2, 400), 0.1, dtype=np.float32), 16000),
        (np.full(400, 0.1, dtype=np.float32), 100),
    ],
    ids=["empty", "nan", "inf", "silence", "channels-first", "rate"],
)
def test_bad_audio_is_refused_with_the_sdks_message(runtime, wav, sample_rate):
    with pytest.raises(SdkAudioError) as sdk_err:
        sdk_prepare_input(wav, sample_rate, 16000)
    with pytest.raises(AudioError) as runtime_err:
        runtime.encode(wav, sample_rate)
    assert str(runtime_err.value) == str(sdk_err.value)


def test_bad_codebook_counts_and_foreign_tokens_are_refused(runtime, speech_16k):
    wav = speech_16k[:3200]
    for k in (0, 4):
        with pytest.raises(ValueError, match="1..3"):
            runtime.encode(wav, 16000, num_codebooks=k)
    tokens = runtime.encode(wav, 16000)
    with pytest.raises(BitstreamError, match="'single_codec' model"):
        runtime.decode(RuntimeTokens(tokens.codes, tokens.frame_rate, tokens.codebook_sizes, "single_codec"))
    with pytest.raises(BitstreamError, match="codebook sizes"):
        runtime.decode(RuntimeTokens(tokens.codes, tokens.frame_rate, (32, 32, 32), "rvq_codec"))
    with pytest.raises(BitstreamError, match="RuntimeTokens"):
        runtime.decode(tokens.codes)


def test_tampered_bundle_is_refused(tiny, tmp_path, capsys):
    folder = shutil.copytree(tiny.folder, tmp_path / "bundle")
    graph = folder / "decoder.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch for decoder.onnx"):
        CodecRuntime.open(folder)
    assert main(["info", str(folder)]) == EXIT_BUNDLE
    assert "bundle refused: sha256 mismatch for decoder.onnx" in capsys.readouterr().err


def test_graph_changed_after_open_is_refused_when_loaded(tiny, tmp_path):
    folder = shutil.copytree(tiny.folder, tmp_path / "bundle")
    with CodecRuntime.open(folder) as codec:
        (folder / "encoder.onnx").write_bytes((folder / "decoder.onnx").read_bytes())
        with pytest.raises(BundleError, match="sha256 mismatch for encoder.onnx"):
            codec.encode(np.full(640, 0.1, dtype=np.float32), 16000)


def test_non_codec_and_coreml_bundles_are_refused(tiny, tmp_path):
    graphs = json.loads((tiny.folder / "manifest.json").read_text())["graphs"]
    files = {"encoder.onnx": tiny.folder / "encoder.onnx", "decoder.onnx": tiny.folder / "decoder.onnx"}
    asr = write_bundle(tmp_path / "asr", codec_manifest_fields(tiny.model, graphs, task="asr"), files)
    with pytest.raises(BundleError, match="'asr' bundle, not a codec"):
        CodecRuntime.open(asr)
    coreml_graphs = {**graphs, "decoder": {**graphs["decoder"], "runtime": "coreml"}}
    coreml = write_bundle(tmp_path / "cm", codec_manifest_fields(tiny.model, coreml_graphs), files)
    with pytest.raises(BundleError, match="'decoder' is a coreml graph.*Core ML"):
        CodecRuntime.open(coreml)


def test_packed_weights_are_materialised_through_speechkit_rt_weights(tiny, tmp_path, monkeypatch):
    """A graph whose manifest entry names a weights file opens through weights.materialize (spied on)."""
    from speechkit_rt import weights

    graphs = json.loads((tiny.folder / "manifest.json").read_text())["graphs"]
    # No packed entries: materialize then opens the graph as it is, which keeps this test independent
    # of the quantising exporter while going through the real call.
    graphs["decoder"]["extra"] = {"weights_file": "weights.npz", "weights_location": "d.bin", "weights": []}
    files = {
        "encoder.onnx": tiny.folder / "encoder.onnx",
        "decoder.onnx": tiny.folder / "decoder.onnx",
        "weights.npz": _npz_bytes(),
    }
    quantization = {"mode": "rtn-4", "bits": 4, "group_size": 32, "method": "rtn"}
    folder = write_bundle(
        tmp_path / "q", codec_manifest_fields(tiny.model, graphs, quantization=quantization), files
    )
    calls = []
    real = weights.materialize

    def spy(bundle, graph_name, **kwargs):
        calls.append((graph_name, kwargs))
        return real(bundle, graph_name, **kwargs)

    monkeypatch.setattr(weights, "materialize", spy)
    with CodecRuntime.open(folder, num_threads=1) as codec:
        tokens = codec.encode(np.full(640, 0.1, dtype=np.float32), 16000)
        assert codec.decode(tokens).shape == (640,)
    assert calls == [("decoder", {"num_threads": 1})]  # the encoder has no packed weights: a plain session
    monkeypatch.setitem(sys.modules, "speechkit_rt.weights", None)  # as if the module were missing
    with CodecRuntime.open(folder) as codec, pytest.raises(BundleError, match="no speechkit_rt.weights"):
        codec.decode(tokens)


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, unused=np.zeros(1, dtype=np.uint8))
    return buffer.getvalue()


def test_cli_round_trip_and_interop_with_the_sdk(tiny, tmp_path, speech_16k, capsys):
    wav = speech_16k[:12000]
    sf.write(tmp_path / "in.wav", wav, 16000, subtype="FLOAT")
    assert main(["info", str(tiny.zip)]) == 0
    assert "tiny-rvq (rvq_codec), task codec" in capsys.readouterr().out
    sktk = tmp_path / "out.sktk"
    assert (
        main(
            [
                "encode",
                str(tiny.zip),
                str(tmp_path / "in.wav"),
                "-o",
                str(sktk),
                "--kbps",
                "4",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "2 codebooks" in capsys.readouterr().out
    # The SDK decodes the runtime's file, and writes the same bytes for the same tokens.
    sdk_tokens = tiny.codec.from_bytes(sktk.read_bytes())
    assert tiny.codec.to_bytes(sdk_tokens) == sktk.read_bytes()
    assert (
        main(["decode", str(tiny.folder), str(sktk), "-o", str(tmp_path / "out.wav"), "--subtype", "FLOAT"])
        == 0
    )
    decoded, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 16000 and np.max(np.abs(decoded - tiny.codec.decode(sdk_tokens))) <= MAX_DECODER_ABS
    # The runtime decodes the SDK's file.
    (tmp_path / "sdk.sktk").write_bytes(tiny.codec.to_bytes(tiny.codec.encode(wav, 16000)))
    assert main(["decode", str(tiny.zip), str(tmp_path / "sdk.sktk"), "--threads", "1"]) == 0
    assert sf.read(tmp_path / "sdk.wav")[0].shape == (12000,)


def test_cli_exit_codes_for_bad_inputs(tiny, tmp_path, capsys):
    assert main(["encode", str(tiny.folder), str(tmp_path / "missing.wav")]) == EXIT_INPUT
    assert "audio file not found" in capsys.readouterr().err
    (tmp_path / "junk.sktk").write_bytes(b"not a token file")
    assert main(["decode", str(tiny.folder), str(tmp_path / "junk.sktk")]) == EXIT_INPUT
    assert "bad magic" in capsys.readouterr().err
    other = RuntimeTokens(np.zeros((1, 1, 4), dtype=np.int64), 500.0, (16,), "rvq_codec", 128)
    (tmp_path / "other.sktk").write_bytes(
        write_token_file(other, model="x", fingerprint="ffff", sample_rate=16000)
    )
    assert main(["decode", str(tiny.folder), str(tmp_path / "other.sktk")]) == EXIT_INPUT
    assert "weights ffff" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nowhere")]) == EXIT_BUNDLE
    with pytest.raises(SystemExit) as usage:
        main(["encode"])
    assert usage.value.code == 2
