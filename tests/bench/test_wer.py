"""bench/wer.py: scoring normalisation, Levenshtein error counts, pooled WER and CER."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import wer  # noqa: E402


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("It's 5 o'clock.", "its five oclock"),
        ("1,000,001 stars", "one million one stars"),
        ("in 1066 and 1990", "in one thousand sixty six and nineteen ninety"),
        ("the 1980s", "the nineteen eighties"),
        ("$20 or 15%", "twenty dollars or fifteen percent"),
        ("the 22nd & 3rd", "the twenty second and third"),
        ("door-nail / Dr. No", "door nail doctor no"),
        ("  “Naïve”—OK?  ", "naive okay"),
        ("3stars", "three stars"),
        (
            "They're sure you'd say we won't, can't, didn't, cannot",
            "they are sure you would say we will not can not did not can not",
        ),
    ],
)
def test_normalize_text_writes_both_forms_alike(written: str, spoken: str) -> None:
    assert wer.normalize_text(written) == spoken
    assert wer.normalize_text(spoken) == spoken  # idempotent on already-normalised text


def test_word_errors_count_each_edit_kind() -> None:
    counts = wer.word_errors("a b c d", "a x c d e")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
    counts = wer.word_errors("a b c d", "a d")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (0, 2, 0)
    assert counts.rate == 0.5


def test_alignment_prefers_fewest_edits_then_fewest_substitutions() -> None:
    # "a b" -> "b a": two substitutions, or a deletion + an insertion; equal cost, fewer S wins.
    counts = wer.align_errors(["a", "b"], ["b", "a"])
    assert counts.errors == 2 and counts.substitutions == 0


def test_punctuation_and_case_are_not_errors() -> None:
    assert (
        wer.word_errors(
            "Since he had proved it, he was reprieved.", "since he had proved it he was reprieved"
        ).errors
        == 0
    )


def test_corpus_wer_pools_counts_rather_than_averaging_rates() -> None:
    total = wer.corpus_wer(["a", "b c d e f g h i j"], ["x", "b c d e f g h i j"])
    assert total.reference_words == 10 and total.rate == pytest.approx(0.1)  # the mean of rates would be 0.5


def test_wer_can_exceed_one_and_empty_references_are_handled() -> None:
    assert wer.word_errors("a", "b c d").rate == 3.0
    assert wer.word_errors("", "").rate == 0.0
    assert math.isinf(wer.word_errors("", "word").rate)


def test_character_error_rate_counts_spaces() -> None:
    counts = wer.character_errors("ab cd", "abcd")
    assert counts == wer.ErrorCounts(0, 1, 0, 5)
    assert wer.corpus_cer(["ab cd", "ef"], ["abcd", "ef"]).rate == pytest.approx(1 / 7)


def test_mismatched_lists_raise() -> None:
    with pytest.raises(ValueError, match="2 references but 1"):
        wer.corpus_wer(["a", "b"], ["a"])
