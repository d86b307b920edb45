"""Character vocabulary and the target normaliser."""

from __future__ import annotations

import pytest

from speechkit.asr.text import CharVocabulary, normalize_text


def test_vocabulary_is_frozen_and_round_trips():
    vocab = CharVocabulary()
    assert len(vocab) == 31 and vocab.symbols[:5] == ("<blank>", "<unk>", "<sos/eos>", " ", "'")
    text = "don't stop the music"
    assert vocab.ids_to_text(vocab.text_to_ids(text)) == text
    assert vocab.text_to_ids("é")[0] == vocab.unk_id  # outside the table (the normaliser strips accents first)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("I have 21 cats and 1,000 dogs.", "i have twenty one cats and one thousand dogs"),
        ("In 1984 it cost 3.50", "in nineteen eighty four it cost three point five zero"),
        ("Chapter IV: rock-and-roll", "chapter four rock and roll"),
        ("the 2nd and 23rd", "the second and twenty third"),
        ("'quoted' rock-and-roll café", "quoted rock and roll cafe"),
        ("Dr. Who vs. Mr. X", "doctor who versus mister x"),
    ],
)
def test_normaliser(raw, expected):
    assert normalize_text(raw) == expected
