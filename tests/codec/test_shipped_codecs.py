"""Every shipped codec loads by name, round-trips real unseen speech and keeps its card's quality."""

from __future__ import annotations

import numpy as np
import pytest

import speechkit
from speechkit.checkpoint import shipped_checkpoints
from speechkit.metrics import stoi

SHIPPED_CODECS = [c for c in shipped_checkpoints() if c.task == "codec"]


@pytest.mark.parametrize("ckpt", SHIPPED_CODECS, ids=[c.name for c in SHIPPED_CODECS])
def test_shipped_codec_round_trip_keeps_card_quality(ckpt, speech_16k):
    codec = speechkit.load(ckpt.name)
    tokens = codec.from_bytes(codec.to_bytes(codec.encode(speech_16k, 16000)))
    decoded = codec.decode(tokens)
    assert decoded.shape == speech_16k.shape and np.all(np.isfinite(decoded))
    # The bundled sample is a festival voice: the held-out engine of every training split.
    score = stoi(speech_16k, decoded)
    ood = ckpt.card.get("metrics", {}).get("test_ood", {})
    card_stoi = max((v for k, v in ood.items() if k.startswith("stoi@")), default=None)
    floor = 0.6 if card_stoi is None else card_stoi - 0.1
    assert score > floor, f"{ckpt.name}: STOI {score:.3f} on the bundled sample, card says {card_stoi}"


def test_the_default_codec_list_has_a_multi_rate_codec():
    names = {c.name for c in SHIPPED_CODECS}
    assert "mel-rvq-demo" in names
    if "codec-rvq" in names:
        codec = speechkit.load("codec-rvq")
        assert [codec.num_codebooks_for(k) for k in (1.5, 3.0, 6.0)] == [3, 6, 12]
