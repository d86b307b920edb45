"""Single-Codec: one codebook, bitrate accounting with global codes, the global embedding, token
files with global codes, config round trip, the recipe's CLI, and a short overfit."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

import speechkit
from speechkit.checkpoint import save_checkpoint
from speechkit.codec.api import Codec
from speechkit.codec.bitstream import read_bitstream, write_bitstream
from speechkit.codec.single_codec import SingleCodec, SingleCodecConfig
from speechkit.errors import BitstreamError, ConfigError
from speechkit.registry import config_from_dict
from speechkit.tokenizers.bitpacking import packed_size_bytes
from speechkit.tokenizers.tokens import Tokens
from speechkit.tokenizers.vector_quantizer import VectorQuantizer

TINY = SingleCodecConfig(
    dim=32,
    encoder_blocks=(1, 1),
    decoder_blocks=(1, 1),
    codebook_size=64,
    dead_code_threshold=0.2,
    lstm_hidden_size=16,
    reference_channels=16,
    reference_blocks=1,
    global_dim=16,
    global_num_codes=2,
    global_codebook_size=16,
)


@pytest.fixture()
def codec() -> Codec:
    return Codec(SingleCodec(TINY).eval())


def _noise(num_samples: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(num_samples) * 0.1).astype(np.float32)


def test_shapes_and_bitrates(codec):
    assert codec.frame_rate == 25.0 and codec.codebook_sizes == (64,)
    assert codec.bitrate() == 25 * 6  # one codebook of 64 codes at 25 Hz
    assert codec.global_codebook_sizes == (16, 16) and codec.global_bits == 8
    assert codec.global_bitrate(2.0) == 4.0  # 8 bits once per 2-second utterance
    wav = _noise(16000 + 123)
    tokens = codec.encode(wav, 16000)
    assert tokens.codes.shape == (1, 1, 26)  # 16123 samples padded to 26 token hops of 640
    assert tokens.extras["global_codes"].shape == (1, 2) and tokens.extras["global_codes"].dtype == np.int64
    assert tokens.extras["global_codebook_sizes"] == (16, 16)
    assert codec.decode(tokens).shape == wav.shape


def test_default_config_is_a_300_bps_codec_with_40_global_bits():
    api = SingleCodec(SingleCodecConfig()).task_api()
    assert api.frame_rate == 25.0 and api.bitrate() == 300.0
    assert api.global_bits == 40 and api.global_bitrate(5.0) == 8.0


def test_one_codebook_only(codec):
    assert isinstance(codec.model.quantizer, VectorQuantizer)
    wav = _noise(3200)
    assert codec.encode(wav, 16000, num_codebooks=1).num_codebooks == 1
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.encode(wav, 16000, num_codebooks=2)
    with pytest.raises(ValueError, match="codes \\[B, 1, M\\]"):
        codec.model.decode_codes(torch.zeros(1, 2, 5, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))


def test_global_embedding_is_one_time_invariant_vector_per_utterance(speech_16k):
    model = SingleCodec(TINY).eval()
    clip = torch.from_numpy(speech_16k[:64000])[None]
    with torch.no_grad():

        def embed(wav: torch.Tensor) -> torch.Tensor:
            return model.global_embedding(wav, quantized=False)

        for num_samples in (1600, 16000, 64000):
            assert embed(clip[:, :num_samples]).shape == (1, TINY.global_dim)
        assert model.global_embedding(torch.cat([clip, clip.flip(-1)])).shape == (2, TINY.global_dim)
        reference = embed(clip)
        shuffled = clip.reshape(1, 10, 6400)[:, torch.randperm(10)].reshape(1, -1)
        noise = torch.from_numpy(_noise(64000, seed=3))[None]

        def distance(wav: torch.Tensor) -> float:
            return float((embed(wav) - reference).norm() / reference.norm())

        # Pooling over frames: reordering time barely moves the vector, other audio does.
        assert distance(shuffled) < 0.25 * distance(noise)
        assert distance(clip.flip(-1)) < 0.25 * distance(noise)


def test_decode_from_a_prompt_embedding(codec):
    model = codec.model
    wav = torch.from_numpy(_noise(6400))[None]
    codes, global_codes = model.encode_codes(wav), model.encode_global(wav)
    from_codes = model.decode_codes(codes, global_codes)
    from_embedding = model.decode_codes(codes, global_embedding=model.global_embedding(wav))
    assert torch.allclose(from_codes, from_embedding, atol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        model.decode_codes(codes)


def test_token_file_round_trip_carries_global_codes(codec):
    wav = _noise(16000 + 123, seed=1)
    tokens = codec.encode(wav, 16000)
    data = codec.to_bytes(tokens)
    header, _ = read_bitstream(data)
    assert header["global_codebook_sizes"] == [16, 16] and header["global_payload_bytes"] == 1
    assert header["payload_bytes"] == packed_size_bytes(26, (64,))  # 26 frames x 6 bits
    back = codec.from_bytes(data)
    assert back == tokens
    np.testing.assert_array_equal(codec.decode(back), codec.decode(tokens))
    with pytest.raises(BitstreamError, match="truncated"):
        codec.from_bytes(data[:-1])


def test_version_1_token_files_still_read():
    tokens = Tokens(np.arange(6).reshape(1, 2, 3), 50.0, (8, 8), kind="rvq_codec")
    data = write_bitstream(tokens, model="m", fingerprint="f", sample_rate=16000)
    _, version, header_length = struct.unpack_from(">4sBI", data)
    assert version == 2
    header = json.loads(data[9 : 9 + header_length])
    assert header.pop("global_codebook_sizes") == [] and header.pop("global_payload_bytes") == 0
    encoded = json.dumps(header).encode()
    version_1 = b"SKTK" + struct.pack(">BI", 1, len(encoded)) + encoded + data[9 + header_length :]
    assert read_bitstream(version_1)[1] == tokens


def test_decode_refuses_missing_or_foreign_global_codes(codec):
    tokens = codec.encode(_noise(3200), 16000)
    extras = dict(tokens.extras)

    def with_extras(**changes) -> Tokens:
        new = {**extras, **changes}
        return Tokens(np.array(tokens.codes), tokens.frame_rate, tokens.codebook_sizes, tokens.kind, new)

    bare = Tokens(np.array(tokens.codes), tokens.frame_rate, tokens.codebook_sizes, tokens.kind)
    with pytest.raises(BitstreamError, match="lack extras\\['global_codes'\\]"):
        codec.decode(bare)
    with pytest.raises(BitstreamError, match="global codebook sizes"):
        codec.decode(with_extras(global_codebook_sizes=(32, 32)))
    with pytest.raises(BitstreamError, match="global_codes'\\] must be integer \\[1, 2\\]"):
        codec.decode(with_extras(global_codes=np.zeros((1, 3), dtype=np.int64)))
    with pytest.raises(BitstreamError, match="16"):
        codec.decode(with_extras(global_codes=np.array([[0, 16]])))


def test_config_round_trips_through_json_and_checkpoint(tmp_path):
    config = TINY.replace(codebook_size=32)
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="reference_min_fraction"):
        TINY.replace(reference_min_fraction=0.0)
    model = SingleCodec(config).eval()
    api = speechkit.load(save_checkpoint(model, tmp_path / "single-codec-tiny"))
    wav = _noise(6400, seed=2)
    tokens = api.encode(wav, 16000)
    assert tokens == model.task_api().encode(wav, 16000)
    np.testing.assert_allclose(api.decode(tokens), model.task_api().decode(tokens), atol=1e-6)


def test_train_recipe_help(capsys):
    from speechkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "single-codec", "--help"])
    assert exit_info.value.code == 0
    assert "--segment-seconds" in capsys.readouterr().out


@pytest.mark.slow
def test_overfits_a_two_second_clip(speech_16k):
    from speechkit.train.recipes.codec_training import CodecTrainingModule

    torch.manual_seed(0)
    module = CodecTrainingModule(SingleCodec(TINY))
    clip = torch.from_numpy(speech_16k[8000 : 8000 + 32000])[None]
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss, metrics = module.training_step(clip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(metrics["mel"])
    assert {"global_perplexity", "global_usage_min"} <= set(metrics)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
