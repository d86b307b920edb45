"""speechkit_rt.asr and asr_decoding: a tiny ASR bundle run with onnxruntime against the SDK's recognizer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.asr.api import SpeechRecognizer
from speechkit.asr.decoding import DecodingOptions
from speechkit.asr.decred import combine_layer_log_probs
from speechkit.asr.model import ASRConfig, EBranchformerASR
from speechkit.decoders import ctc as sdk_ctc
from speechkit.decoders.beam_search import beam_search as sdk_beam_search
from speechkit.errors import AudioError as SdkAudioError
from speechkit_export.pipeline import export_model
from speechkit_rt import asr_decoding as dec
from speechkit_rt.asr import ASRRuntime, RuntimeTranscript
from speechkit_rt.cli import EXIT_BUNDLE, EXIT_INPUT, EXIT_OK, main
from speechkit_rt.errors import AudioError, BundleError


@pytest.fixture(scope="module")
def model() -> EBranchformerASR:
    torch.manual_seed(0)
    model = EBranchformerASR(ASRConfig.tiny()).eval()
    model.frontend.set_statistics(torch.linspace(-6.0, -2.0, 40), torch.linspace(1.5, 3.0, 40))
    with torch.no_grad():  # more blanks and spaces: transcripts of several words, so word times are tested
        model.ctc_head.bias[model.vocabulary.space_id] += 1.5
        model.ctc_head.bias[model.vocabulary.blank_id] += 1.0
        model.decoder.output.bias[model.vocabulary.space_id] += 1.5
    return model


@pytest.fixture(scope="module")
def bundle(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("asr") / "tiny-asr"
    return export_model(model, out, progress=False, corpus_dir="/no/corpus").bundle


@pytest.fixture(scope="module")
def runtime(bundle):
    with ASRRuntime.open(bundle, num_threads=1) as asr:
        yield asr


@pytest.fixture(scope="module")
def inputs(speech_16k) -> list[np.ndarray]:
    noise = np.random.default_rng(3).normal(0, 0.05, 9000).astype(np.float32)
    return [speech_16k, speech_16k[4000:20000], noise]


def _same(ours: RuntimeTranscript, theirs) -> None:
    assert ours.text == theirs.text
    assert [(w.text, w.start, w.end) for w in ours.words] == [(w.text, w.start, w.end) for w in theirs.words]
    assert [w.confidence for w in ours.words] == pytest.approx([w.confidence for w in theirs.words], abs=1e-3)
    assert ours.duration == theirs.duration


def test_greedy_transcripts_equal_the_sdk(model, runtime, inputs):
    sdk = SpeechRecognizer(model, DecodingOptions(method="ctc_greedy"))
    texts = []
    for wav in inputs:
        ours, theirs = runtime.transcribe(wav, 16000), sdk.transcribe(wav, 16000)
        _same(ours, theirs)
        texts.append(ours.text)
    assert max(len(text.split()) for text in texts) > 5, "a random model of one word would test little"
    assert runtime.transcribe(inputs[0], 16000).to_dict() == sdk.transcribe(inputs[0], 16000).to_dict()


@pytest.mark.parametrize("method", ["joint", "attention"])
def test_beam_search_transcripts_equal_the_sdk(model, runtime, inputs, method):
    sdk = SpeechRecognizer(model, DecodingOptions(method=method, beam_size=3))
    for wav in inputs[1:]:
        _same(runtime.transcribe(wav, 16000, method=method, beam_size=3), sdk.transcribe(wav, 16000))


def test_long_audio_is_cut_into_the_sdks_windows(model, runtime, speech_16k):
    wav = np.concatenate([speech_16k] * 5)[: 25 * 16000]  # 25 s: two windows
    _same(
        runtime.transcribe(wav, 16000),
        SpeechRecognizer(model, DecodingOptions(method="ctc_greedy")).transcribe(wav, 16000),
    )


def test_bad_audio_is_refused_as_the_sdk_refuses_it(model, runtime):
    sdk = SpeechRecognizer(model, DecodingOptions(method="ctc_greedy"))
    bad = [np.zeros(0, np.float32), np.full(4000, np.nan, np.float32), np.zeros(800, np.float32),
           np.zeros((2, 4000), np.float32), np.array(["a"])]  # fmt: skip
    for wav in bad:
        with pytest.raises(SdkAudioError) as theirs:
            sdk.transcribe(wav, 16000)
        with pytest.raises(AudioError) as ours:
            runtime.transcribe(wav, 16000)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(AudioError, match="sample rate"):
        runtime.transcribe(np.zeros(4000, np.float32), 12.5)
    silence = runtime.transcribe(np.zeros(8000, np.float32), 16000)
    assert (silence.text, silence.words, silence.duration) == ("", (), 0.5)
    with pytest.raises(ValueError, match="decoding method"):
        runtime.transcribe(np.ones(4000, np.float32) * 0.1, 16000, method="ctc_beam")


def test_stereo_int16_and_other_rates_are_accepted(runtime, speech_16k):
    pcm = (np.stack([speech_16k, speech_16k], axis=1) * 32767).astype(np.int16)
    assert runtime.transcribe(pcm, 16000).text == runtime.transcribe(pcm[:, 0], 16000).text
    resampled = runtime.transcribe(speech_16k[::2], 8000)
    assert resampled.duration == pytest.approx(len(speech_16k) / 16000, abs=1e-3)


def test_tampered_and_wrong_bundles_are_refused(bundle, tmp_path):
    for name in ("encoder.onnx", "vocabulary.json"):
        copy = tmp_path / name
        shutil.copytree(bundle, copy)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(BundleError, match=f"sha256 mismatch for {name}"):
            ASRRuntime.open(copy)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["task"] = "codec"
    other = tmp_path / "codec"
    shutil.copytree(bundle, other)
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not asr"):
        ASRRuntime.open(other)


def test_cli_transcribe(bundle, runtime, speech_16k, tmp_path, capsys):
    wav_path = tmp_path / "speech.wav"
    sf.write(wav_path, speech_16k, 16000, subtype="PCM_16")
    expected = runtime.transcribe(sf.read(wav_path, dtype="float32")[0], 16000)
    assert main(["transcribe", str(bundle), str(wav_path)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == expected.text
    assert main(["transcribe", str(bundle), str(wav_path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == expected.to_dict()
    assert main(["transcribe", str(bundle), str(tmp_path / "missing.wav")]) == EXIT_INPUT
    assert main(["transcribe", str(tmp_path / "no-bundle"), str(wav_path)]) == EXIT_BUNDLE


def test_runtime_imports_no_torch():
    code = (
        "import sys, speechkit_rt.asr; assert 'torch' not in sys.modules and 'speechkit' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- the numpy decoding against speechkit.decoders ---------------------------------------------


def _log_probs(frames: int, vocab: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0, 2.0, (frames, vocab))
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def test_ctc_greedy_and_alignment_equal_the_sdk():
    for seed in range(5):
        lp = _log_probs(30, 7, seed)
        theirs = sdk_ctc.ctc_greedy(lp, 0)
        assert dec.ctc_greedy(lp, 0) == (theirs.tokens, theirs.spans)
        for tokens in (theirs.tokens, [3, 3, 4], [1] * 16, []):
            assert dec.ctc_forced_align(lp, tokens, 0) == sdk_ctc.ctc_forced_align(lp, tokens, 0)


def test_prefix_scores_equal_the_sdk():
    lp = _log_probs(12, 6, 0)
    ours, theirs = dec.CTCPrefixScorer(lp, 0, 2), sdk_ctc.CTCPrefixScorer(lp, 0, 2)
    prefixes, candidates = [(), (3,), (3, 4)], np.array([[1, 2, 3], [3, 4, 2], [4, 5, 1]])
    states = [ours.initial_state()] * 3
    ours_scores, ours_states = ours.score(prefixes, states, candidates)
    theirs_scores, theirs_states = theirs.score(prefixes, states, candidates)
    np.testing.assert_array_equal(ours_scores, theirs_scores)
    np.testing.assert_array_equal(ours_states, theirs_states)


@pytest.mark.parametrize("mode", ["final", "linear", "log_linear"])
def test_decred_combination_equals_the_sdk(mode):
    heads = [_log_probs(4, 9, seed).astype(np.float32) for seed in range(3)]
    theirs = combine_layer_log_probs([torch.from_numpy(h) for h in heads], mode, [1.0, 2.0, 3.0]).numpy()
    np.testing.assert_allclose(dec.combine_heads(heads, mode, [1.0, 2.0, 3.0]), theirs, atol=1e-6)


def test_beam_search_equals_the_sdk_on_a_toy_decoder():
    """A toy decoder whose next-token distribution depends on the prefix: the same hypotheses."""
    vocab, sos = 6, 2
    table = _log_probs(vocab * vocab, vocab, 7).astype(np.float32).reshape(vocab, vocab, vocab)

    def distribution(prefix: tuple[int, ...]) -> np.ndarray:
        previous = prefix[-2] if len(prefix) > 1 else sos
        return table[previous, prefix[-1]]

    def score_fn(prefixes: np.ndarray) -> np.ndarray:
        return np.stack([distribution(tuple(row)) for row in prefixes])

    def step_fn(last, state):  # the SDK's interface: state = the prefixes so far
        prefixes = [p + (int(t),) for p, t in zip(state, last)]
        return torch.from_numpy(np.stack([distribution(p) for p in prefixes])), prefixes

    ctc_lp = _log_probs(10, vocab, 8)
    for weight in (0.0, 0.3):
        scorer = dec.CTCPrefixScorer(ctc_lp, 0, sos) if weight else None
        ours = dec.beam_search(
            score_fn, sos, sos, beam_size=3, max_length=8, ctc_scorer=scorer, ctc_weight=weight
        )
        theirs = sdk_beam_search(
            step_fn, lambda state, index: [state[int(i)] for i in index], [()], sos, sos, beam_size=3, max_length=8,
            ctc_scorer=sdk_ctc.CTCPrefixScorer(ctc_lp, 0, sos) if weight else None, ctc_weight=weight,
        )  # fmt: skip
        assert [tokens for tokens, _ in ours] == [h.tokens for h in theirs]
        assert [score for _, score in ours] == pytest.approx([h.score for h in theirs], abs=1e-5)
