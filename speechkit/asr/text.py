"""ASR targets: a frozen character vocabulary and the normaliser that turns corpus text into it.

Why characters and not subwords: the paired data is about 3 hours (~3,600 sentences, ~40k words).
A sentencepiece model of even 256-500 pieces would see most pieces only a handful of times, so its
output layer and the decoder's embedding would be the worst-trained parts of the model; with 31
symbols every output row sees tens of thousands of examples. Characters have no out-of-vocabulary
words (every English word the normaliser emits is spellable), CTC over 25 Hz encoder frames has
enough frames for the ~15 characters per second these engines speak, and the decoder's softmax is
tiny, which matters for the CPU-bound beam search. The cost (longer target sequences, so more
decoder steps) is small at this utterance length.

Ids: 0 ``<blank>`` (CTC blank, also padding), 1 ``<unk>``, 2 ``<sos/eos>`` (one id for start and end,
as ESPnet), 3 space, 4 apostrophe, 5-30 ``a``-``z``. The table is frozen: a checkpoint stores
``VOCAB_VERSION`` and refuses another, because an id is a row of its embedding.

Example:
    >>> vocab = CharVocabulary()
    >>> len(vocab), vocab.encode("Hi 2 cats!")
    (31, [12, 13, 3, 24, 27, 19, 3, 7, 5, 24, 23])
    >>> vocab.decode(vocab.encode("Dr. Smith's 3rd car"))
    "doctor smith's third car"
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

VOCAB_VERSION = 1
NORMALIZER_VERSION = 1

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
_SPECIALS = (BLANK, UNK, SOS_EOS)
_CHARS = (" ", "'", *"abcdefghijklmnopqrstuvwxyz")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "jr": "junior",
    "sr": "senior", "vs": "versus", "etc": "et cetera", "prof": "professor", "no": "number",
}  # fmt: skip
_SYMBOL_WORDS = {"%": " percent ", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "$": " dollars "}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """Cardinal English words of a non-negative integer (no "and", as US engines read them).

    Example:
        >>> number_to_words(0), number_to_words(2024), number_to_words(1_000_015)
        ('zero', 'two thousand twenty four', 'one million fifteen')
    """
    if n < 1000:
        return " ".join(_below_thousand(n))
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += [*number_to_words(n // scale).split(), name]
            n %= scale
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def year_to_words(n: int) -> str:
    """Years read in pairs ("nineteen eighty four"), the way the corpus engines speak 1100-1999.

    Example:
        >>> year_to_words(1984), year_to_words(1900), year_to_words(1905)
        ('nineteen eighty four', 'nineteen hundred', 'nineteen oh five')
    """
    high, low = divmod(n, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    low_words = f"oh {_ONES[low]}" if low < 10 else number_to_words(low)
    return f"{number_to_words(high)} {low_words}"


def _ordinal(words: str) -> str:
    *head, last = words.split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _spell_number(match: re.Match) -> str:
    digits, decimals, suffix = match.group(1).replace(",", ""), match.group(2), match.group(3)
    value = int(digits)
    if suffix:
        return f" {_ordinal(number_to_words(value))} "
    if decimals:
        fraction = " ".join(_ONES[int(d)] for d in decimals)
        return f" {number_to_words(value)} point {fraction} "
    if len(digits) == 4 and 1100 <= value <= 1999:
        return f" {year_to_words(value)} "
    return f" {number_to_words(value)} "


_NUMBER = re.compile(r"(\d[\d,]*\d|\d)(?:\.(\d+))?(st|nd|rd|th)?\b", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """Corpus text -> the spoken-form string the vocabulary spells (lowercase a-z, ', space).

    Numbers become words (years in pairs, ordinals, decimals), a few abbreviations and symbols are
    expanded, accents are stripped, hyphens and slashes split words, other punctuation goes, and
    apostrophes survive only inside words.

    Example:
        >>> normalize_text("It's 5:30 -- 100% sure, Mr. O'Neil (1999)!")
        "it's five thirty one hundred percent sure mister o'neil nineteen ninety nine"
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("`", "'")
    for symbol, words in _SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    text = _NUMBER.sub(_spell_number, text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not in-word apostrophes
    words = [_ABBREVIATIONS.get(w, w) for w in text.split()]
    return " ".join(words)


class CharVocabulary:
    """The frozen character table of every ASR model (see the module docstring for the ids).

    Example:
        >>> vocab = CharVocabulary()
        >>> vocab.blank_id, vocab.unk_id, vocab.sos_eos_id, vocab.space_id
        (0, 1, 2, 3)
        >>> vocab.ids_to_text([12, 13, 0, 1])
        'hi'
    """

    version = VOCAB_VERSION

    def __init__(self) -> None:
        self.symbols: tuple[str, ...] = (*_SPECIALS, *_CHARS)
        self._ids = {s: i for i, s in enumerate(self.symbols)}
        self.blank_id, self.unk_id, self.sos_eos_id = 0, 1, 2
        self.space_id = self._ids[" "]

    def __len__(self) -> int:
        return len(self.symbols)

    def text_to_ids(self, normalized: str) -> list[int]:
        """Ids of an already normalised string (characters outside the table map to ``<unk>``)."""
        return [self._ids.get(ch, self.unk_id) for ch in normalized]

    def encode(self, text: str) -> list[int]:
        """Raw text -> normalised -> ids."""
        return self.text_to_ids(normalize_text(text))

    def ids_to_text(self, ids: Iterable[int]) -> str:
        """Ids -> string; special ids are dropped and spaces collapsed."""
        chars = [self.symbols[i] for i in ids if 0 <= i < len(self.symbols) and i >= len(_SPECIALS)]
        return " ".join("".join(chars).split())

    def decode(self, ids: Iterable[int]) -> str:
        return self.ids_to_text(ids)
