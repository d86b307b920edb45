"""English text normalisation: everything a reader says aloud, written out as words.

:func:`normalize_text` turns raw text into lower-case words, single capital letters (letters to be
spelled by name: ``FBI`` -> ``F B I``, ``7 pm`` -> ``seven P M``) and the seven punctuation marks
the phoneme table keeps (``, . ? ! ; : -``). It reads, in this order: Unicode (folded to ASCII by
:mod:`speechkit.text.unicode_fold`), dotted abbreviations (``e.g.``, ``U.S.``), titles and
abbreviations (``Dr.``, ``etc.``), currency (``$3.50``, ``$1.2 million``), times (``7:30 pm``), dates
(``March 3, 2021``, ``3/14/2015``, ``2021-03-03``), ordinals (``22nd``), percentages, numbers with
units (``5 km``), decades (``1990s``), years after a cue word (``in 1984``), number ranges (``5-10``),
remaining numbers (``-1,234.5``), symbols (``&``, ``+``, ``@``, ``#``), roman numerals where safe
(``Chapter IV``, ``Henry VIII``) and all-caps acronyms that CMUdict does not hold.

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
from speechkit.text.unicode_fold import fold_unicode
from speechkit.text.vocabulary import (
    ABBREVIATIONS,
    CURRENCIES,
    DOTTED,
    MONTH_ABBREVIATIONS,
    MONTHS,
    PAUSE_MARKS,
    REGNAL_NAMES,
    ROMAN_COUNTERS,
    SCALE_WORDS,
    SILENT_MARKS,
    SYMBOL_WORDS,
    TITLES,
    UNITS,
    YEAR_CUES,
)

logger = logging.getLogger(__name__)

KEPT_MARKS = ",.?!;:-"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_MONTH_NAMES = "|".join(sorted(set(MONTHS[1:]) | set(MONTH_ABBREVIATIONS), key=len, reverse=True))
_SCALE_SUFFIXES = {
    "k": "thousand",
    "K": "thousand",
    "m": "million",
    "M": "million",
    "bn": "billion",
    "B": "billion",
}
_FRACTIONS = {2: ("half", "halves"), 4: ("quarter", "quarters")}
_KEPT_APOSTROPHE = "\x00"  # marks an apostrophe CMUdict spells, while quotes are removed
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))


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
        r"\b([ap])\.m\.(?=\s|$|[,;:!?])", lambda m: f" {m.group(1).upper()} M{_end_dot(m)} ", text, flags=re.I
    )
    text = re.sub(
        r"\b((?:[A-Za-z]\.){2,})", lambda m: " " + " ".join(m.group(1).upper().split(".")) + " ", text
    )
    return text


def _ends_sentence(after: str) -> bool:
    """Whether an abbreviation's dot, followed by ``after``, also ends the sentence."""
    return not after.strip() or re.match(r"\s+[A-Z\"']", after) is not None


def _end_dot(m: re.Match) -> str:
    """``"."`` when the match ends in a dot that also ends the sentence, else nothing."""
    return "." if m.group(0).endswith(".") and _ends_sentence(m.string[m.end() :]) else ""


def _abbreviations(text: str) -> str:
    def title(m: re.Match) -> str:
        return f"{TITLES[m.group(1).lower()]} "

    def street(m: re.Match) -> str:
        return f"{m.group(1)} street{m.group(2)}"

    # "Main St." (after a capitalised word, not before one) is a street; "St. Louis" a saint.
    text = re.sub(r"\b([A-Z][a-z]+) St\.(\s+[a-z,;:!?]|\s*$)", street, text)
    text = re.sub(r"\b(" + "|".join(TITLES) + r")\.(?=\s+[A-Z])", title, text, flags=re.I)
    # a title's dot before anything but a name: "Main St." is a street, "King Dr." a drive
    text = re.sub(r"\b(St|Dr)\.", lambda m: {"St": "street", "Dr": "drive"}[m.group(1)] + _end_dot(m), text)
    text = re.sub(r"\b(" + "|".join(TITLES) + r")\.(?=\s)", title, text, flags=re.I)

    def abbreviation(m: re.Match) -> str:
        word = ABBREVIATIONS[m.group(1).lower()]
        return word + _end_dot(m)

    pattern = r"\b(" + "|".join(ABBREVIATIONS) + r")\."
    # "No. 5" is "number five"; "no." before anything else is the word "no" ending a sentence.
    return re.sub(pattern, lambda m: _keep_no(m, abbreviation), text, flags=re.I)


def _keep_no(m: re.Match, expand) -> str:
    if m.group(1).lower() in ("no", "nos") and not re.match(r"\s*#?\d", m.string[m.end() :]):
        return m.group(0)
    return expand(m)


# --- money, times, dates ------------------------------------------------------------------------------


def _plain(number: str) -> str:
    return number.replace(",", "")


def _currency(text: str) -> str:
    symbols = "".join(re.escape(s) for s in CURRENCIES)
    scales = "|".join(SCALE_WORDS + tuple(_SCALE_SUFFIXES))
    pattern = rf"(-)?([{symbols}])\s?({_NUMBER})(?:\s?({scales})\b)?"

    def read(m: re.Match) -> str:
        sign = "minus " if m.group(1) else ""
        one, many, cent, cents = CURRENCIES[m.group(2)]
        amount, scale = _plain(m.group(3)), _SCALE_SUFFIXES.get(m.group(4), m.group(4))
        if scale:
            return f" {sign}{numbers.decimal(amount)} {scale} {many} "
        whole, _, fraction = amount.partition(".")
        whole_value = int(whole or "0")
        if len(fraction) != 2:
            unit = one if amount == "1" else many
            return f" {sign}{numbers.decimal(amount)} {unit} "
        minor = int(fraction)
        parts = []
        if whole_value or not minor:
            parts.append(f"{numbers.integer(whole or '0')} {one if whole_value == 1 else many}")
        if minor:
            parts.append(f"{numbers.cardinal(minor)} {cent if minor == 1 else cents}")
        return f" {sign}{' '.join(parts)} "

    return re.sub(pattern, read, text)


def _times(text: str) -> str:
    def clock(hour: int, minute: int) -> str:
        if minute == 0:
            return f"{numbers.cardinal(hour)} o'clock"
        spoken = numbers.cardinal(minute) if minute >= 10 else f"oh {numbers.cardinal(minute)}"
        return f"{numbers.cardinal(hour)} {spoken}"

    def read(m: re.Match) -> str:
        hour, minute = int(m.group(1)), int(m.group(2))
        if hour > 24 or minute > 59:
            return m.group(0)
        meridiem = m.group(3)
        if meridiem:
            said = numbers.cardinal(hour) if minute == 0 else clock(hour, minute)
            return f" {said} {meridiem[0].upper()} M{_end_dot(m)} "
        return f" {clock(hour, minute)} "

    text = re.sub(r"\b(\d{1,2}):(\d{2})(?:\s*([ap])\.?m\b\.?)?", read, text, flags=re.I)
    return re.sub(
        r"\b(\d{1,2})\s*([ap])\.?m\b\.?",
        lambda m: f" {numbers.cardinal(int(m.group(1)))} {m.group(2).upper()} M{_end_dot(m)} ",
        text,
        flags=re.I,
    )


def _date(month: int, day: int, year: str | None) -> str:
    spoken = f"{MONTHS[month]} {numbers.ordinal(day)}"
    return f" {spoken} {numbers.year(int(year))} " if year else f" {spoken} "


def _dates(text: str) -> str:
    def iso(m: re.Match) -> str:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        return _date(mo, d, str(y)) if 1 <= mo <= 12 and 1 <= d <= 31 else m.group(0)

    def slashed(m: re.Match) -> str:
        mo, d, y = int(m.group(1)), int(m.group(2)), m.group(3)
        if len(y) == 2:
            y = str(2000 + int(y) if int(y) < 50 else 1900 + int(y))
        return _date(mo, d, y) if 1 <= mo <= 12 and 1 <= d <= 31 else m.group(0)

    def month_first(m: re.Match) -> str:
        month = _month_number(m.group(1))
        day = int(m.group(2))
        if not 1 <= day <= 31:
            return m.group(0)
        year = f"{m.group(3)} {numbers.year(int(m.group(4)))}" if m.group(4) else ""
        return f" {MONTHS[month]} {numbers.ordinal(day)}{year} "

    def day_first(m: re.Match) -> str:
        day, month = int(m.group(1)), _month_number(m.group(2))
        if not 1 <= day <= 31:
            return m.group(0)
        year = f" {numbers.year(int(m.group(3)))}" if m.group(3) else ""
        return f" the {numbers.ordinal(day)} of {MONTHS[month]}{year} "

    text = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", iso, text)
    text = re.sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b", slashed, text)
    month = rf"\b({_MONTH_NAMES})\.?"
    text = re.sub(
        rf"{month}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:(,?\s*)(\d{{4}})\b)?", month_first, text, flags=re.I
    )
    return re.sub(
        rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+{month}(?:,?\s+(\d{{4}})\b)?", day_first, text, flags=re.I
    )


def _month_number(name: str) -> int:
    name = name.lower().rstrip(".")
    return MONTHS.index(MONTH_ABBREVIATIONS.get(name, name))


# --- numbers ------------------------------------------------------------------------------------------


def _numbers(text: str) -> str:
    text = re.sub(
        r"\b(\d+)(st|nd|rd|th)\b-?", lambda m: f" {numbers.ordinal(int(m.group(1)))} ", text, flags=re.I
    )
    text = re.sub(rf"(?<![\w.])(-?)({_NUMBER})\s?%", lambda m: f" {_signed(m)} percent ", text)
    text = re.sub(rf"(?<![\w.])(-?)({_NUMBER})\s?({_UNIT_NAMES})(?![\w/])", _unit, text)
    text = re.sub(r"\b(1\d|20)(\d)0s\b", _decade, text)
    text = re.sub(
        r"(?<!\w)'(\d)0s\b", lambda m: " " + _plural(numbers.cardinal(int(m.group(1)) * 10)) + " ", text
    )
    cues = "|".join(YEAR_CUES)
    text = re.sub(
        rf"\b({cues})\s+(\d{{4}})\b(?![.,]\d)",
        lambda m: f"{m.group(1)} {numbers.year(int(m.group(2)))}",
        text,
        flags=re.I,
    )
    text = re.sub(r"#\s?(\d)", r" number \1", text)
    text = re.sub(
        r"\b\d+(?:\.\d+){2,}\b",
        lambda m: " " + " point ".join(map(numbers.integer, m.group(0).split("."))) + " ",
        text,
    )
    text = re.sub(r"\b(?:\d{3}-)?\d{3}-\d{4}\b", _phone, text)
    text = re.sub(r"(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])", " ", text)  # COVID-19, 3rd-place
    text = re.sub(r"\b(\d{1,4})\s?-\s?(\d{1,4})\b", _range, text)
    text = re.sub(r"(?<![\d/])(\d{1,3})/(\d{1,2})(?![\d/])", _fraction, text)
    text = re.sub(r"(\d)/(\d)", r"\1 slash \2", text)
    text = re.sub(r"(?<=\w)\^(?=-?\d)", " to the power of ", text)
    text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)  # MP3 -> MP 3, 3D -> 3 D
    return re.sub(rf"(?:(?<=[\s(\[\"])|^)(-)?({_NUMBER})|({_NUMBER})", _number, text)


def _phone(m: re.Match) -> str:
    return " " + ", ".join(numbers.digits(group) for group in m.group(0).split("-")) + ", "


def _fraction(m: re.Match) -> str:
    numerator, denominator = int(m.group(1)), int(m.group(2))
    if not 2 <= denominator <= 10 or numerator == 0:
        return f" {numbers.cardinal(numerator)} over {numbers.cardinal(denominator)} "
    one, many = _FRACTIONS.get(
        denominator, (numbers.ordinal(denominator), numbers.ordinal(denominator) + "s")
    )
    return f" {numbers.cardinal(numerator)} {one if numerator == 1 else many} "


def _signed(m: re.Match) -> str:
    return numbers.decimal(("-" if m.group(1) else "") + _plain(m.group(2)))


def _unit(m: re.Match) -> str:
    one, many = UNITS[m.group(3)]
    amount = _plain(m.group(2))
    return f" {_signed(m)} {one if amount == '1' and not m.group(1) else many} "


def _decade(m: re.Match) -> str:
    century, tens = m.group(1), int(m.group(2))
    if century == "20" and tens == 0:
        return " two thousands "
    decade = numbers.cardinal(tens * 10)
    return f" {numbers.cardinal(int(century))} {_plural(decade)} "


def _plural(words: str) -> str:
    last = words.split()[-1]
    plural = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " ".join(words.split()[:-1] + [plural])


def _range(m: re.Match) -> str:
    low, high = m.group(1), m.group(2)
    if len(low) == 4 and len(high) == 4:
        return f" {numbers.year(int(low))} to {numbers.year(int(high))} "
    return f" {numbers.integer(low)} to {numbers.integer(high)} "


def _number(m: re.Match) -> str:
    if m.group(3) is not None:
        return f" {numbers.decimal(_plain(m.group(3)))} "
    return f" {numbers.decimal(('-' if m.group(1) else '') + _plain(m.group(2)))} "


# --- words --------------------------------------------------------------------------------------------


def _symbols(text: str) -> str:
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
        if _pronounceable_acronym(word):
            return word.lower() + ("'s" if plural else "")
        spelled = " ".join(word)
        return spelled + ("'s" if plural else "")

    text = re.sub(r"\bWW(I{1,2})\b", lambda m: f"world war {numbers.cardinal(len(m.group(1)))}", text)
    return re.sub(r"\b([A-Z]{2,})(s)?\b", read, text)


def _pronounceable_acronym(word: str) -> bool:
    """Whether an all-caps word CMUdict lacks reads as a word (COVID, UNICEF) rather than letters (HTML).

    Four letters or more, at least one vowel, and no run of three consonants or of three vowels.
    """
    return (
        len(word) >= 4
        and re.fullmatch(r"[^AEIOU]{0,2}(?:[AEIOU]{1,2}[^AEIOU]{1,2})*[AEIOU]{0,2}", word) is not None
    )


_REWRITES = (_dotted, _abbreviations, _currency, _times, _dates, _numbers, _symbols, _roman, _acronyms)


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
