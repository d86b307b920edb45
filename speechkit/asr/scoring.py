"""Word and character error rates (Levenshtein distance over words / characters, summed over a set).

Example:
    >>> word_error_rate(["the cat sat"], ["the cat sat down"]), character_error_rate(["abc"], ["abd"])
    (0.3333333333333333, 0.3333333333333333)
"""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Minimum substitutions + insertions + deletions turning ``hypothesis`` into ``reference``."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i]
        for j, hyp in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Summed word edit distance / reference words (normalised text expected on both sides)."""
    errors = sum(edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses, strict=True))
    return errors / max(1, sum(len(r.split()) for r in references))


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    errors = sum(edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True))
    return errors / max(1, sum(len(r) for r in references))
