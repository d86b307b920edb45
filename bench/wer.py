"""Word and character error rates for the TTS and ASR benchmarks, after one English text normalisation.

A recogniser writes "Mr. Smith paid $5, you're sure?" where the reference says "mister smith paid five
dollars you are sure": before counting errors both sides go through :func:`normalize_text`, which

- lowercases, folds accents (café -> cafe) and typographic quotes;
- writes numbers as words, one way for both sides: cardinals without "and" (1,204 -> "one thousand
  two hundred four"), four-digit numbers without a comma from 1100 to 1999 and 2010 to 2099 as years
  (1990 -> "nineteen ninety", 1905 -> "nineteen oh five", 2019 -> "twenty nineteen"), decimals digit
  by digit after "point", ordinals (21st -> "twenty first"), ``%`` -> "percent", ``$N`` -> "N dollars";
- expands ``&`` -> "and" and a few titles (mr, mrs, dr) and unifies "ok"/"okay";
- expands the unambiguous contractions (n't -> not, won't -> will not, can't/cannot -> can not,
  're -> are, 've -> have, 'll -> will, 'm -> am, 'd -> would), since recognisers write either form;
  's (is, has or a possessive) stays, as "its", "hes";
- deletes the remaining apostrophes and full stops (o'clock -> oclock, U.S. -> us) and turns every
  other punctuation mark (hyphens, slashes, commas ...) into a space.

The error counts are a word-level Levenshtein alignment: substitutions S, deletions D (reference
words missed), insertions I (extra words), over the N reference words; WER = (S + D + I) / N, so it
can exceed 1. A corpus WER pools the counts of every utterance (not a mean of per-utterance rates).
The character error rate is the same alignment over the characters of the normalised text, spaces
included.

Example:
    >>> normalize_text("Mr. Smith paid $5, you're sure?")
    'mister smith paid five dollars you are sure'
    >>> counts = word_errors("the cat sat on the mat", "the cat sat on a mat mat")
    >>> counts.substitutions, counts.deletions, counts.insertions, counts.reference_words
    (1, 0, 1, 6)
    >>> round(counts.rate, 3)
    0.333
    >>> corpus_wer(["one two", "three four five six"], ["one", "three four five six"]).rate
    0.16666666666666666
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "ErrorCounts",
    "align_errors",
    "character_errors",
    "corpus_cer",
    "corpus_wer",
    "normalize_text",
    "number_to_words",
    "word_errors",
]

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_WORD_MAP = {"mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay", "cannot": "can not"}
_CONTRACTIONS = (
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"(?<=[a-z])n't\b"), " not"),
    (re.compile(r"(?<=[a-z])'re\b"), " are"),
    (re.compile(r"(?<=[a-z])'ve\b"), " have"),
    (re.compile(r"(?<=[a-z])'ll\b"), " will"),
    (re.compile(r"(?<=[a-z])'m\b"), " am"),
    (re.compile(r"(?<=[a-z])'d\b"), " would"),
)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def number_to_words(number: int) -> str:
    """An integer as English cardinal words, without "and" or hyphens.

    Example:
        >>> number_to_words(0), number_to_words(45), number_to_words(1204), number_to_words(-3)
        ('zero', 'forty five', 'one thousand two hundred four', 'minus three')
        >>> number_to_words(2_000_019)
        'two million nineteen'
    """
    if number < 0:
        return "minus " + number_to_words(-number)
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_to_words(rest) if rest else "")
    for scale, name in _SCALES:
        if number >= scale:
            head, rest = divmod(number, scale)
            return number_to_words(head) + " " + name + (" " + number_to_words(rest) if rest else "")
    raise AssertionError("unreachable")


def year_to_words(year: int) -> str:
    """A year as it is spoken: two pairs of digits ("nineteen ninety"), "hundred" and "oh" as needed.

    Example:
        >>> year_to_words(1990), year_to_words(1905), year_to_words(1100), year_to_words(2019)
        ('nineteen ninety', 'nineteen oh five', 'eleven hundred', 'twenty nineteen')
    """
    head, tail = divmod(year, 100)
    if tail == 0:
        return number_to_words(head) + " hundred"
    return number_to_words(head) + (" oh " if tail < 10 else " ") + number_to_words(tail)


def _ordinal(words: str) -> str:
    """The ordinal of cardinal words: the last word changes (twenty one -> twenty first)."""
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _spell_number(match: re.Match[str]) -> str:
    digits, decimals, suffix = match.group("int"), match.group("frac"), (match.group("suffix") or "").lower()
    value = int(digits.replace(",", ""))
    if suffix in ("st", "nd", "rd", "th"):
        return " " + _ordinal(number_to_words(value)) + " "
    if (
        "," not in digits
        and len(digits) == 4
        and not decimals
        and (1100 <= value < 2000 or 2010 <= value < 2100)
    ):
        words = year_to_words(value)
    else:
        words = number_to_words(value)
    if decimals:
        words += " point " + " ".join(_ONES[int(d)] for d in decimals)
    if suffix == "s":  # a plural number or decade: 1990s -> nineteen nineties, 6s -> sixes
        words = words[:-1] + "ies" if words.endswith("y") else words + ("es" if words.endswith("x") else "s")
    return " " + words + " "


_MONEY = re.compile(r"\$\s?(\d[\d,]*(?:\.\d+)?)")
_NUMBER = re.compile(
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?(?:(?P<suffix>st|nd|rd|th|s)(?![a-z]))?"
)


def normalize_text(text: str) -> str:
    """English text as it is scored: lowercase words of letters and digits-as-words, one space apart.

    See the module docstring for every rule; both the reference and the hypothesis go through it.

    Example:
        >>> normalize_text("It's 3.5% of the 1990s -- the U.S. & Café  21st!")
        'its three point five percent of the nineteen nineties the us and cafe twenty first'
        >>> normalize_text("Twenty-three, said Dr. Who; ok?")
        'twenty three said doctor who okay'
    """
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _MONEY.sub(lambda m: f" {m.group(1)} dollars ", text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = _NUMBER.sub(_spell_number, text)
    for pattern, expansion in _CONTRACTIONS:
        text = pattern.sub(expansion, text)
    text = re.sub(r"['.]", "", text)
    text = re.sub(r"[^a-z]+", " ", text)
    return " ".join(_WORD_MAP.get(word, word) for word in text.split())


# ------------------------------------------------------------------------------------------ alignment
@dataclasses.dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of a Levenshtein alignment of a hypothesis against a reference.

    Args:
        substitutions: reference units replaced by another.
        deletions: reference units the hypothesis lacks.
        insertions: hypothesis units with no reference counterpart.
        reference_words: units in the reference (words, or characters for a CER), the denominator.

    Example:
        >>> total = ErrorCounts(1, 0, 0, 4) + ErrorCounts(0, 1, 1, 6)
        >>> total, total.errors, total.rate
        (ErrorCounts(substitutions=1, deletions=1, insertions=1, reference_words=10), 3, 0.3)
    """

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        """S + D + I."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """(S + D + I) / N; 0 for an empty reference and hypothesis, inf for insertions into nothing."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_words

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def align_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> ErrorCounts:
    """Minimum-edit alignment of two token sequences; among equal-cost alignments, fewest substitutions.

    Args:
        reference: the reference tokens (words or characters).
        hypothesis: the recognised tokens.

    Returns:
        The :class:`ErrorCounts` (``reference_words`` = ``len(reference)``).

    Example:
        >>> align_errors("kitten", "sitting")
        ErrorCounts(substitutions=2, deletions=0, insertions=1, reference_words=6)
    """
    # Each cell holds (edits, substitutions, deletions, insertions) of the best alignment of the
    # first i reference and j hypothesis tokens; tuples compare by edits first.
    previous = [(j, 0, 0, j) for j in range(len(hypothesis) + 1)]
    for i, ref_token in enumerate(reference, start=1):
        current = [(i, 0, i, 0)]
        for j, hyp_token in enumerate(hypothesis, start=1):
            e, s, d, n = previous[j - 1]
            diagonal = (e, s, d, n) if ref_token == hyp_token else (e + 1, s + 1, d, n)
            e, s, d, n = previous[j]
            deletion = (e + 1, s, d + 1, n)
            e, s, d, n = current[j - 1]
            insertion = (e + 1, s, d, n + 1)
            current.append(min(diagonal, deletion, insertion))
        previous = current
    _, substitutions, deletions, insertions = previous[-1]
    return ErrorCounts(substitutions, deletions, insertions, len(reference))


def word_errors(reference: str, hypothesis: str, normalize: bool = True) -> ErrorCounts:
    """Word-level error counts of one utterance (``.rate`` is its WER).

    Args:
        reference: what was said.
        hypothesis: what the recogniser wrote.
        normalize: pass both through :func:`normalize_text` first (else split on whitespace as given).

    Example:
        >>> word_errors("Hello, world!", "hello word").rate
        0.5
    """
    if normalize:
        reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    return align_errors(reference.split(), hypothesis.split())


def character_errors(reference: str, hypothesis: str, normalize: bool = True) -> ErrorCounts:
    """Character-level error counts of one utterance over the normalised text, spaces included (``.rate`` = CER).

    Example:
        >>> character_errors("Hello, world!", "hello word")
        ErrorCounts(substitutions=0, deletions=1, insertions=0, reference_words=11)
    """
    if normalize:
        reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    return align_errors(list(reference), list(hypothesis))


def _pooled(
    references: Iterable[str],
    hypotheses: Iterable[str],
    count: Callable[[str, str, bool], ErrorCounts],
    normalize: bool,
) -> ErrorCounts:
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts(0, 0, 0, 0)
    for reference, hypothesis in zip(references, hypotheses):
        total = total + count(reference, hypothesis, normalize)
    return total


def corpus_wer(references: Iterable[str], hypotheses: Iterable[str], normalize: bool = True) -> ErrorCounts:
    """Word error counts pooled over utterances (``.rate`` is the corpus WER: total errors / total words).

    Raises:
        ValueError: the two lists differ in length.
    """
    return _pooled(references, hypotheses, word_errors, normalize)


def corpus_cer(references: Iterable[str], hypotheses: Iterable[str], normalize: bool = True) -> ErrorCounts:
    """Character error counts pooled over utterances (``.rate`` is the corpus CER).

    Example:
        >>> corpus_cer(["ab", "cd"], ["ab", "c"]).rate
        0.25
    """
    return _pooled(references, hypotheses, character_errors, normalize)
