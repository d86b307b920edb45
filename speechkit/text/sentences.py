"""Split long text into sentences a TTS model can say one at a time.

A sentence ends at ``.``, ``?``, ``!`` or an ellipsis followed by white space and a capital letter,
digit, quote or bracket (or the end of the text). A dot does not end a sentence after a title or
abbreviation (``Dr.``, ``e.g.``, ``vs.``), an initial (``J. R. R. Tolkien``), a dotted acronym
(``U.S.``) or inside a number (``3.5``). A sentence longer than ``max_chars`` is cut further at
``, ; :`` (as few pieces as possible) and, failing that, between words.

Example:
    >>> split_sentences("Dr. Smith paid 3.5 dollars. Was it fair? Yes! e.g. not.")
    ['Dr. Smith paid 3.5 dollars.', 'Was it fair?', 'Yes! e.g. not.']
"""

from __future__ import annotations

import re

from speechkit.text.vocabulary import ABBREVIATIONS, DOTTED, MONTH_ABBREVIATIONS, TITLES

DEFAULT_MAX_CHARS = 300
_NO_BREAK = frozenset(TITLES) | {d.rstrip(".") for d in DOTTED} | {"vs", "no", "approx", "ca", "cf"}
_NO_BREAK |= frozenset(MONTH_ABBREVIATIONS)
_BOUNDARY = re.compile(
    r"([.?!\u2026]+)([\"'\u201d\u2019)\]]*)(\s+)(?=[A-Z0-9\"'\u201c\u2018(\[.?!\u2026]|$)|([.?!\u2026]+)\s*$"
)


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Sentences of ``text`` (white space collapsed), none longer than ``max_chars`` characters.

    Args:
        text: any text.
        max_chars: the longest sentence returned (at least 20).

    Returns:
        the sentences in order; empty when ``text`` is only white space.

    Example:
        >>> split_sentences("Mr. J. Doe lives in the U.S. He left at 5 p.m. Bye.")
        ['Mr. J. Doe lives in the U.S. He left at 5 p.m. Bye.']
    """
    if max_chars < 20:
        raise ValueError(f"max_chars must be at least 20, got {max_chars}")
    text = re.sub(r"\s+", " ", text).strip()
    sentences, start = [], 0
    for m in _BOUNDARY.finditer(text):
        # only the word before the dot matters: look back a little, not over the whole text
        if m.group(1) == "." and _is_abbreviation(text[max(start, m.start() - 40) : m.start()]):
            continue
        end = m.start(3) if m.group(3) else m.end()
        sentences.append(text[start:end].strip())
        start = m.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    out = []
    for sentence in sentences:
        out.extend(_cut(sentence, max_chars))
    return [s for s in out if s]


def _is_abbreviation(before: str) -> bool:
    word = re.search(r"(\S+)$", before)
    if word is None:
        return False
    token = word.group(1).lstrip("\"'([")
    if re.fullmatch(r"[A-Za-z]", token) or re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", token):
        return True  # an initial (J.) or a dotted acronym (U.S., p.m.)
    return token.lower() in _NO_BREAK and token.lower() not in ABBREVIATIONS.keys() - {"vs", "no", "approx"}


def _cut(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    clauses = re.split(r"(?<=[,;:])\s+", sentence)
    if len(clauses) > 1:
        pieces, current = [], ""
        for clause in clauses:
            if current and len(current) + 1 + len(clause) > max_chars:
                pieces.append(current)
                current = clause
            else:
                current = f"{current} {clause}".strip()
        pieces.append(current)
        return [p for piece in pieces for p in _cut_words(piece, max_chars)]
    return _cut_words(sentence, max_chars)


def _cut_words(text: str, max_chars: int) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    pieces, current = [], ""
    for word in text.split(" "):
        while len(word) > max_chars:  # one unbroken run of characters longer than a sentence
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        pieces.append(current)
    return pieces
