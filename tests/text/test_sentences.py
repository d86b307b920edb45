"""split_sentences: abbreviations, decimals, initials, long sentences."""

from __future__ import annotations

import pytest

from speechkit.text import split_sentences


def test_splits_at_sentence_ends_only():
    text = "Dr. Smith paid 3.5 dollars, e.g. a lot. Was it fair? Yes! Mr. J. R. Doe agreed."
    assert split_sentences(text) == [
        "Dr. Smith paid 3.5 dollars, e.g. a lot.",
        "Was it fair?",
        "Yes!",
        "Mr. J. R. Doe agreed.",
    ]


def test_quotes_and_ellipses():
    assert split_sentences('He said "Stop." Then he left... Later, silence.') == [
        'He said "Stop."',
        "Then he left...",
        "Later, silence.",
    ]


def test_lowercase_after_dot_does_not_split():
    assert split_sentences("Bring pens, etc. and paper.") == ["Bring pens, etc. and paper."]


def test_whitespace_only_gives_no_sentences():
    assert split_sentences("  \n ") == []


def test_long_sentences_are_cut_at_commas_then_words():
    clause = "and then we walked a little further down the road"
    text = ", ".join([clause] * 12) + "."
    pieces = split_sentences(text, max_chars=120)
    assert len(pieces) > 1 and all(len(p) <= 120 for p in pieces)
    assert " ".join(pieces).replace(" ", "") == text.replace(" ", "")
    no_commas = " ".join(["word"] * 200)
    assert all(len(p) <= 50 for p in split_sentences(no_commas, max_chars=50))
    assert all(len(p) <= 30 for p in split_sentences("x" * 100, max_chars=30))


def test_rejects_tiny_max_chars():
    with pytest.raises(ValueError):
        split_sentences("hello", max_chars=3)


def test_long_text_splits_in_linear_time():
    import time

    text = "Dr. Smith paid $3.50 on March 3, 2021 at 7:30 pm, e.g. for 1,234 widgets. " * 3000
    start = time.perf_counter()
    sentences = split_sentences(text)
    assert len(sentences) == 3000 and sentences[0].startswith("Dr. Smith paid")
    assert time.perf_counter() - start < 2.0
