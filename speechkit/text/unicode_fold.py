"""Fold any Unicode text onto the ASCII characters the normaliser reads, reporting what it drops.

Typographic marks are mapped (curly quotes to straight ones, dashes, the ellipsis, non-breaking and
other spaces, the minus sign), ligatures and accented letters are decomposed with NFKD and their
accents removed (``café`` -> ``cafe``), a few letters NFKD leaves alone are spelled out (``ß`` ->
``ss``, ``ø`` -> ``o``), Greek letters become their names (``π`` -> ``pi``) and decimal digits of
any script become ASCII digits (``٣`` -> ``3``). Characters left outside printable ASCII (``漢``,
emoji, ``©``) are dropped, logged once per call at WARNING level and returned, so a caller can tell
that something was not read.

Example:
    >>> folded = fold_unicode("“Café” — naïve… 漢")
    >>> folded.text, folded.dropped
    ('"Cafe"  ,  naive... ', ['漢'])
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

_CHAR_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2039": '"', "\u203a": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2212": "-",
    "\u2014": " , ", "\u2015": " , ",
    "\u2026": "...", "\u2044": "/", "\u00d7": " times ", "\u00f7": " divided by ",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u00f8": "o", "\u00d8": "O", "\u0153": "oe",
    "\u0152": "OE", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u00fe": "th",
    "\u00de": "Th", "\u00f0": "d", "\u00d0": "D", "\u0131": "i",
    "\u00b0": "\u00b0", "\u20ac": "\u20ac", "\u00a3": "\u00a3", "\u00a5": "\u00a5", "\u00a2": "\u00a2",
}  # fmt: skip
#: Non-ASCII characters the normaliser itself reads (degree sign and currency symbols).
KEPT = frozenset("\u00b0\u20ac\u00a3\u00a5\u00a2")


@dataclass(frozen=True)
class FoldedText:
    """Text folded to ASCII (plus :data:`KEPT`) and the characters that could not be mapped.

    Args:
        text: the folded text.
        dropped: the unmappable characters, each once, in order of first appearance.
    """

    text: str
    dropped: list[str] = field(default_factory=list)


def fold_unicode(text: str) -> FoldedText:
    """Map ``text`` onto printable ASCII (see the module docstring).

    Args:
        text: any string.

    Returns:
        a :class:`FoldedText`; whitespace of every kind (tabs, newlines, NBSP) becomes a space.
    """
    out: list[str] = []
    dropped: list[str] = []
    for char in text:
        mapped = _CHAR_MAP.get(char)
        if mapped is not None:
            out.append(mapped)
            continue
        if char.isspace():
            out.append(" ")
            continue
        if unicodedata.category(char) == "Nd" and not char.isascii():  # Arabic-Indic, Devanagari ... digits
            out.append(str(unicodedata.decimal(char)))
            continue
        greek = re.match(r"GREEK (?:SMALL|CAPITAL) LETTER (?:FINAL )?([A-Z]+)$", unicodedata.name(char, ""))
        if greek:  # a Greek letter is read by its name: alpha, beta, pi
            out.append(f" {greek.group(1).lower()} ")
            continue
        for piece in unicodedata.normalize("NFKD", char):
            piece = _CHAR_MAP.get(piece, piece)
            if unicodedata.combining(piece):
                continue  # an accent split off by NFKD
            if (" " <= piece <= "~") or piece in KEPT:
                out.append(piece)
            elif piece.isspace():
                out.append(" ")
            elif char not in dropped:
                dropped.append(char)
    if dropped:
        logger.warning("dropped characters the text frontend cannot read: %s", " ".join(map(repr, dropped)))
    return FoldedText("".join(out), dropped)
