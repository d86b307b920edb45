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
from collections.abc import Iterable

VOCAB_VERSION = 1
NORMALIZER_VERSION = 2  # 1: a local digits-to-words fallback; 2: speechkit.text's normaliser

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
_SPECIALS = (BLANK, UNK, SOS_EOS)
_CHARS = (" ", "'", *"abcdefghijklmnopqrstuvwxyz")

def normalize_text(text: str) -> str:
    """Corpus text -> the spoken-form string the vocabulary spells (lowercase a-z, ', space).

    The shared normaliser of :mod:`speechkit.text` (the one the TTS frontend uses, so ASR targets
    and TTS inputs agree) writes numbers, dates, currency, abbreviations and symbols out as words;
    here the result is lower-cased, its punctuation and hyphens become spaces, and apostrophes
    survive only inside words.

    Example:
        >>> normalize_text("It's 5:30 -- 100% sure, Mr. O'Neil!")
        "it's five thirty one hundred percent sure mister o'neil"
    """
    from speechkit.text.normalizer import normalize_text as spoken_form  # imported on use: loads tables

    spoken = spoken_form(text).text.lower()
    spoken = re.sub(r"[^a-z' ]+", " ", spoken)
    spoken = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", spoken)  # quotes, not in-word apostrophes
    return " ".join(spoken.split())


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
