"""speechkit_rt.speaker: tiny speaker bundles run with onnxruntime against the SDK's torch models."""

from __future__ import annotations

import json
import logging
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from speechkit.audio import prepare_input as sdk_prepare_input
from speechkit.errors import AudioError as SdkAudioError
from speechkit.speaker.api import SpeakerEncoder
from speechkit.speaker.diarize import decide_speakers as sdk_decide_speakers
from speechkit.speaker.ecapa import ECAPATDNN, ECAPAConfig
from speechkit.speaker.msdd import MSDD, MSDDConfig
from speechkit_export.pipeline import export_model
from speechkit_export.speaker_graphs import msdd_example_inputs, torch_msdd_probs
from speechkit_rt import DiarizationDecoderRuntime, SpeakerRuntime
from speechkit_rt.cli import EXIT_BUNDLE, EXIT_INPUT, main
from speechkit_rt.errors import AudioError, BundleError
from speechkit_rt.speaker import as_norm_score

TINY_ECAPA = dict(
    channels=32, embedding_dim=16, num_classes=6, attention_channels=8, se_channels=8, res2net_scale=4
)
TINY_MSDD = MSDDConfig(embedding_dim=16, proj_dim=4, cnn_channels=8, lstm_hidden=8)
# Measured on the tiny random model and the bundled speech: embeddings within 2e-7 of the SDK's,
# MSDD probabilities within 6e-8. The bounds leave margin for other CPUs and onnxruntime versions.
MIN_COSINE, MAX_EMBEDDING_ABS, MAX_PROBS_ABS = 0.9999, 1e-5, 1e-4


def build_tiny_speaker_bundle(root: Path, seed: int = 0, **changes) -> tuple[ECAPATDNN, Path]:
    """A tiny random ECAPA-TDNN (BatchNorm statistics randomised) and its fp32 bundle folder."""
    torch.manual_seed(seed)
    model = ECAPATDNN(ECAPAConfig(**{**TINY_ECAPA, **changes})).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    model.checkpoint_name = "tiny-ecapa"
    report = export_model(model, root / "speaker", progress=False, corpus_dir="/no/corpus", zip=True)
    return model, report.bundle


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> types.SimpleNamespace:
    root = tmp_path_factory.mktemp("speaker_bundles")
    model, zip_path = build_tiny_speaker_bundle(root)
    asnorm_model, asnorm_zip = build_tiny_speaker_bundle(
        root / "asnorm", seed=1, asnorm_top_k=4, threshold=1.5
    )
    torch.manual_seed(0)
    msdd = MSDD(TINY_MSDD).eval()
    msdd_bundle = export_model(msdd, root / "msdd", progress=False).bundle
    return types.SimpleNamespace(
        model=model, sdk=SpeakerEncoder(model), zip=zip_path, folder=zip_path.with_suffix(""),
        asnorm_sdk=SpeakerEncoder(asnorm_model), asnorm_folder=asnorm_zip.with_suffix(""),
        msdd=msdd, msdd_folder=msdd_bundle,
    )  # fmt: skip


@pytest.fixture
def runtime(tiny):
    with SpeakerRuntime.open(tiny.folder, num_threads=1) as speaker:
        yield speaker


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- embeddings ------------------------------------------------------------------------------------


def test_properties_come_from_the_bundle(tiny, runtime):
    config = tiny.model.config
    assert (runtime.sample_rate, runtime.embedding_dim) == (config.sample_rate, config.embedding_dim)
    assert (runtime.threshold, runtime.asnorm_top_k, runtime.cohort) == (config.threshold, 0, None)
    assert runtime.cosine_threshold == config.cosine_threshold
    assert runtime.name == "tiny-ecapa" and "SpeakerRuntime('tiny-ecapa'" in repr(runtime)


def test_embed_matches_the_sdk(tiny, runtime, speech_16k):
    for wav in (speech_16k, speech_16k[:4800], speech_16k[1234:20000]):
        ours = runtime.embed(wav, 16000)
        reference = tiny.sdk.embed(wav, 16000, trim_silence=False)
        assert ours.dtype == np.float32 and ours.shape == (16,)
        assert abs(np.linalg.norm(ours) - 1) < 1e-5
        assert _cosine(ours, reference) > MIN_COSINE and np.max(np.abs(ours - reference)) < MAX_EMBEDDING_ABS


def test_long_audio_is_embedded_in_pieces_as_the_sdk(tiny, runtime, speech_16k):
    wav = np.tile(speech_16k, 8)[: 16000 * 61]  # 30 s + 30 s + 1 s pieces
    ours, reference = runtime.embed(wav, 16000), tiny.sdk.embed(wav, 16000, trim_silence=False)
    assert np.max(np.abs(ours - reference)) < MAX_EMBEDDING_ABS


def test_zip_bundle_gives_the_same_embedding(tiny, runtime, speech_16k):
    with SpeakerRuntime.open(tiny.zip, num_threads=1) as from_zip:
        np.testing.assert_array_equal(from_zip.embed(speech_16k, 16000), runtime.embed(speech_16k, 16000))


def test_embed_segments_matches_the_sdks_padded_batches(tiny, runtime, speech_16k):
    segments = np.array([[0.0, 1.5], [0.75, 2.25], [2.0, 2.5], [4.9, 5.1143]])
    ours = runtime.embed_segments(speech_16k, segments)
    reference = tiny.sdk.embed_segments(speech_16k, segments)
    assert ours.shape == reference.shape == (4, 16)
    assert np.max(np.abs(ours - reference)) < MAX_EMBEDDING_ABS


def test_other_rates_are_resampled_and_stereo_mixed(tiny, runtime, speech_16k, caplog):
    narrow = sdk_prepare_input(speech_16k, 16000, 8000)  # the clip at 8 kHz
    with caplog.at_level(logging.INFO, logger="speechkit_rt.audio_io"):
        ours = runtime.embed(narrow, 8000)
    assert "resampling audio from 8000 Hz to 16000 Hz" in caplog.text
    # the SDK resamples with soxr, the runtime with its own sinc: equal up to their transition bands
    assert _cosine(ours, tiny.sdk.embed(narrow, 8000, trim_silence=False)) > 0.999
    stereo = np.stack([speech_16k, 0.5 * speech_16k], axis=1)
    np.testing.assert_allclose(
        runtime.embed(stereo, 16000), runtime.embed(0.75 * speech_16k, 16000), atol=1e-6
    )


@pytest.mark.parametrize(
    ("wav", "sample_rate"),
    [
        (np.zeros(0, dtype=np.float32), 16000),
        (np.array([0.1, np.nan] * 4000, dtype=np.float32), 16000),
        (np.zeros(8000, dtype=np.float32), 16000),
        (np.full((2, 8000), 0.1, dtype=np.float32), 16000),
        (np.full(8000, 0.1, dtype=np.float32), 100),
        (np.full(8000, 0.1, dtype=np.float32), 0),
    ],
    ids=["empty", "nan", "silence", "channels-first", "rate-100", "rate-0"],
)
def test_bad_audio_is_refused_with_the_sdks_message(runtime, wav, sample_rate):
    with pytest.raises(SdkAudioError) as sdk_err:
        sdk_prepare_input(wav, sample_rate, 16000)
    with pytest.raises(AudioError) as runtime_err:
        runtime.embed(wav, sample_rate)
    assert str(runtime_err.value) == str(sdk_err.value)


def test_audio_too_short_for_an_embedding_is_refused_as_in_the_sdk(tiny, runtime, speech_16k):
    short = speech_16k[8000:9600]  # 0.1 s
    with pytest.raises(SdkAudioError) as sdk_err:
        tiny.sdk.embed(short, 16000, trim_silence=False)
    with pytest.raises(AudioError, match="under 0.3 s") as runtime_err:
        runtime.embed(short, 16000)
    assert str(runtime_err.value) == str(sdk_err.value)


# ---- scoring and verification ----------------------------------------------------------------------


def test_score_and_verify_match_the_sdk(tiny, runtime, speech_16k):
    a, b = runtime.embed(speech_16k[:32000], 16000), runtime.embed(speech_16k[40000:], 16000)
    assert abs(runtime.score(a, b) - tiny.sdk.score(a, b)) < 1e-6
    result = runtime.verify(speech_16k[:32000], speech_16k[40000:], 16000)
    # the SDK's verify trims silence first (its speech detector); the runtime scores what it is given
    untrimmed = [
        tiny.sdk.embed(w, 16000, trim_silence=False) for w in (speech_16k[:32000], speech_16k[40000:])
    ]
    assert abs(result.score - tiny.sdk.score(*untrimmed)) < 1e-5
    assert result.threshold == tiny.model.config.threshold
    same = runtime.verify(speech_16k, speech_16k, 16000, threshold=0.99)
    assert same.same_speaker and abs(same.score - 1) < 1e-5
    for bad in (a[:8], np.full(16, np.nan, dtype=np.float32)):
        with pytest.raises(ValueError, match="shape|NaN"):
            runtime.score(a, bad)


def test_asnorm_scores_use_the_bundles_cohort(tiny, speech_16k):
    with SpeakerRuntime.open(tiny.asnorm_folder, num_threads=1) as speaker:
        assert speaker.asnorm_top_k == 4 and speaker.cohort.shape == (6, 16) and speaker.threshold == 1.5
        a, b = speaker.embed(speech_16k[:32000], 16000), speaker.embed(speech_16k[40000:], 16000)
        raw = _cosine(a, b)
        assert abs(speaker.score(a, b) - tiny.asnorm_sdk.score(a, b)) < 1e-5
        assert abs(speaker.score(a, b) - raw) > 1e-3  # normalised, not the cosine
    assert abs(as_norm_score(0.5, np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.4, 0.5]), top_k=2) - 3.0) < 1e-9


# ---- refused bundles -------------------------------------------------------------------------------


def _rewrite_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_tampered_bundles_are_refused(tiny, tmp_path, speech_16k, capsys):
    folder = shutil.copytree(tiny.folder, tmp_path / "graph")
    data = bytearray((folder / "embedder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "embedder.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch for embedder.onnx"):
        SpeakerRuntime.open(folder)
    assert main(["embed", str(folder), "missing.wav"]) == EXIT_BUNDLE
    assert "bundle refused: sha256 mismatch" in capsys.readouterr().err

    cohort = shutil.copytree(tiny.asnorm_folder, tmp_path / "cohort")
    (cohort / "cohort.npy").write_bytes((cohort / "cohort.npy").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(BundleError, match="sha256 mismatch for cohort.npy"):
        SpeakerRuntime.open(cohort)

    recipe = shutil.copytree(tiny.folder, tmp_path / "recipe")  # the manifest is not hashed: its checks are
    _rewrite_manifest(
        recipe, lambda m: m["graphs"]["embedder"]["derived"]["initializers"][0].update(win_length=399)
    )
    with SpeakerRuntime.open(recipe) as speaker, pytest.raises(BundleError, match="sha256 differs"):
        speaker.embed(speech_16k, 16000)  # the DFT basis is rebuilt (and checked) when the graph loads


def test_bundles_of_another_kind_or_settings_are_refused(tiny, tmp_path):
    with pytest.raises(BundleError, match="kind 'msdd_diarizer'.*opens speaker bundles of kind 'ecapa_tdnn'"):
        SpeakerRuntime.open(tiny.msdd_folder)
    with pytest.raises(BundleError, match="kind 'ecapa_tdnn'.*'msdd_diarizer'"):
        DiarizationDecoderRuntime.open(tiny.folder)
    unknown = shutil.copytree(tiny.folder, tmp_path / "unknown")
    _rewrite_manifest(unknown, lambda m: m["extra"]["speaker"].update(plda=True))
    with pytest.raises(BundleError, match=r"extra.speaker lacks \[\] / has unknown keys \['plda'\]"):
        SpeakerRuntime.open(unknown)
    no_cohort = shutil.copytree(tiny.folder, tmp_path / "no_cohort")
    _rewrite_manifest(no_cohort, lambda m: m["extra"]["speaker"].update(asnorm_top_k=10))
    with pytest.raises(BundleError, match="asnorm_top_k is 10 but no cohort_file"):
        SpeakerRuntime.open(no_cohort)


# ---- the MSDD decoder ------------------------------------------------------------------------------


def test_msdd_decode_matches_torch_and_the_sdks_decisions(tiny):
    with DiarizationDecoderRuntime.open(tiny.msdd_folder, num_threads=1) as decoder:
        assert (decoder.num_scales, decoder.windows, decoder.embedding_dim) == (3, (1.5, 1.0, 0.5), 16)
        for seed, (speakers, steps) in enumerate(((1, 5), (2, 33), (3, 80))):
            embeddings, centroids = msdd_example_inputs(3, 16, speakers, steps, seed=seed)
            probs = decoder.decode(embeddings, centroids)
            reference = torch_msdd_probs(tiny.msdd, embeddings, centroids)
            assert probs.shape == (speakers, steps) and np.max(np.abs(probs - reference)) < MAX_PROBS_ABS
            np.testing.assert_array_equal(
                decoder.decide(probs), sdk_decide_speakers(probs, decoder.threshold)
            )
        embeddings, centroids = msdd_example_inputs(3, 16, 2, 10)
        for bad_e, bad_c, message in (
            (embeddings[:2], centroids, "embeddings must be"),
            (embeddings, centroids[:, :, :8], "centroids must be"),
            (embeddings[:, :0], centroids, "embeddings must be"),
            (embeddings * np.nan, centroids, "NaN"),
        ):
            with pytest.raises(ValueError, match=message):
                decoder.decode(bad_e, bad_c)


# ---- CLI -------------------------------------------------------------------------------------------


def test_cli_embed_verify_and_info(tiny, tmp_path, speech_16k, capsys):
    sf.write(tmp_path / "a.wav", speech_16k[:32000], 16000, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", speech_16k[40000:], 16000, subtype="FLOAT")
    out = tmp_path / "a.json"
    assert main(["embed", str(tiny.zip), str(tmp_path / "a.wav"), "-o", str(out), "--threads", "1"]) == 0
    vector = np.array(json.loads(out.read_text()), dtype=np.float32)
    wav, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    assert np.max(np.abs(vector - tiny.sdk.embed(wav, 16000, trim_silence=False))) < 1e-5
    capsys.readouterr()
    assert main(["verify", str(tiny.folder), str(tmp_path / "a.wav"), str(tmp_path / "a.wav")]) == 0
    assert "score 1.0000 threshold 0.5000: same speaker" in capsys.readouterr().out
    assert (
        main(
            ["verify", str(tiny.folder), str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--threshold", "2"]
        )
        == 0
    )
    assert "different speakers" in capsys.readouterr().out
    assert main(["info", str(tiny.msdd_folder)]) == 0
    assert "task speaker" in capsys.readouterr().out
    sf.write(tmp_path / "short.wav", speech_16k[:1600], 16000)
    assert main(["embed", str(tiny.folder), str(tmp_path / "short.wav")]) == EXIT_INPUT
    assert "under 0.3 s" in capsys.readouterr().err
