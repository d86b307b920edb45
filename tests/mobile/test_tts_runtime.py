"""speechkit_rt.tts: a tiny MobileSpeech bundle decoded in numpy against ``MobileSpeech.generate``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit.decoders.masked import cosine_schedule
from speechkit.decoders.masked import iterative_decode as torch_iterative_decode
from speechkit.tts import api
from speechkit.tts.mobilespeech import MobileSpeech, MobileSpeechConfig
from speechkit_export.tts_graphs import export_tts
from speechkit_rt import tts as rt_tts
from speechkit_rt.codec import CodecRuntime
from speechkit_rt.errors import AudioError, BundleError
from speechkit_rt.tts import PhonemeInputError, TTSRuntime, iterative_decode, masked_after_step

CODEC = RVQCodecConfig(
    n_fft=64, hop_length=16, dim=16, latent_dim=8, num_quantizers=3, codebook_size=16,
    encoder_blocks=(1, 1), decoder_blocks=(1, 1),
)  # fmt: skip
TTS = dict(
    dim=32, num_heads=2, text_layers=1, prompt_layers=1, duration_layers=1, decoder_layers=2,
    num_codebooks=3, codebook_size=16, default_prompt_frames=40, dropout=0.0, default_steps=(5, 2),
)  # fmt: skip
MAX_AUDIO_ABS = 1e-4  # measured 2e-7 on this tiny model
SHIPPED = Path(__file__).resolve().parents[2] / "speechkit" / "checkpoints" / "mobilespeech"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, codec, bundle folder) of a tiny random MobileSpeech with a default voice."""
    torch.manual_seed(0)
    codec = RVQCodec(CODEC).eval()
    model = MobileSpeech(MobileSpeechConfig(**TTS, frame_rate=codec.frame_rate)).eval()
    model.set_default_prompt(torch.randint(0, 16, (3, 40)))
    bundle = export_tts(
        model, tmp_path_factory.mktemp("tts") / "tiny", "tiny-tts", codec=codec, progress=False
    )
    return model, codec, bundle.bundle


@pytest.fixture(scope="module")
def runtime(tiny):
    with TTSRuntime.open(tiny[2], num_threads=1) as rt:
        yield rt


def _phonemes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 80, n)


@torch.no_grad()
@pytest.mark.parametrize(
    "n, options",
    [
        (6, {}),
        (17, {}),
        (11, {"steps": (3, 1, 2)}),
        (9, {"num_codebooks": 2, "speed": 1.7}),
        (13, {"steps": (1,)}),
    ],
)
def test_greedy_decoding_equals_torch(tiny, runtime, n, options):
    """Argmax decoding: the runtime's durations and tokens are torch's (same steps, speed, layers)."""
    model = tiny[0]
    ids = _phonemes(n, n)
    result = runtime.synthesize_codes(ids, temperature=0.0, **options)
    reference = model.generate(
        torch.from_numpy(ids)[None], model.default_prompt(), temperature=0.0, **options
    )
    np.testing.assert_array_equal(result.durations, reference.durations[0].numpy())
    np.testing.assert_array_equal(result.codes, reference.codes.numpy())


@torch.no_grad()
def test_greedy_audio_equals_torch(tiny, runtime):
    model, codec, _ = tiny
    ids = _phonemes(12, 3)
    wav = runtime.synthesize_phonemes(ids, temperature=0.0)
    reference = model.generate(torch.from_numpy(ids)[None], model.default_prompt(), temperature=0.0)
    expected = codec.decode_codes(reference.codes)[0].numpy()
    assert wav.dtype == np.float32 and wav.shape == expected.shape
    assert int(reference.durations.sum()) * runtime.hop_length == len(wav)
    assert np.max(np.abs(wav - expected)) < MAX_AUDIO_ABS


def test_sampling_is_seeded_and_in_range(runtime):
    ids = _phonemes(15, 1)
    a = runtime.synthesize_codes(ids, seed=0)
    b = runtime.synthesize_codes(ids, seed=0)
    c = runtime.synthesize_codes(ids, seed=1)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert not np.array_equal(a.codes, c.codes)
    assert a.codes.shape == (1, 3, int(a.durations.sum()))
    assert a.codes.min() >= 0 and a.codes.max() < 16  # no mask id left


def test_top_k_sampling_stays_in_the_top_k():
    logits = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    drawn = rt_tts.sample_tokens(logits, 1.5, 3, np.random.default_rng(1))
    top3 = np.argsort(logits, -1)[:, -3:]
    assert all(token in row for token, row in zip(drawn, top3))
    counts = np.bincount(
        rt_tts.sample_tokens(np.zeros((4000, 4), np.float32), 1.0, None, np.random.default_rng(2))
    )
    assert counts.min() > 900  # uniform over 4 tokens


@pytest.mark.parametrize("num_steps", [1, 2, 3, 5, 8, 12])
def test_schedule_equals_torch(num_steps):
    for total in (1, 2, 7, 50, 99, 150, 333, 1000):
        for step in range(num_steps - 1):
            progress = torch.tensor((step + 1) / num_steps)
            expected = int((torch.tensor(total).float() * cosine_schedule(progress)).floor())
            assert masked_after_step(total, step, num_steps) == expected
        assert masked_after_step(total, num_steps - 1, num_steps) == 0


def test_iterative_decode_equals_torch_on_fixed_logits():
    """The unmasking order alone: a logits function that ignores its input, 4 steps, greedy."""
    logits = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 37, 11)).astype(np.float32))
    expected = torch_iterative_decode(
        lambda tokens, masked: logits,
        torch.zeros(1, 37, dtype=torch.long),
        torch.ones(1, 37, dtype=torch.bool),
        4,
        0.0,
    )
    seen: list[int] = []

    def fn(tokens, masked):
        seen.append(int(masked.sum()))
        return logits[0].numpy()

    got = iterative_decode(fn, 37, 4, 0.0, None, np.random.default_rng(0))
    np.testing.assert_array_equal(got, expected[0].numpy())
    assert seen == [37] + [masked_after_step(37, s, 4) for s in range(3)]


@torch.no_grad()
def test_zero_shot_voice_equals_the_sdk(tiny, runtime, speech_16k):
    """Prompt audio -> codec_encoder -> tts_prompt_encoder, against TextToSpeech.voice + encode_prompt."""
    model, codec, _ = tiny
    tts = api.TextToSpeech(model, codec=codec.task_api(), frontend=object())
    prompt_codes = tts.voice(speech_16k, 16000)
    memory, _ = model.encode_prompt(prompt_codes)
    voice = runtime.voice_from_audio(speech_16k, 16000)
    np.testing.assert_array_equal(voice.prompt_codes, prompt_codes.numpy())
    assert np.max(np.abs(voice.prompt_memory - memory.numpy())) < 1e-4
    wav = runtime.synthesize_phonemes(_phonemes(8, 0), voice=voice, temperature=0.0)
    reference = model.generate(torch.from_numpy(_phonemes(8, 0))[None], prompt_codes, temperature=0.0)
    assert len(wav) == int(reference.durations.sum()) * runtime.hop_length


def test_prompt_rules_are_the_sdks():
    assert rt_tts.MIN_PROMPT_SECONDS == api.MIN_PROMPT_SECONDS
    assert rt_tts.MAX_PROMPT_SECONDS == api.MAX_PROMPT_SECONDS
    assert rt_tts.SILENCE_DBFS == api._SILENCE_DBFS


def test_default_voice_is_the_torch_prompt_memory(tiny, runtime):
    model = tiny[0]
    memory, _ = model.encode_prompt(model.default_prompt())
    np.testing.assert_array_equal(runtime.default_voice.prompt_memory, memory.detach().numpy())
    np.testing.assert_array_equal(runtime.default_voice.prompt_codes, model.default_prompt().numpy())


@pytest.mark.parametrize(
    "ids", [[], [[]], np.zeros((0,), np.int64), [0, 5, 6], [5, 80], [-3], [1.5, 2.0], [[1, 2], [3, 4]]]
)
def test_bad_phonemes_are_refused(runtime, ids):
    with pytest.raises(PhonemeInputError):
        runtime.synthesize_phonemes(ids)


def test_bad_options_and_prompts_are_refused(runtime):
    with pytest.raises(ValueError, match="speed"):
        runtime.synthesize_codes([5, 6], speed=0.0)
    with pytest.raises(ValueError, match="num_codebooks"):
        runtime.synthesize_codes([5, 6], num_codebooks=4)
    with pytest.raises(AudioError, match="silent"):
        runtime.voice_from_audio(np.full(16000, 1e-5, np.float32), 16000)
    with pytest.raises(AudioError, match="at least 1 s"):
        runtime.voice_from_audio(
            0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32), 16000
        )


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


@pytest.mark.parametrize("file", ["tts_decoder_step.onnx", "default_voice.npz", "codec_decoder.onnx"])
def test_tampered_bundle_is_refused(tiny, tmp_path, file):
    copy = _copy(tiny[2], tmp_path)
    data = bytearray((copy / file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / file).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"sha256 mismatch for {file}"):
        TTSRuntime.open(copy)


def test_other_bundles_are_refused(tiny, tmp_path):
    copy = _copy(tiny[2], tmp_path)
    (copy / "extra.onnx").write_bytes(b"unlisted")
    with pytest.raises(BundleError, match="not listed"):
        TTSRuntime.open(copy)
    (copy / "extra.onnx").unlink()
    with pytest.raises(BundleError, match="not a codec"):
        CodecRuntime.open(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["task"] = "codec"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a TTS bundle"):
        TTSRuntime.open(copy)
    manifest["task"], manifest["format_version"] = "tts", 2
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer than this runtime"):
        TTSRuntime.open(copy)


def test_runtime_imports_neither_torch_nor_speechkit():
    code = (
        "import sys, speechkit_rt.tts; print(sorted(m for m in ('torch', 'speechkit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED / "model.safetensors").exists(), reason="shipped mobilespeech checkpoint absent"
)
@torch.no_grad()
def test_shipped_mobilespeech_greedy_equals_torch(tmp_path):
    """The shipped model, float32 bundle: argmax tokens of a sentence equal torch's."""
    import speechkit
    from speechkit.text import TextFrontend

    tts = speechkit.load("mobilespeech")
    bundle = export_tts(tts.model, tmp_path / "tts", "mobilespeech", progress=False, zero_shot=False)
    ids = np.array(TextFrontend().phonemize("Glue the sheet to the dark blue background.").ids)
    with TTSRuntime.open(bundle.bundle, num_threads=1) as runtime:
        result = runtime.synthesize_codes(ids, temperature=0.0)
    reference = tts.model.generate(torch.from_numpy(ids)[None], tts.model.default_voice(), temperature=0.0)
    np.testing.assert_array_equal(result.durations, reference.durations[0].numpy())
    assert np.mean(result.codes == reference.codes.numpy()) == 1.0
