"""The TTS text frontend: normalisation, sentence splitting, grapheme-to-phoneme, the phoneme table.

Example:
    >>> from speechkit.text import TextFrontend
    >>> TextFrontend().phonemize("Hi!").symbols
    ['HH', 'AY1', '!']
"""

from speechkit.errors import TextError
from speechkit.text.frontend import PhonemeSequence, TextFrontend
from speechkit.text.g2p import GraphemeToPhoneme
from speechkit.text.normalizer import NormalizedText, normalize_text
from speechkit.text.sentences import split_sentences
from speechkit.text.symbols import SYMBOLS_VERSION, PhonemeSymbols

__all__ = [
    "SYMBOLS_VERSION",
    "GraphemeToPhoneme",
    "NormalizedText",
    "PhonemeSequence",
    "PhonemeSymbols",
    "TextError",
    "TextFrontend",
    "normalize_text",
    "split_sentences",
]
