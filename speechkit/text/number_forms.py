"""Numbers in context, read aloud: currency, clock times, dates, ordinals, percentages, units, decades,
years, ranges, phone numbers, fractions and plain numbers (the numeric passes of the normaliser).

Each ``read_*`` function rewrites every match in a string and leaves the rest alone; the
normaliser (:mod:`speechkit.text.normalizer`) runs them in the order currency, times, dates,
numbers.

Example:
    >>> read_currency("It cost $3.50, not $1.2 million.")
    'It cost  three dollars fifty cents , not  one point two million dollars .'
    >>> read_numbers("the 22nd of 1,234 in 1984").split()
    ['the', 'twenty', 'second', 'of', 'one', 'thousand', 'two', 'hundred', 'thirty', 'four', 'in', 'nineteen', 'eighty', 'four']
"""

from __future__ import annotations

import re

from speechkit.text import numbers
from speechkit.text.vocabulary import CURRENCIES, MONTH_ABBREVIATIONS, MONTHS, SCALE_WORDS, UNITS, YEAR_CUES

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
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))


def ends_sentence(after: str) -> bool:
    """Whether an abbreviation's dot, followed by ``after``, also ends the sentence."""
    return not after.strip() or re.match(r"\s+[A-Z\"']", after) is not None


def end_dot(m: re.Match) -> str:
    """``"."`` when the match ends in a dot that also ends the sentence, else nothing."""
    return "." if m.group(0).endswith(".") and ends_sentence(m.string[m.end() :]) else ""


# --- money, times, dates ------------------------------------------------------------------------------


def _plain(number: str) -> str:
    return number.replace(",", "")


def read_currency(text: str) -> str:
    """``$5`` five dollars, ``$3.50`` three dollars fifty cents, ``£2``, ``€10``, ``$1.2 million``, ``$20k``, ``$5-10``."""
    symbols = "".join(re.escape(s) for s in CURRENCIES)
    # "$5-10" -> "5 to $10": the amount after the range names the currency once
    text = re.sub(rf"([{symbols}])({_NUMBER})\s?-\s?\1?(?=\d)", r"\2 to \1", text)
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


def read_times(text: str) -> str:
    """``7:30 pm`` seven thirty P M, ``12:05`` twelve oh five, ``9:00`` nine o'clock, ``5:30:15``, ``3-4pm``."""

    def clock(hour: int, minute: int) -> str:
        if minute == 0:
            return f"{numbers.cardinal(hour)} o'clock"
        spoken = numbers.cardinal(minute) if minute >= 10 else f"oh {numbers.cardinal(minute)}"
        return f"{numbers.cardinal(hour)} {spoken}"

    def read(m: re.Match) -> str:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour > 24 or minute > 59 or second > 59:
            return m.group(0)
        seconds = f" and {numbers.cardinal(second)} seconds" if m.group(3) else ""
        meridiem = m.group(4)
        if meridiem:
            said = numbers.cardinal(hour) if minute == 0 and not seconds else clock(hour, minute)
            return f" {said}{seconds} {meridiem[0].upper()} M{end_dot(m)} "
        return f" {clock(hour, minute)}{seconds} "

    text = re.sub(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([ap])\.?m\b\.?)?", read, text, flags=re.I)
    text = re.sub(
        r"\b(\d{1,2})\s?-\s?(\d{1,2})\s*([ap])\.?m\b\.?",
        lambda m: (
            f" {numbers.cardinal(int(m.group(1)))} to {numbers.cardinal(int(m.group(2)))} "
            f"{m.group(3).upper()} M{end_dot(m)} "
        ),
        text,
        flags=re.I,
    )
    return re.sub(
        r"\b(\d{1,2})\s*([ap])\.?m\b\.?",
        lambda m: f" {numbers.cardinal(int(m.group(1)))} {m.group(2).upper()} M{end_dot(m)} ",
        text,
        flags=re.I,
    )


def _date(month: int, day: int, year: str | None) -> str:
    spoken = f"{MONTHS[month]} {numbers.ordinal(day)}"
    return f" {spoken} {numbers.year(int(year))} " if year else f" {spoken} "


def read_dates(text: str) -> str:
    """``March 3, 2021``, ``3/14/2015`` (month first), ``2021-03-03``, ``4 July 1776``, ``the 4th of July``."""

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
        year = f"{m.group(3)}{numbers.year(int(m.group(4)))}" if m.group(4) else ""
        the = "" if re.search(r"\bthe\s+$", m.string[: m.start()], flags=re.I) else "the "
        return f" {the}{numbers.ordinal(day)} of {MONTHS[month]}{year} "

    text = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", iso, text)
    text = re.sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b", slashed, text)
    month = rf"\b({_MONTH_NAMES})\.?"
    text = re.sub(
        rf"{month}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:(,?\s*)(\d{{4}})\b)?", month_first, text, flags=re.I
    )
    return re.sub(
        rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{month}(?:(,?\s+)(\d{{4}})\b)?",
        day_first,
        text,
        flags=re.I,
    )


def _month_number(name: str) -> int:
    name = name.lower().rstrip(".")
    return MONTHS.index(MONTH_ABBREVIATIONS.get(name, name))


# --- numbers ------------------------------------------------------------------------------------------


def read_numbers(text: str) -> str:
    """Ordinals, versions, phone numbers, ranges, percentages, units, decades, years, fractions and the
    remaining numbers (``-1,234.5``), in that order."""
    text = re.sub(r"(?<=\d)\s*[*x]\s*(?=\d)", " times ", text)
    text = re.sub(
        r"\b(\d+)(st|nd|rd|th)\b-?", lambda m: f" {numbers.ordinal(int(m.group(1)))} ", text, flags=re.I
    )
    text = re.sub(
        r"\b\d+(?:\.\d+){2,}\b",
        lambda m: " " + " point ".join(map(numbers.integer, m.group(0).split("."))) + " ",
        text,
    )
    text = re.sub(r"\b(?:\d{3}-)?\d{3}-\d{4}\b", _phone, text)
    text = re.sub(r"(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])", " ", text)  # COVID-19, 3rd-place
    text = re.sub(r"(?<![\d.,-])\b(\d{1,4})\s?-\s?(\d{1,4})\b(?![.,]\d)", _range, text)
    text = re.sub(rf"(?<![\w.])(-?)({_NUMBER})\s?%", lambda m: f" {_signed(m)} percent ", text)
    text = re.sub(rf"(?<![\w.])(-?)({_NUMBER})\s?({_UNIT_NAMES})(?![\w/])", _unit, text)
    text = re.sub(r"\b(1\d|20)(\d)0'?s\b", _decade, text)
    text = re.sub(
        r"(?<![\w'])'?([2-9])0'?s\b",
        lambda m: " " + _plural(numbers.cardinal(int(m.group(1)) * 10)) + " ",
        text,
    )
    cues = "|".join(YEAR_CUES)
    text = re.sub(
        rf"\b({cues})\s+(\d{{4}})\b(?![.,]\d)",
        lambda m: f"{m.group(1)} {numbers.year(int(m.group(2)))}",
        text,
        flags=re.I,
    )
    # a round 1100-1900 is "fifteen hundred"; another 11xx-19xx is a year when it opens a sentence
    text = re.sub(
        r"(?<![\d,.])\b(1[1-9])00\b(?![.,]\d)",
        lambda m: f" {numbers.cardinal(int(m.group(1)))} hundred ",
        text,
    )
    text = re.sub(
        r"(?:^|(?<=[.!?]\s))\s*(1[1-9]\d\d)\b(?![.,]\d)", lambda m: f" {numbers.year(int(m.group(1)))} ", text
    )
    text = re.sub(r"#\s?(\d)", r" number \1", text)
    text = re.sub(r"(?<![\d/])(\d{1,3})/(\d{1,2})(?![\d/])", _fraction, text)
    text = re.sub(r"(\d)/(\d)", r"\1 slash \2", text)
    text = re.sub(r"(?<=\w)\^(?=-?\d)", " to the power of ", text)
    text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)  # MP3 -> MP 3, 3D -> 3 D
    return re.sub(rf"(?:(?<=[\s(\[\"])|^)(-)?({_NUMBER})|({_NUMBER})", _number, text)


def _phone(m: re.Match) -> str:
    return " " + ", ".join(numbers.digits(group) for group in m.group(0).split("-")) + ", "


def _fraction(m: re.Match) -> str:
    numerator, denominator = int(m.group(1)), int(m.group(2))
    if numerator >= denominator and (numerator > 10 or denominator > 10):  # 24/7, 50/50
        return f" {numbers.cardinal(numerator)} {numbers.cardinal(denominator)} "
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
    if tens == 0:  # the 1900s, the 2000s
        return " two thousands " if century == "20" else f" {numbers.cardinal(int(century))} hundreds "
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
    return f" {numbers.integer(low)} to {high}"  # the later passes read "10 km", "10%"


def _number(m: re.Match) -> str:
    if m.group(3) is not None:
        return f" {numbers.decimal(_plain(m.group(3)))} "
    return f" {numbers.decimal(('-' if m.group(1) else '') + _plain(m.group(2)))} "
