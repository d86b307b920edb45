"""Sentence extraction from fortunes and the hash-based train/valid/test split."""

from __future__ import annotations

import pytest

from speechkit.data.sentences import (
    SPLITS,
    fortune_files,
    is_plain_sentence,
    load_sentences,
    sentence_split,
    sentences_from_fortune_text,
    split_sentence_pool,
    split_sentences,
    word_list_sentences,
)
from speechkit.errors import DataError


@pytest.mark.parametrize(
    "sentence",
    [
        "The cat sat on the warm mat.",
        "Are you sure the back door is locked?",
        "Never put off until tomorrow what you can do the day after.",
        "It's a long-forgotten friend, and he is coming home!",
    ],
)
def test_keeps_plain_sentences(sentence: str) -> None:
    assert is_plain_sentence(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Visit http://example.com for the full story.",  # URL
        "Mail me at someone@example.org for details now.",  # address
        "Too short here.",  # 3 words
        "This sentence just keeps going and going and going and going and going and going and on and on and on forever.",  # 23 words
        "x = foo(bar) + 2;",  # code
        "Collect two hundred dollars -- Monopoly rules.",  # attribution dash
        "After your lover has gone you will still have PEANUT BUTTER!",  # shouting
        '"I know nothing," he said very quietly.',  # quotes
        "Q: What is the answer to this riddle?",  # dialogue label
        "Bank error in your favor, collect $200 now.",  # digits and symbols
        "the lower case start is not a sentence.",
        "These behaviours are wasteful, And so they attract disfavour.",  # joined verse lines
    ],
)
def test_drops_unplain_sentences(sentence: str) -> None:
    assert not is_plain_sentence(sentence)


def test_split_sentences_respects_abbreviations() -> None:
    assert split_sentences("Dr. Jones came home.  Then he slept!") == [
        "Dr. Jones came home.",
        "Then he slept!",
    ]


def test_fortune_entries_lose_attributions() -> None:
    text = (
        "Time flies like an arrow today.\n\t\t-- Groucho Marx\n%\nA short one.\n%\nWhat a lovely day it is!\n"
    )
    assert sentences_from_fortune_text(text) == [
        "Time flies like an arrow today.",
        "What a lovely day it is!",
    ]


def test_fortune_files_skip_offensive_and_index_files(tmp_path) -> None:
    (tmp_path / "off").mkdir()
    for name in ("zen", "zen.dat", "zen.u8", "off/rude"):
        (tmp_path / name).write_text("Be kind to all the people you meet.\n%\n")
    assert [p.name for p in fortune_files(tmp_path)] == ["zen"]


def test_load_sentences_is_sorted_unique_and_errors_without_fortunes(tmp_path) -> None:
    (tmp_path / "a").write_text("The sun is warm today.\n%\nThe sun is warm today.\n%\nA bird sang a song.\n")
    assert load_sentences(tmp_path) == ["A bird sang a song.", "The sun is warm today."]
    with pytest.raises(DataError, match="apt-get install fortunes"):
        load_sentences(tmp_path / "missing")


def test_word_list_sentences_are_deterministic(tmp_path) -> None:
    words = tmp_path / "words"
    words.write_text(
        "\n".join(
            ["apple", "river", "stone", "cloud", "green", "house", "quiet", "table", "lamp", "road", "Zed's"]
        )
    )
    first = word_list_sentences(words, 5, seed=3)
    assert first == word_list_sentences(words, 5, seed=3)
    assert all(s.endswith(".") and s[0].isupper() and 4 <= len(s.split()) <= 10 for s in first)
    with pytest.raises(DataError, match="wamerican"):
        word_list_sentences(tmp_path / "nope", 1)


def test_split_is_disjoint_stable_and_roughly_proportional() -> None:
    pool = load_sentences()
    parts = split_sentence_pool(pool)
    sets = {name: set(parts[name]) for name in SPLITS}
    assert (
        not sets["train"] & sets["test"]
        and not sets["train"] & sets["valid"]
        and not sets["valid"] & sets["test"]
    )
    assert sum(len(s) for s in sets.values()) == len(pool) > 5000
    assert 0.03 < len(sets["test"]) / len(pool) < 0.07
    # Stable when the pool grows: adding sentences never moves an existing one.
    grown = split_sentence_pool(pool[::2] + ["A brand new sentence for the pool."])
    assert all(sentence_split(s) == "test" for s in grown["test"] if s in sets["test"])
    assert set(grown["test"]) - {"A brand new sentence for the pool."} <= sets["test"]
