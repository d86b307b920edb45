"""Grapheme-to-phoneme conversion of one normalised word: CMUdict first, then rules, then the
trained letter-to-sound model.

1. A single capital letter (``F``, or ``L's``) is spelled: its letter name (``EH1 F``).
2. A word CMUdict holds gets its *first* pronunciation with stress digits (``hello`` ->
   ``HH AH0 L OW1``): the convention the TTS training data was made with.
3. Possessives and contractions CMUdict lacks: ``'s`` after a known word adds ``IH0 Z`` after a
   sibilant, ``S`` after another voiceless consonant, ``Z`` otherwise; ``s'`` and a leading or
   trailing apostrophe are read without it; other apostrophes are dropped before the next step.
4. Anything else goes to :class:`~speechkit.text.lts.LetterToSound`, trained on CMUdict (its
   phoneme error rate on held-out CMUdict words, stress included, is stored in the model file as
   ``held_out_per``, about 13%; ``tests/text/test_g2p.py`` measures it through this class). Before
   the model sees a word, runs of three or more identical letters shrink to two (``soooo``), and a
   word longer than :data:`MAX_LTS_LETTERS` letters is read in pieces of that length. When the model
   gives no vowel at all, a word with vowel letters is predicted again as its leading consonants
   plus the rest (``blorft`` -> ``bl`` + ``orft``), and a word without vowel letters (``xkcd``) or
   still without a vowel is spelled letter by letter.

Hyphenated words are split by the frontend, which keeps the hyphen as a mark.

Example:
    >>> g2p = GraphemeToPhoneme()
    >>> g2p("hello"), g2p("F"), g2p("zorbington's")[-1]
    (['HH', 'AH0', 'L', 'OW1'], ['EH1', 'F'], 'Z')
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from speechkit.text.lexicon import load_cmudict
from speechkit.text.vocabulary import LETTER_NAMES

_SIBILANTS = frozenset({"S", "Z", "SH", "ZH", "CH", "JH"})
_VOICELESS = frozenset({"P", "T", "K", "F", "TH"})
#: The longest run of letters the letter-to-sound model reads at once (no English word is longer).
MAX_LTS_LETTERS = 30
_CACHE_SIZE = 100_000
_VOWEL_PHONEME = re.compile(r"^[A-Z]{2}[012]$")
_WORD = re.compile(r"^'?[A-Za-z]+(?:'[A-Za-z]+)*'?$")


def possessive_suffix(phonemes: list[str]) -> list[str]:
    """The ARPAbet of ``'s`` after a word ending in ``phonemes`` (``IH0 Z`` / ``S`` / ``Z``).

    Example:
        >>> possessive_suffix(["B", "AH1", "S"]), possessive_suffix(["K", "AE1", "T"])
        (['IH0', 'Z'], ['S'])
    """
    last = phonemes[-1] if phonemes else ""
    if last in _SIBILANTS:
        return ["IH0", "Z"]
    return ["S"] if last in _VOICELESS else ["Z"]


class GraphemeToPhoneme:
    """Word -> ARPAbet with stress (see the module docstring); results are cached per instance.

    Args:
        lexicon: word -> pronunciation (default: CMUdict, first pronunciations, loaded lazily).
        lts: a letter-to-sound model with ``predict(word) -> list[str]`` (default: the shipped one,
            loaded at the first out-of-vocabulary word).
    """

    def __init__(self, lexicon: Mapping[str, tuple[str, ...]] | None = None, lts=None) -> None:
        self._lexicon = lexicon
        self._lts = lts
        self._cache: dict[str, list[str]] = {}

    @property
    def lexicon(self) -> Mapping[str, tuple[str, ...]]:
        if self._lexicon is None:
            self._lexicon = load_cmudict()
        return self._lexicon

    @property
    def lts(self):
        if self._lts is None:
            from speechkit.text.lts import default_lts

            self._lts = default_lts()
        return self._lts

    def in_lexicon(self, word: str) -> bool:
        """Whether CMUdict (or the given lexicon) holds ``word`` (any case)."""
        return word.lower() in self.lexicon

    def __call__(self, word: str) -> list[str]:
        """Phonemes of one word of letters and apostrophes.

        Args:
            word: lower case, or a single capital letter (optionally with ``'s``) to spell.

        Returns:
            a non-empty list of ARPAbet symbols with stress digits.

        Raises:
            ValueError: when ``word`` holds characters other than letters and apostrophes.
        """
        if not _WORD.match(word):
            raise ValueError(f"not a word of letters and apostrophes: {word!r}")
        cached = self._cache.get(word)
        if cached is None:
            if len(self._cache) >= _CACHE_SIZE:  # a stream of unique words must not grow memory forever
                self._cache.clear()
            cached = self._cache[word] = self._convert(word)
        return list(cached)

    def _convert(self, word: str) -> list[str]:
        letter = re.fullmatch(r"([A-Z])('s)?", word)
        if letter:
            name = list(LETTER_NAMES[letter.group(1)])
            return name + possessive_suffix(name) if letter.group(2) else name
        word = word.lower()
        found = self.lexicon.get(word)
        if found is not None:
            return list(found)
        if word.endswith("'s") and len(word) > 2:
            base = self._convert(word[:-2])
            return base + possessive_suffix(base)
        stripped = word.strip("'")
        if stripped != word and stripped:
            return self._convert(stripped)
        letters = word.replace("'", "")
        if letters != word and letters in self.lexicon:
            return list(self.lexicon[letters])
        letters = re.sub(r"(.)\1{2,}", r"\1\1", letters)
        pieces = [letters[i : i + MAX_LTS_LETTERS] for i in range(0, len(letters), MAX_LTS_LETTERS)]
        return [p for piece in pieces for p in self._letter_to_sound(piece)]

    def _letter_to_sound(self, letters: str) -> list[str]:
        predicted = self.lts.predict(letters)
        if _has_vowel(predicted):
            return predicted
        onset = re.match(r"[^aeiouy]*", letters).group(0)
        if 0 < len(onset) < len(letters):  # "blorft": the vowel lost in a rare context
            consonants = [p for p in self.lts.predict(onset) if not _VOWEL_PHONEME.match(p)]
            repaired = consonants + self.lts.predict(letters[len(onset) :])
            if _has_vowel(repaired):
                return repaired
        return [p for c in letters.upper() for p in LETTER_NAMES[c]]  # "xkcd": spell it


def _has_vowel(phonemes: list[str]) -> bool:
    return any(_VOWEL_PHONEME.match(p) for p in phonemes)
