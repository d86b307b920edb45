"""Streaming step graphs of the causal codec: static shapes, state pairs, chunk-by-chunk == offline."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from speechkit.assets import sample_speech_path
from speechkit.audio import load_audio
from speechkit.checkpoint import load_model, resolve_checkpoint
from speechkit.codec.causal_rvq_codec import CausalRVQCodec, CausalRVQCodecConfig
from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.errors import ConfigError
from speechkit_export.onnx_graphs import export_codec_graphs
from speechkit_export.streaming_graphs import (
    DecoderStep,
    EncoderStep,
    check_streaming_parity,
    export_streaming_graphs,
    write_streaming_bundle,
)
from speechkit_rt.bundle import Bundle
from speechkit_rt.codec import CodecRuntime

TINY = CausalRVQCodecConfig(
    dim=32, latent_dim=16, num_quantizers=4, codebook_size=32, encoder_blocks=(1, 1), decoder_blocks=(1, 1)
)
# Measured: every code equal; decoder max |error| 2e-7 (tiny random model, noise) and 5e-7 (shipped
# codec-rvq-causal, speech of peak ~0.5) against offline torch. The bounds leave margin for other CPUs.
MAX_DECODER_ABS = 1e-5
TAIL = 160  # n_fft - stft_hop: the decoder step output lags by this many samples


@pytest.fixture(scope="module")
def tiny_model() -> CausalRVQCodec:
    torch.manual_seed(0)
    return CausalRVQCodec(TINY).eval()


@pytest.fixture(scope="module")
def tiny_graphs(tiny_model, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("graphs")
    graphs = dict(export_codec_graphs(tiny_model, out))
    graphs.update(export_streaming_graphs(tiny_model, out))
    return graphs


def _noise(num_samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(num_samples)).astype(np.float32)


def _session(spec) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])


def test_step_modules_in_torch_equal_the_offline_model(tiny_model):
    """The export-only wrappers (before any ONNX) step to the offline result, one token at a time."""
    encoder, decoder = EncoderStep(tiny_model), DecoderStep(tiny_model)
    wav = torch.from_numpy(_noise(320 * 12))
    state, codes = encoder.initial_state(), []
    for chunk in wav.split(320):
        step_codes, *state = encoder(chunk[None], *state)
        codes.append(step_codes)
    codes = torch.cat(codes, dim=-1)
    assert torch.equal(codes, tiny_model.encode_codes(wav[None]))
    state, audio = decoder.initial_state(), []
    for token in codes.split(1, dim=-1):
        step_wav, wav_tail, *state = decoder(token, *state)
        audio.append(step_wav)
    audio = torch.cat([*audio, wav_tail], dim=-1)[:, TAIL:]
    assert torch.allclose(audio, tiny_model.decode_codes(codes), atol=MAX_DECODER_ABS)


def test_graphs_have_static_shapes_and_paired_state(tiny_graphs):
    encoder, decoder = tiny_graphs["encoder_step"], tiny_graphs["decoder_step"]
    for spec in (encoder, decoder):
        entry = spec.to_manifest()
        declared = {t["name"]: t for t in entry["inputs"] + entry["outputs"]}
        assert entry["state"], "a step graph carries state"
        for pair in entry["state"]:
            source, sink = declared[pair["input"]], declared[pair["output"]]
            assert source["shape"] == sink["shape"] and all(isinstance(a, int) for a in source["shape"])
        loaded = onnx.load(str(spec.path))
        assert [i.name for i in loaded.graph.input] == [t["name"] for t in entry["inputs"]]
        assert [o.name for o in loaded.graph.output] == [t["name"] for t in entry["outputs"]]
        assert not [n for n in loaded.graph.node if n.op_type in ("Loop", "If", "Scan", "DFT")]
    assert encoder.inputs[0].shape == (1, 320) and encoder.outputs[0].shape == (1, 4, 1)
    assert decoder.inputs[0].shape == (1, "num_codebooks", 1)  # the only dynamic axis: k codebooks
    assert [t.shape for t in decoder.outputs[:2]] == [(1, 320), (1, TAIL)]
    assert decoder.extra == {"tokens_per_step": 1, "samples_per_step": 320, "output_offset_samples": TAIL}


def test_step_graphs_chunk_by_chunk_equal_offline_torch_and_the_offline_graphs(tiny_model, tiny_graphs):
    # 2 s plus an odd tail: the encoder's flush pads the last token with zeros, as encode_codes does.
    report = check_streaming_parity(tiny_model, tiny_graphs, _noise(32000 + 123))
    assert report["num_frames"] == 101
    assert report["codes_equal_fraction"] == 1.0
    assert report["offline_graph_codes_equal_fraction"] == 1.0
    assert report["decoder_max_abs"] < MAX_DECODER_ABS
    assert report["partial_decoder_max_abs"] < MAX_DECODER_ABS  # 2 of 4 codebooks
    assert report["flush_max_abs"] < MAX_DECODER_ABS
    assert report["offline_graph_max_abs"] < MAX_DECODER_ABS


def test_decoder_step_alignment_and_flush_tail(tiny_model, tiny_graphs):
    """Step j emits offline samples [320 j - 160, 320 (j + 1) - 160); the last wav_tail is the offline end."""
    session, spec = _session(tiny_graphs["decoder_step"]), tiny_graphs["decoder_step"]
    shapes = {t.name: t.shape for t in spec.inputs}
    state = {pair.input: np.zeros(shapes[pair.input], np.float32) for pair in spec.state}
    with torch.no_grad():
        codes = tiny_model.encode_codes(torch.from_numpy(_noise(320 * 8))[None])
        reference = tiny_model.decode_codes(codes)[0].numpy()
    names = [t.name for t in spec.outputs]
    for j in range(codes.shape[-1]):
        out = dict(zip(names, session.run(None, {"codes": codes[..., j : j + 1].numpy(), **state})))
        state = {p.input: out[p.output] for p in spec.state}
        start = 320 * j - TAIL
        expected = reference[max(start, 0) : start + 320]
        np.testing.assert_allclose(out["wav"][0, -len(expected) :], expected, atol=MAX_DECODER_ABS)
    np.testing.assert_allclose(out["wav_tail"][0], reference[-TAIL:], atol=MAX_DECODER_ABS)


def test_more_tokens_per_step_is_exact_on_whole_steps(tiny_model, tmp_path):
    graphs = export_streaming_graphs(tiny_model, tmp_path, tokens_per_step=3)
    assert graphs["encoder_step"].inputs[0].shape == (1, 960)
    whole = check_streaming_parity(tiny_model, graphs, _noise(960 * 4))  # 12 tokens: 4 whole steps
    assert whole["codes_equal_fraction"] == 1.0 and whole["decoder_max_abs"] < MAX_DECODER_ABS
    # 11 tokens: the last step is padded with code 0, whose first frame overlaps the last 160 samples
    # only; the encoder is exact anyway (causal, zero-padded like the offline encoder).
    partial = check_streaming_parity(tiny_model, graphs, _noise(960 * 4 - 320))
    assert partial["codes_equal_fraction"] == 1.0
    assert partial["flush_max_abs"] > MAX_DECODER_ABS  # a real difference, confined to the tail:
    assert partial["flush_max_abs"] == partial["decoder_max_abs"]


def test_refuses_a_non_causal_codec_and_bad_settings(tiny_model, tmp_path):
    rvq = RVQCodec(RVQCodecConfig(dim=16, latent_dim=8, num_quantizers=2, codebook_size=8))
    with pytest.raises(ConfigError, match="need a CausalRVQCodec, got RVQCodec"):
        export_streaming_graphs(rvq, tmp_path)
    with pytest.raises(ConfigError, match="tokens_per_step must be >= 1"):
        export_streaming_graphs(tiny_model, tmp_path, tokens_per_step=0)
    with pytest.raises(ConfigError, match="opset must be >= 17"):
        export_streaming_graphs(tiny_model, tmp_path, opset=16)


def test_streaming_bundle_validates_and_serves_both_runtimes(tiny_model, tmp_path):
    wav = _noise(16000 + 77)
    out = write_streaming_bundle(tiny_model, tmp_path / "bundle", wav, model_name="tiny-stream")
    with Bundle.open(out) as bundle:
        manifest = bundle.manifest
    assert sorted(manifest["graphs"]) == ["decoder", "decoder_step", "encoder", "encoder_step"]
    assert manifest["graphs"]["decoder_step"]["state"][-1] == {
        "input": "state_ola_tail",
        "output": "next_state_ola_tail",
    }
    assert manifest["model_kind"] == "causal_rvq_codec" and manifest["quantization"] == {"mode": "none"}
    metrics = manifest["metrics"]
    assert metrics["algorithmic_latency_ms"] == tiny_model.algorithmic_latency_ms == 30.0
    assert metrics["streaming_codes_equal_fraction"] == 1.0
    assert metrics["streaming_decoder_max_abs"] < MAX_DECODER_ABS
    # The offline graphs in the same bundle serve the whole-clip runtime.
    with CodecRuntime.open(out, num_threads=1) as codec:
        tokens = codec.encode(wav, 16000)
    np.testing.assert_array_equal(tokens.codes, tiny_model.encode_codes(torch.from_numpy(wav)[None]).numpy())


@pytest.mark.slow
def test_shipped_causal_codec_streams_like_offline_on_speech(tmp_path):
    model = load_model(resolve_checkpoint("codec-rvq-causal")).eval()
    graphs = dict(export_codec_graphs(model, tmp_path))
    graphs.update(export_streaming_graphs(model, tmp_path))
    wav, _ = load_audio(sample_speech_path(), target_sample_rate=16000)
    report = check_streaming_parity(model, graphs, wav[: 3 * 16000 + 123])
    assert report["num_frames"] == 151
    assert report["codes_equal_fraction"] == 1.0  # measured 1.0 (151 tokens x 12 codebooks)
    assert report["offline_graph_codes_equal_fraction"] == 1.0
    assert report["decoder_max_abs"] < MAX_DECODER_ABS  # measured 5.4e-7
    assert report["partial_decoder_max_abs"] < MAX_DECODER_ABS
    assert report["flush_max_abs"] < MAX_DECODER_ABS
    assert report["offline_graph_max_abs"] < MAX_DECODER_ABS
