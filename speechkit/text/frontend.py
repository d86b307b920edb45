"""The TTS text frontend: raw text -> normalised words -> phoneme symbols and ids.

A sentence's phoneme sequence is its words' ARPAbet phonemes (CMUdict's first pronunciation, stress
digits kept; the letter-to-sound model for other words) with ``_`` between consecutive words; a
kept mark (``, . ? ! ; : -``) follows the word before it directly, with no ``_`` on either side; a
final ``.`` is added when the text does not end with a kept mark. The TTS training data was made
with exactly this convention, so it must not change.

Bad input: empty text, text with nothing pronounceable (only marks, only unknown symbols) and text
longer than ``max_chars`` (split it with :meth:`TextFrontend.sentences` first) raise
:class:`~speechkit.errors.TextError`. Characters that cannot be read are dropped, logged and listed
in :attr:`PhonemeSequence.dropped`.

Example:
    >>> frontend = TextFrontend()
    >>> " ".join(frontend.phonemize("Hello, world").symbols)
    'HH AH0 L OW1 , W ER1 L D .'
    >>> frontend.phonemize("Hello, world").word_index
    [0, 0, 0, 0, -1, 1, 1, 1, 1, -1]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from speechkit.errors import TextError
from speechkit.text.g2p import GraphemeToPhoneme
from speechkit.text.normalizer import NormalizedText, normalize_text
from speechkit.text.sentences import DEFAULT_MAX_CHARS, split_sentences
from speechkit.text.symbols import PUNCTUATION, WORD_BOUNDARY, PhonemeSymbols

#: The longest text :meth:`TextFrontend.phonemize` takes in one call (characters, before normalising).
DEFAULT_MAX_INPUT_CHARS = 5000
_TOKEN = re.compile(r"'?[A-Za-z]+(?:'[A-Za-z]+)*'?|[,.?!;:-]")


@dataclass(frozen=True)
class PhonemeSequence:
    """The phonemes of a text.

    Args:
        symbols: phoneme-table symbols: ARPAbet, ``_`` between words, kept marks.
        ids: the symbols' ids in :class:`~speechkit.text.symbols.PhonemeSymbols` (same length).
        words: the normalised words, in order.
        word_index: for each symbol, the index of its word in ``words``; -1 for ``_`` and marks.
        dropped: characters of the input that could not be read.
    """

    symbols: list[str]
    ids: list[int]
    words: list[str]
    word_index: list[int]
    dropped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class TextFrontend:
    """Text -> :class:`PhonemeSequence` for the TTS models (see the module docstring).

    Args:
        g2p: word -> ARPAbet (default: CMUdict with the trained letter-to-sound fallback).
        max_chars: the longest text one :meth:`phonemize` call takes.
        max_sentence_chars: the longest sentence :meth:`sentences` returns.
    """

    def __init__(
        self,
        g2p: GraphemeToPhoneme | None = None,
        max_chars: int = DEFAULT_MAX_INPUT_CHARS,
        max_sentence_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.g2p = g2p if g2p is not None else GraphemeToPhoneme()
        self.table = PhonemeSymbols()
        self.max_chars = max_chars
        self.max_sentence_chars = max_sentence_chars

    def normalize(self, text: str) -> NormalizedText:
        """The spoken form of ``text`` (:func:`~speechkit.text.normalizer.normalize_text`)."""
        return normalize_text(_check_str(text))

    def phonemize(self, text: str) -> PhonemeSequence:
        """Phonemes of ``text`` as one sequence (it is not split into sentences).

        Args:
            text: raw text of at most ``max_chars`` characters.

        Returns:
            a :class:`PhonemeSequence` whose ids all lie in the phoneme table.

        Raises:
            TextError: empty or over-long text, or nothing pronounceable in it.
        """
        text = _check_str(text)
        if not text.strip():
            raise TextError("cannot phonemize empty text")
        if len(text) > self.max_chars:
            raise TextError(
                f"text of {len(text)} characters is longer than max_chars={self.max_chars}; "
                "split it with TextFrontend.sentences() and phonemize each sentence"
            )
        normalized = normalize_text(text)
        symbols, words, word_index = self._symbols(normalized.text)
        if not words:
            raise TextError(f"nothing pronounceable in {_preview(text)}")
        if symbols[-1] not in PUNCTUATION:
            symbols.append(".")
            word_index.append(-1)
        return PhonemeSequence(symbols, self.table.ids(symbols), words, word_index, list(normalized.dropped))

    def _symbols(self, normalized: str) -> tuple[list[str], list[str], list[int]]:
        symbols: list[str] = []
        words: list[str] = []
        word_index: list[int] = []
        previous_was_word = False
        for token in _TOKEN.findall(normalized):
            if token in PUNCTUATION:
                if words:  # a mark before the first word has nothing to follow
                    symbols.append(token)
                    word_index.append(-1)
                previous_was_word = False
                continue
            if previous_was_word:
                symbols.append(WORD_BOUNDARY)
                word_index.append(-1)
            phonemes = self.g2p(token)
            symbols.extend(phonemes)
            word_index.extend([len(words)] * len(phonemes))
            words.append(token)
            previous_was_word = True
        return symbols, words, word_index

    def sentences(self, text: str) -> list[str]:
        """Split ``text`` into sentences to phonemize one by one (raw text, not normalised).

        Sentences with nothing pronounceable (``"!!!"``) are left out.

        Raises:
            TextError: when no sentence of ``text`` has anything pronounceable.
        """
        text = _check_str(text)
        kept = [s for s in split_sentences(text, self.max_sentence_chars) if _pronounceable(s)]
        if not kept:
            raise TextError(f"nothing pronounceable in {_preview(text)}")
        return kept


def _pronounceable(sentence: str) -> bool:
    return re.search(r"[A-Za-z]", normalize_text(sentence).text) is not None


def _check_str(text: object) -> str:
    if not isinstance(text, str):
        raise TextError(f"text must be a str, got {type(text).__name__}")
    return text


def _preview(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
