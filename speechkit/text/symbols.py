"""The phoneme symbol table every TTS and alignment model indexes: ARPAbet with stress, word
boundaries and pause-bearing punctuation.

The table is frozen: a checkpoint stores ``SYMBOLS_VERSION`` and refuses another, because an id
means a row of its embedding. Add symbols only with a new version.

Example:
    >>> table = PhonemeSymbols()
    >>> table.ids(["HH", "AH0", "L", "OW1", ","])
    [62, 17, 65, 45, 4]
    >>> table.symbols([62, 17, 65, 45, 4])
    ['HH', 'AH0', 'L', 'OW1', ',']
    >>> len(table)
    80
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from speechkit.errors import SpeechkitError

SYMBOLS_VERSION = 1

PAD = "<pad>"
UNK = "<unk>"
BOS = "<bos>"
WORD_BOUNDARY = "_"
#: Punctuation kept as tokens because it carries prosody (pauses, questions); the normaliser maps
#: every other mark onto one of these or drops it.
PUNCTUATION = (",", ".", "?", "!", ";", ":", "-")

VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
#: ARPAbet as the CMU Pronouncing Dictionary writes it: vowels carry stress 0/1/2.
PHONEMES = tuple(f"{v}{s}" for v in VOWELS for s in "012") + CONSONANTS

SPECIALS = (PAD, UNK, BOS, WORD_BOUNDARY)
ALL_SYMBOLS = SPECIALS + PUNCTUATION + PHONEMES


class SymbolError(SpeechkitError, ValueError):
    """A symbol or id that the phoneme table does not hold."""


class PhonemeSymbols:
    """Bidirectional map between phoneme symbols and integer ids (``ALL_SYMBOLS`` order).

    ``pad_id`` is 0 (embedding padding), ``unk_id`` 1; ``ids`` raises on unknown symbols unless
    ``allow_unknown`` maps them to ``<unk>``.
    """

    version = SYMBOLS_VERSION

    def __init__(self) -> None:
        self._symbols = ALL_SYMBOLS
        self._ids = {s: i for i, s in enumerate(ALL_SYMBOLS)}

    def __len__(self) -> int:
        return len(self._symbols)

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK]

    @property
    def bos_id(self) -> int:
        return self._ids[BOS]

    @property
    def word_boundary_id(self) -> int:
        return self._ids[WORD_BOUNDARY]

    def is_phoneme(self, symbol_id: int) -> bool:
        return self._symbols[symbol_id] in PHONEMES

    def is_punctuation(self, symbol_id: int) -> bool:
        return self._symbols[symbol_id] in PUNCTUATION

    def ids(self, symbols: Iterable[str], allow_unknown: bool = False) -> list[int]:
        out = []
        for s in symbols:
            i = self._ids.get(s)
            if i is None:
                if not allow_unknown:
                    raise SymbolError(f"unknown phoneme symbol {s!r} (table version {SYMBOLS_VERSION})")
                i = self.unk_id
            out.append(i)
        return out

    def symbols(self, ids: Sequence[int]) -> list[str]:
        try:
            return [self._symbols[int(i)] for i in ids]
        except IndexError as e:
            raise SymbolError(f"phoneme id out of range 0..{len(self) - 1}: {list(ids)}") from e
