"""Numbers as English words: cardinals, ordinals, years, decimals, digit strings and roman numerals.

Words are joined by single spaces and never by hyphens (``twenty four``, not ``twenty-four``):
the text frontend reads a hyphen as a pause mark.

Example:
    >>> cardinal(1234567)
    'one million two hundred thirty four thousand five hundred sixty seven'
    >>> ordinal(103), year(1984), year(2005), decimal("3.14")
    ('one hundred third', 'nineteen eighty four', 'two thousand five', 'three point one four')
    >>> roman_to_int("VIII")
    8
"""

from __future__ import annotations

import re

ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion")
#: The largest number read as a cardinal; longer digit strings are read digit by digit.
MAX_CARDINAL = 10 ** (3 * len(SCALES)) - 1

_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_VALID_ROMAN = re.compile(r"^M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$")


def _below_thousand(n: int) -> list[str]:
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [ONES[hundreds], "hundred"]
    if rest >= 20:
        words.append(TENS[rest // 10])
        if rest % 10:
            words.append(ONES[rest % 10])
    elif rest or not words:
        words.append(ONES[rest])
    return words


def cardinal(n: int) -> str:
    """``n`` in words, US style without "and" (``-5`` -> ``minus five``).

    Args:
        n: an integer with ``abs(n) <= MAX_CARDINAL``.

    Returns:
        the words, space-separated.

    Example:
        >>> cardinal(0), cardinal(-40), cardinal(2005)
        ('zero', 'minus forty', 'two thousand five')
    """
    if abs(n) > MAX_CARDINAL:
        raise ValueError(f"{n} is too large to read as a cardinal; read it digit by digit")
    if n < 0:
        return "minus " + cardinal(-n)
    if n == 0:
        return "zero"
    groups = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(" ".join(_below_thousand(group) + ([SCALES[scale]] if SCALES[scale] else [])))
        scale += 1
    return " ".join(reversed(groups))


def ordinal(n: int) -> str:
    """``n`` as an ordinal in words (``22`` -> ``twenty second``).

    Example:
        >>> ordinal(1), ordinal(12), ordinal(40), ordinal(1000)
        ('first', 'twelfth', 'fortieth', 'one thousandth')
    """
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year(n: int) -> str:
    """A year as people say it: ``1984`` nineteen eighty four, ``1905`` nineteen oh five,
    ``1900`` nineteen hundred, ``2005`` two thousand five, ``2021`` twenty twenty one.

    Example:
        >>> year(1905), year(1900), year(2000), year(2021), year(800)
        ('nineteen oh five', 'nineteen hundred', 'two thousand', 'twenty twenty one', 'eight hundred')
    """
    if not 1000 <= n <= 9999 or (2000 <= n <= 2009) or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def digits(text: str) -> str:
    """Each digit of ``text`` as a word (``"007"`` -> ``zero zero seven``); other characters are skipped."""
    return " ".join(ONES[int(c)] for c in text if c.isdigit())


def decimal(text: str) -> str:
    """A decimal number written with a point (``"-0.5"`` -> ``minus zero point five``).

    Args:
        text: digits with at most one ``.`` and an optional leading ``-``; no thousands commas.
    """
    sign = "minus " if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    spoken = integer(whole) if whole else "zero"
    if fraction:
        spoken += " point " + digits(fraction)
    return sign + spoken


def integer(text: str) -> str:
    """A string of digits as a cardinal, or digit by digit when too long (or it starts with 0 and has
    more than one digit, like ``007``)."""
    if len(text) > 1 and text.startswith("0"):
        return digits(text)
    value = int(text)
    return cardinal(value) if value <= MAX_CARDINAL else digits(text)


def roman_to_int(text: str) -> int | None:
    """The value of an upper-case roman numeral, or None when ``text`` is not a valid one."""
    if not text or not _VALID_ROMAN.match(text):
        return None
    total = 0
    for i, c in enumerate(text):
        value = _ROMAN[c]
        total += -value if i + 1 < len(text) and _ROMAN[text[i + 1]] > value else value
    return total
