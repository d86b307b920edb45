"""speechkit_export.tts_graphs: MobileSpeech graphs against torch, the tts bundle, int8, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.errors import ConfigError
from speechkit.tts.mobilespeech import MobileSpeech, MobileSpeechConfig
from speechkit_export.pipeline import export_model
from speechkit_export.tts_graphs import RowTable, export_tts, export_tts_graphs
from speechkit_rt.bundle import Bundle

CODEC = RVQCodecConfig(
    n_fft=64, hop_length=16, dim=16, latent_dim=8, num_quantizers=3, codebook_size=16,
    encoder_blocks=(1, 1), decoder_blocks=(1, 1),
)  # fmt: skip
# dim 64: the MatMul weights (64 x 192) are over ort_quant's 4096-value floor, so int8 quantises them.
TTS = dict(
    dim=64, num_heads=2, text_layers=1, prompt_layers=1, duration_layers=1, decoder_layers=2,
    num_codebooks=2, codebook_size=16, default_prompt_frames=12, dropout=0.0, default_steps=(4,),
)  # fmt: skip
# Measured: every graph within 2e-6 of torch on this model; the bound is the task's.
MAX_ABS = 1e-3
SHIPPED = Path(__file__).resolve().parents[2] / "speechkit" / "checkpoints" / "mobilespeech"


def tiny_models(seed: int = 0, **changes) -> tuple[MobileSpeech, RVQCodec]:
    torch.manual_seed(seed)
    codec = RVQCodec(CODEC).eval()
    model = MobileSpeech(MobileSpeechConfig(**{**TTS, "frame_rate": codec.frame_rate, **changes})).eval()
    model.set_default_prompt(torch.randint(0, 16, (3, 12)))
    return model, codec


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def fp32_graphs(tmp_path_factory):
    model, _ = tiny_models()
    graphs = export_tts_graphs(model, tmp_path_factory.mktemp("tts-graphs"))
    return model, {name: _session(spec.path) for name, spec in graphs.items()}


@torch.no_grad()
@pytest.mark.parametrize("num_phonemes, num_prompt", [(7, 12), (23, 5)])
def test_encoders_match_torch(fp32_graphs, num_phonemes, num_prompt):
    """tts_prompt_encoder and tts_encoder at lengths other than the traced ones."""
    model, sessions = fp32_graphs
    g = torch.Generator().manual_seed(num_phonemes)
    prompt = torch.randint(0, 16, (1, 2, num_prompt), generator=g)
    memory, _ = model.encode_prompt(prompt)
    ort_memory = sessions["tts_prompt_encoder"].run(None, {"prompt_codes": prompt.numpy()})[0]
    assert np.max(np.abs(ort_memory - memory.numpy())) < MAX_ABS

    phonemes = torch.randint(1, 80, (1, num_phonemes), generator=g)
    text, valid = model.encode_text(phonemes)
    log_durations = model.predict_log_durations(
        text, valid, memory, torch.ones(1, num_prompt, dtype=torch.bool)
    )
    ort_text, ort_log = sessions["tts_encoder"].run(
        None, {"phonemes": phonemes.numpy(), "prompt_memory": memory.numpy()}
    )
    assert np.max(np.abs(ort_text - text.numpy())) < MAX_ABS
    assert np.max(np.abs(ort_log - log_durations.numpy())) < MAX_ABS


@torch.no_grad()
@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("num_frames", [9, 41])
def test_decoder_step_matches_torch(fp32_graphs, layer, num_frames):
    """One masked-decoding step: layers below the target known, the target partly masked, above all masked."""
    model, sessions = fp32_graphs
    g = torch.Generator().manual_seed(num_frames + layer)
    codes = torch.randint(0, 16, (1, 2, num_frames), generator=g)
    codes[:, layer + 1 :] = model.mask_id
    codes[:, layer, torch.rand(num_frames, generator=g) < 0.5] = model.mask_id
    frames = torch.randn(1, num_frames, 64, generator=g)
    memory = torch.randn(1, 10, 64, generator=g)
    ones = torch.ones(1, num_frames, dtype=torch.bool)
    expected = model.decoder_logits(
        codes, torch.tensor([layer]), frames, ones, memory, torch.ones(1, 10, dtype=torch.bool)
    )
    feeds = {
        "codes": codes.numpy(),
        "layer": np.array([layer]),
        "frames": frames.numpy(),
        "prompt_memory": memory.numpy(),
    }
    logits = sessions["tts_decoder_step"].run(None, feeds)[0]
    assert logits.shape == (1, num_frames, 16)
    assert np.max(np.abs(logits - expected.numpy())) < MAX_ABS


def test_row_table_int8_error_is_half_a_step():
    table = torch.randn(40, 24) * torch.linspace(0.01, 3, 40)[:, None]
    index = torch.arange(40)[None]
    error = (RowTable(table, int8=True)(index)[0] - table).abs()
    step = (table.amax(1) - table.amin(1)) / 255
    assert bool((error.amax(1) <= 0.5 * step + 1e-6).all())


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    model, codec = tiny_models()
    root = tmp_path_factory.mktemp("tts-bundles")
    reports = {
        q: export_tts(model, root / q, "tiny-tts", quant=q, codec=codec, progress=False)
        for q in ("none", "int8")
    }
    return model, codec, reports


def test_bundle_manifest_files_and_parity(bundles):
    _, _, reports = bundles
    report = reports["none"]
    m = report.manifest
    assert (m["task"], m["model_kind"], m["format_version"]) == ("tts", "mobilespeech_tts", 1)
    assert sorted(m["graphs"]) == [
        "codec_decoder",
        "codec_encoder",
        "tts_decoder_step",
        "tts_encoder",
        "tts_prompt_encoder",
    ]
    assert "default_voice.npz" in m["files"] and len(m["files"]["default_voice.npz"]["sha256"]) == 64
    assert m["extra"]["tts"]["default_steps"] == [4] and m["extra"]["tts"]["mask_id"] == 16
    assert len(m["extra"]["tts"]["symbols"]) == 80
    with Bundle.open(report.bundle) as bundle:  # every sha256 verified
        assert set(bundle.manifest["files"]) == set(m["files"])
    assert report.parity["greedy"]["tokens_equal_fraction"] == 1.0
    assert report.parity["greedy"]["durations_equal_fraction"] == 1.0
    for graph, key in (
        ("tts_encoder", "text_max_abs"),
        ("tts_decoder_step", "logits_max_abs"),
        ("tts_prompt_encoder", "max_abs"),
    ):
        assert report.parity[graph][key] < MAX_ABS
        assert m["metrics"][f"{graph}_{key}"] == report.parity[graph][key]
    assert report.parity["codec_decoder"]["snr_db"] > 80
    assert "tiny-tts" in report.summary()


def test_int8_bundle_is_smaller_and_quantises_the_tables(bundles):
    _, _, reports = bundles
    fp32, int8 = reports["none"], reports["int8"]
    assert int8.manifest["quantization"]["mode"] == "int8-dynamic"
    assert {"tts_encoder", "tts_decoder_step", "tts_prompt_encoder"} <= set(
        int8.manifest["quantization"]["details"]["quantized_graphs"]
    )
    assert int8.sizes["on_disk_bytes"] < 0.6 * fp32.sizes["on_disk_bytes"]
    graph = onnx.load(str(Path(int8.bundle) / "tts_decoder_step.onnx"))
    uint8 = [
        t.name
        for t in graph.graph.initializer
        if t.data_type == onnx.TensorProto.UINT8 and np.prod(t.dims) >= 16 * 64
    ]
    assert len(uint8) >= 2  # the code embedding table and the heads as uint8 rows
    assert int8.parity["tts_decoder_step"]["logits_max_abs"] < 0.5


def test_export_model_dispatches_tts(tmp_path):
    model, codec = tiny_models()
    with pytest.raises(ConfigError, match="ONNX bundles only"):
        export_model(model, tmp_path / "coreml", format="coreml", progress=False)
    with pytest.raises(ConfigError, match="none or int8"):
        export_model(model, tmp_path / "w4", quant="w4", progress=False)


def test_refuses_a_codec_of_other_codebooks(tmp_path):
    model, _ = tiny_models(codebook_size=32)
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="codebooks of size 32"):
        export_tts(model, tmp_path / "b", "x", codec=RVQCodec(CODEC), progress=False)


def test_without_default_voice_or_zero_shot(tmp_path):
    model, codec = tiny_models()
    model.default_prompt_length.zero_()
    report = export_tts(model, tmp_path / "b", "x", codec=codec, progress=False, zero_shot=False)
    assert "default_voice.npz" not in report.manifest["files"]
    assert "default_voice" not in report.manifest["extra"]
    assert sorted(report.manifest["graphs"]) == ["codec_decoder", "tts_decoder_step", "tts_encoder"]
    assert any("no default voice" in note for note in report.notes)


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED / "model.safetensors").exists(), reason="shipped mobilespeech checkpoint absent"
)
def test_shipped_mobilespeech_through_the_cli(tmp_path, capsys):
    from speechkit_export.cli import main

    assert main(["mobilespeech", "--quant", "int8", "-o", str(tmp_path / "tts-int8"), "--no-progress"]) == 0
    assert "tts_decoder_step" in capsys.readouterr().out
    with Bundle.open(tmp_path / "tts-int8") as bundle:
        m = bundle.manifest
        assert m["task"] == "tts" and m["extra"]["codec"]["fingerprint"] == "484828040b8bbd7d"
        assert m["metrics"]["greedy_tokens_equal_fraction"] > 0.8
