"""English text normalisation: everything a reader says aloud, written out as words.

:func:`normalize_text` turns raw text into lower-case words, single capital letters (letters to be
spelled by name: ``FBI`` -> ``F B I``, ``7 pm`` -> ``seven P M``) and the seven punctuation marks
the phoneme table keeps (``, . ? ! ; : -``). It reads, in this order: Unicode (folded to ASCII by
:mod:`speechkit.text.unicode_fold`), dotted abbreviations (``e.g.``, ``U.S.``), titles and
abbreviations (``Dr.``, ``etc.``), currency (``$3.50``, ``$1.2 million``), times (``7:30 pm``), dates
(``March 3, 2021``, ``3/14/2015``, ``2021-03-03``), ordinals (``22nd``), percentages, numbers with
units (``5 km``), decades (``1990s``), years after a cue word (``in 1984``), number ranges (``5-10``),
remaining numbers (``-1,234.5``), symbols (``&``, ``+``, ``@``, ``#``), roman numerals where safe
(``Chapter IV``, ``Henry VIII``) and all-caps acronyms that CMUdict does not hold (spelled; a
spelled capital ``I`` is written ``i``, which reads the same).

Marks are mapped onto the kept seven: brackets and ``|`` become ``,``; an ellipsis becomes ``,``
(``.`` at the very end); spaced hyphens and dashes become ``,``; a run of marks collapses to one;
quotes and ``* _ `` are removed. Characters that cannot be mapped at all are dropped, logged and
listed in :attr:`NormalizedText.dropped` — never silently.

Example:
    >>> normalize_text("Dr. Smith paid $3.50 on March 3, 2021 at 7:30 pm.").text
    'doctor smith paid three dollars fifty cents on march third, twenty twenty one at seven thirty P M.'
    >>> normalize_text("The QXZ & co. — 22nd of 1,234 cats!").text
    'the Q X Z and company, twenty second of one thousand two hundred thirty four cats!'
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from speechkit.text import numbers
from speechkit.text.number_forms import end_dot, read_currency, read_dates, read_numbers, read_times
from speechkit.text.unicode_fold import fold_unicode
from speechkit.text.vocabulary import (
    ABBREVIATIONS,
    DOTTED,
    PAUSE_MARKS,
    REGNAL_NAMES,
    ROMAN_COUNTERS,
    SILENT_MARKS,
    SYMBOL_WORDS,
    TITLES,
)

logger = logging.getLogger(__name__)

KEPT_MARKS = ",.?!;:-"
_KEPT_APOSTROPHE = "\x00"  # marks an apostrophe CMUdict spells, while quotes are removed


@dataclass(frozen=True)
class NormalizedText:
    """The spoken form of a text.

    Args:
        text: lower-case words, single capital letters to spell, and the marks ``, . ? ! ; : -``.
        dropped: characters that could not be read (each once, in order of first appearance).
    """

    text: str
    dropped: list[str] = field(default_factory=list)


def normalize_text(text: str) -> NormalizedText:
    """Write ``text`` out as the words a reader would say (see the module docstring).

    Args:
        text: raw English text; any Unicode.

    Returns:
        a :class:`NormalizedText`; its text is empty when nothing in ``text`` can be said.

    Example:
        >>> normalize_text("Chapter IV: Henry VIII, in 1984.").text
        'chapter four: henry the eighth, in nineteen eighty four.'
    """
    folded = fold_unicode(text)
    out = folded.text
    for rewrite in _REWRITES:
        out = rewrite(out)
    out, dropped_ascii = _map_marks(out)
    out = _case_words(out)
    out = _tidy(out)
    dropped = list(folded.dropped)
    for char in dropped_ascii:
        if char not in dropped:
            dropped.append(char)
    dropped.sort(key=text.find)
    if dropped_ascii:
        logger.warning(
            "dropped characters the text frontend cannot read: %s", " ".join(map(repr, dropped_ascii))
        )
    return NormalizedText(out, dropped)


# --- abbreviations ----------------------------------------------------------------------------------


def _dotted(text: str) -> str:
    for short, long in DOTTED.items():
        text = re.sub(rf"(?<![\w.]){re.escape(short)}(?=[\s,;:!?)\"']|$)", f" {long} ", text, flags=re.I)
    # a.m. / p.m. first, then dotted acronyms such as U.S.A. -> spelled letters
    text = re.sub(
        r"\b([ap])\.m\.(?=\s|$|[,;:!?])", lambda m: f" {m.group(1).upper()} M{end_dot(m)} ", text, flags=re.I
    )
    text = re.sub(
        r"\b((?:[A-Za-z]\.){2,})", lambda m: " " + " ".join(m.group(1).upper().split(".")) + " ", text
    )
    return text


def _abbreviations(text: str) -> str:
    def title(m: re.Match) -> str:
        return f"{TITLES[m.group(1).lower()]} "

    def street(m: re.Match) -> str:
        return f"{m.group(1)} street{m.group(2)}"

    # "Main St." (after a capitalised word, not before one) is a street; "St. Louis" a saint.
    text = re.sub(r"\b([A-Z][a-z]+) St\.(\s+[a-z,;:!?]|\s*$)", street, text)
    text = re.sub(r"\b(" + "|".join(TITLES) + r")\.(?=\s+[A-Z])", title, text, flags=re.I)
    # a title's dot before anything but a name: "Main St." is a street, "King Dr." a drive
    text = re.sub(r"\b(St|Dr)\.", lambda m: {"St": "street", "Dr": "drive"}[m.group(1)] + end_dot(m), text)
    text = re.sub(r"\b(" + "|".join(TITLES) + r")\.(?=\s)", title, text, flags=re.I)

    def abbreviation(m: re.Match) -> str:
        word = ABBREVIATIONS[m.group(1).lower()]
        return word + end_dot(m)

    pattern = r"\b(" + "|".join(ABBREVIATIONS) + r")\."
    # "No. 5" is "number five"; "no." before anything else is the word "no" ending a sentence.
    return re.sub(pattern, lambda m: _keep_no(m, abbreviation), text, flags=re.I)


def _keep_no(m: re.Match, expand) -> str:
    if m.group(1).lower() in ("no", "nos") and not re.match(r"\s*#?\d", m.string[m.end() :]):
        return m.group(0)
    return expand(m)


# --- words --------------------------------------------------------------------------------------------


def _symbols(text: str) -> str:
    text = re.sub(r"\bhttps?://", " ", text, flags=re.I)
    text = re.sub(r"\bwww\.", " W W W dot ", text, flags=re.I)
    text = re.sub(
        r"\b([A-Z]{1,3})&([A-Z]{1,3})\b",
        lambda m: f" {' '.join(m.group(1))} and {' '.join(m.group(2))} ",
        text,
    )
    text = re.sub(r"\b([A-G])#(?!\w)", r"\1 sharp", text)
    text = re.sub(r"(\w)@(\w)", r"\1 at \2", text)
    text = re.sub(r"\b([a-z]+)\.(com|org|net|edu|gov|io)\b", r"\1 dot \2", text, flags=re.I)
    text = re.sub(r"#(?=[A-Za-z])", " ", text)  # a hashtag: the word alone
    for symbol, words in SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    return text


def _roman(text: str) -> str:
    def read(m: re.Match) -> str:
        word, numeral = m.group(1), m.group(2)
        value = numbers.roman_to_int(numeral)
        if value is None:
            return m.group(0)
        if word.lower() in ROMAN_COUNTERS:
            return f"{word} {numbers.cardinal(value)}"
        if word.lower() in REGNAL_NAMES and word[0].isupper():
            return f"{word} the {numbers.ordinal(value)}"
        return m.group(0)

    return re.sub(r"\b([A-Za-z]+)\s+([IVXLCDM]+)\b(?!')", read, text)


def _acronyms(text: str) -> str:
    from speechkit.text.lexicon import load_cmudict

    lexicon = load_cmudict()

    def read(m: re.Match) -> str:
        word, plural = m.group(1), m.group(2)
        if word.lower() in lexicon and not plural:
            return word
        if plural and (word + "s").lower() in lexicon:
            return word + "s"
        if plural and word.lower() in lexicon:  # GOTOs: the plural of a dictionary word
            return word.lower() + "'s"
        if _pronounceable_acronym(word):
            return word.lower() + ("'s" if plural else "")
        spelled = " ".join(word)
        return spelled + ("'s" if plural else "")

    text = re.sub(r"\b([B-HJ-NP-TV-Z])s\b", r"\1's", text)  # "more Qs": plural of a letter
    text = re.sub(r"\bWW(I{1,2})\b", lambda m: f"world war {numbers.cardinal(len(m.group(1)))}", text)
    return re.sub(r"\b([A-Z]{2,})(s)?\b", read, text)


def _pronounceable_acronym(word: str) -> bool:
    """Whether an all-caps word CMUdict lacks is read as a word (``COVID``) rather than spelled.

    Only five letters or more that strictly alternate single consonants and single vowels: most
    pronounceable acronyms (NATO, UNICEF, FIFA) are in CMUdict anyway, and spelling is the safe
    reading of the rest (ACLU, GDPR, NAACP).
    """
    return len(word) >= 5 and re.fullmatch(r"[^AEIOU]?(?:[AEIOU][^AEIOU])+[AEIOU]?", word) is not None


_REWRITES = (
    _dotted,
    _abbreviations,
    read_currency,
    read_times,
    read_dates,
    read_numbers,
    _symbols,
    _roman,
    _acronyms,
)


# --- marks and case -----------------------------------------------------------------------------------


def _map_marks(text: str) -> tuple[str, list[str]]:
    text = re.sub(r"\.{2,}(?=[\s\"')\]]*$)", ".", text)  # a trailing ellipsis ends the sentence
    text = re.sub(r"[)\]}]+(?=[\s\"'.?!]*$)", " ", text)  # a closing bracket at the end is no pause
    text = re.sub(r"\.{2,}", " , ", text)
    text = re.sub(r"(?<![A-Za-z])-+|-+(?![A-Za-z])|-{2,}", " , ", text)  # a dash that is not a hyphen
    text = re.sub(r"'*[A-Za-z]+(?:'+[A-Za-z]+)*'*", _edge_apostrophes, text)
    text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", " ", text)  # quotes, not apostrophes
    text = text.replace(_KEPT_APOSTROPHE, "'")
    out, dropped = [], []
    for char in text:
        if char.isalpha() or char in KEPT_MARKS or char in " '":
            out.append(char if char.isascii() else " ")
        elif char in PAUSE_MARKS:
            out.append(" , ")
        elif char in SILENT_MARKS:
            out.append(" ")
        else:
            out.append(" ")
            if char not in dropped:
                dropped.append(char)
    return "".join(out), dropped


def _edge_apostrophes(m: re.Match) -> str:
    """Keep a leading or trailing apostrophe only where CMUdict spells the word so ('em, fathers')."""
    from speechkit.text.lexicon import load_cmudict

    word = m.group(0)
    if word.startswith("'") or word.endswith("'"):
        trimmed = re.sub(r"^'+|'+$", "'", word)
        if trimmed.lower() in load_cmudict():
            return trimmed.replace("'", _KEPT_APOSTROPHE)
        for candidate in (trimmed.lstrip("'"), trimmed.rstrip("'")):
            if candidate.lower() in load_cmudict():
                return f" {candidate} "
        return f" {word.strip(chr(39))} "
    return word


def _case_words(text: str) -> str:
    """Lower-case every word except single capital letters that are spelled (not "I", not the article)."""

    def read(m: re.Match) -> str:
        word = m.group(0)
        if len(word) == 1 and word.isupper():
            if word == "I":
                return "i"
            after = text[m.end() :]
            if word == "A" and re.match(r"\s+[A-Za-z]{2,}", after) and not re.match(r"\s+[A-Z]\b", after):
                return "a"
            return word
        if re.fullmatch(r"[A-Z]'s", word):
            return word
        return word.lower()

    return re.sub(r"'?[A-Za-z]+(?:'[A-Za-z]+)*'?", read, text)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+(?=[,.?!;:])", "", text)  # marks attach to the word before them
    text = re.sub(r"\s*-\s*", "-", text)
    # a run of marks collapses to one: the first sentence-final mark if any, else the first mark
    text = re.sub(r"[,.?!;:-](?:\s*[,.?!;:-])+", _collapse, text)
    text = re.sub(r"^[\s,.?!;:-]+", "", text)  # nothing to attach leading marks to
    return re.sub(r"([,.?!;:])(?=[A-Za-z'])", r"\1 ", text).strip()


def _collapse(m: re.Match) -> str:
    marks = [c for c in m.group(0) if c in KEPT_MARKS]
    final = [c for c in marks if c in ".?!"]
    return final[0] if final else marks[0]
