"""speechkit_export.asr_graphs / asr_export: ASR graphs against the torch model, and ASR bundles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.checkpoint import save_checkpoint
from speechkit.errors import ConfigError
from speechkit_export.asr_export import VOCABULARY_FILE, vocabulary_json
from speechkit_export.asr_graphs import ASRDecoderStepGraph, check_asr_parity, export_asr_graphs
from speechkit_export.cli import main as export_main
from speechkit_export.pipeline import export_model
from speechkit_rt.bundle import Bundle

# Every weight of TINY is under the 4096 values a mode quantises; SMALL's MLPs (64 x 128) are not.
TINY = ASRConfig.tiny()
SMALL = ASRConfig.tiny(dim=64)
NO_CORPUS = "/no/corpus"
# float32 graphs vs torch (measured on these random models: CTC log-probs <= 2.2e-6, decoder step
# <= 1e-6); the bound.
FP32_TOLERANCE = 1e-3
# int8-dynamic vs the float torch model, measured on SMALL with the bundled speech: CTC log-probs
# 1.7e-2, decoder step 5.1e-3 (the default config with random weights: 3.2e-2 / 1.1e-2).
INT8_TOLERANCE = 0.05
# Packed modes vs the *quantised* torch model: only the float16 storage of the other tensors
# (embedding, depthwise and 2-D convs) remains; measured 3.7e-4 / 4.5e-4.
PACKED_EXPORT_TOLERANCE = 2e-3


def _model(config: ASRConfig) -> EBranchformerASR:
    torch.manual_seed(0)
    model = EBranchformerASR(config).eval()
    # Non-trivial statistics, so the graph's normalisation is exercised.
    model.frontend.set_statistics(
        torch.linspace(-6.0, -2.0, config.n_mels), torch.linspace(1.5, 3.0, config.n_mels)
    )
    return model


@pytest.fixture(scope="module")
def tiny() -> EBranchformerASR:
    return _model(TINY)


@pytest.fixture(scope="module")
def small() -> EBranchformerASR:
    return _model(SMALL)


@pytest.fixture(scope="module")
def clips(speech_16k) -> list[np.ndarray]:
    """Lengths other than the traced 1.5 s: 3 s of speech, 0.35 s of speech, 0.77 s of noise."""
    noise = np.random.default_rng(1).normal(0, 0.1, 12345).astype(np.float32)
    return [speech_16k[:48000], speech_16k[8000:13600], noise]


def test_fp32_graphs_match_torch(tiny, clips, tmp_path):
    graphs = export_asr_graphs(tiny, tmp_path)
    assert [spec.name for spec in graphs["encoder"].outputs] == ["ctc_log_probs", "memory"]
    for clip in clips:
        report = check_asr_parity(tiny, graphs, clip)
        assert report["ctc_max_abs"] < FP32_TOLERANCE
        assert report["memory_max_abs"] < FP32_TOLERANCE
        assert report["decoder_step_max_abs"] < FP32_TOLERANCE
        assert report["decoder_step_intermediate_max_abs"] < FP32_TOLERANCE
        assert report["greedy_equal"] == 1.0 and report["frame_argmax_equal_fraction"] == 1.0


def test_decoder_step_scores_hypotheses_in_a_batch(tiny, speech_16k, tmp_path):
    import onnxruntime as ort

    graphs = export_asr_graphs(tiny, tmp_path)
    session = ort.InferenceSession(str(graphs["decoder_step"].path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        memory = tiny.encode(torch.from_numpy(speech_16k[:16000])[None])[0]
    prefixes = torch.tensor([[2, 7, 9, 3, 12], [2, 5, 5, 5, 6], [2, 30, 4, 3, 3]])
    final, intermediate = session.run(None, {"tokens": prefixes.numpy(), "memory": memory.numpy()})
    assert final.shape == (3, TINY.vocab_size) and intermediate.shape == (3, 1, TINY.vocab_size)
    with torch.no_grad():
        for row in range(3):
            reference = ASRDecoderStepGraph(tiny)(prefixes[row : row + 1], memory)
            assert np.max(np.abs(final[row] - reference[0][0].numpy())) < FP32_TOLERANCE
            assert np.max(np.abs(intermediate[row] - reference[1][0].numpy())) < FP32_TOLERANCE


def test_fp32_bundle_from_a_checkpoint(tiny, tmp_path):
    checkpoint = save_checkpoint(tiny, tmp_path / "ckpt")
    report = export_model(checkpoint, tmp_path / "bundle", progress=False, corpus_dir=NO_CORPUS)
    manifest = report.manifest
    assert (manifest["task"], manifest["model_kind"], manifest["frame_rate"]) == (
        "asr",
        "ebranchformer_asr",
        25.0,
    )
    assert manifest["token_layout"] == {"num_codebooks": 0, "codebook_sizes": [], "vocab_size": 31}
    assert manifest["extra"]["frame_shift_samples"] == 640
    assert set(manifest["files"]) == {"encoder.onnx", "decoder_step.onnx", VOCABULARY_FILE}
    # The STFT basis is rebuilt at load from its recipe, not shipped.
    assert manifest["graphs"]["encoder"]["derived"]["initializers"][0]["kind"] == "dft_basis"
    metrics = manifest["metrics"]
    assert (
        metrics["encoder_ctc_max_abs"] < FP32_TOLERANCE and metrics["decoder_step_max_abs"] < FP32_TOLERANCE
    )
    assert metrics["runtime_greedy_equal_fraction"] == 1.0 and metrics["materialize_max_abs"] == 0.0
    assert report.metrics_ok()
    with Bundle.open(report.bundle) as bundle:
        table = json.loads(bundle.read_bytes(VOCABULARY_FILE))
    assert table["symbols"] == list(tiny.vocabulary.symbols)
    assert "runtime      greedy transcripts equal to the SDK's on 1/1 clips" in report.summary()


def test_int8_bundle_is_close(small, tmp_path):
    report = export_model(small, tmp_path / "int8", quant="int8", progress=False, corpus_dir=NO_CORPUS)
    metrics, quantization = report.manifest["metrics"], report.manifest["quantization"]
    assert quantization["mode"] == "int8-dynamic"
    assert quantization["details"]["quantized_graphs"] == ["encoder", "decoder_step"]
    assert 0 < metrics["encoder_ctc_max_abs"] < INT8_TOLERANCE
    assert 0 < metrics["decoder_step_max_abs"] < INT8_TOLERANCE
    assert metrics["materialize_max_abs"] == 0.0
    fp32 = export_model(small, tmp_path / "fp32", progress=False, corpus_dir=NO_CORPUS)
    assert report.sizes["on_disk_bytes"] < 0.6 * fp32.sizes["on_disk_bytes"]


def test_float_encoder_keeps_the_encoder_graph_float(small, tmp_path):
    report = export_model(
        small, tmp_path / "b", quant="int8", quantize_encoder=False, progress=False, corpus_dir=NO_CORPUS
    )
    assert report.manifest["quantization"]["details"]["quantized_graphs"] == ["decoder_step"]
    assert report.manifest["metrics"]["encoder_ctc_max_abs"] < FP32_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["decoupleq-w4", "decoupleq-w2"])
def test_decoupleq_bundle(small, quant, tmp_path):
    report = export_model(small, tmp_path / quant, quant=quant, progress=False, corpus_dir=NO_CORPUS)
    manifest = report.manifest
    assert "weights.npz" in manifest["files"]
    packed = [e for e in manifest["graphs"]["decoder_step"]["extra"]["weights"] if "bits" in e]
    assert packed and all(entry["bits"] == int(quant[-1]) for entry in packed)
    metrics = manifest["metrics"]
    assert metrics["export_encoder_ctc_max_abs"] < PACKED_EXPORT_TOLERANCE
    assert metrics["export_decoder_step_max_abs"] < PACKED_EXPORT_TOLERANCE
    assert metrics["materialize_max_abs"] == 0.0 and report.metrics_ok(PACKED_EXPORT_TOLERANCE)


def test_unsupported_requests_are_refused(tiny, tmp_path):
    with pytest.raises(ConfigError, match="int8-static"):
        export_model(tiny, tmp_path / "a", quant="int8-static", progress=False, corpus_dir=NO_CORPUS)
    with pytest.raises(ConfigError, match="Core ML"):
        export_model(tiny, tmp_path / "b", format="coreml", progress=False, corpus_dir=NO_CORPUS)
    with pytest.raises(ConfigError, match="no graph .* has weights to quantise"):
        export_model(tiny, tmp_path / "c", quant="int8", progress=False, corpus_dir=NO_CORPUS)


def test_cli_exports_an_asr_checkpoint(small, tmp_path, capsys):
    checkpoint = save_checkpoint(small, tmp_path / "asr")
    out = tmp_path / "bundles" / "asr-int8"
    code = export_main(
        [str(checkpoint), "--quant", "int8", "-o", str(out), "--no-progress", "--corpus", NO_CORPUS]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "int8-dynamic" in printed and "parity       decoder_step" in printed
    assert (out / "manifest.json").is_file()
    assert export_main([str(checkpoint), "--quant", "int8-static", "-o", str(out), "--no-progress"]) == 2


def test_vocabulary_json_is_the_model_table(tiny):
    table = json.loads(vocabulary_json(tiny))
    vocab = tiny.vocabulary
    assert table["symbols"][table["space_id"]] == " " and len(table["symbols"]) == len(vocab)
    assert (table["blank_id"], table["sos_eos_id"]) == (vocab.blank_id, vocab.sos_eos_id)
