"""Word tables the normaliser expands: abbreviations, units, currencies, months, symbols.

Example:
    >>> TITLES["dr"], UNITS["km"], MONTHS[3]
    ('doctor', ('kilometer', 'kilometers'), 'march')
"""

from __future__ import annotations

#: Abbreviations read before a name; their dot never ends a sentence.
TITLES = {
    "mr": "mister", "mrs": "missus", "ms": "ms", "dr": "doctor", "prof": "professor", "st": "saint",
    "mt": "mount", "gen": "general", "gov": "governor", "sen": "senator", "rep": "representative",
    "capt": "captain", "lt": "lieutenant", "col": "colonel", "sgt": "sergeant", "rev": "reverend",
    "fr": "father", "hon": "honorable",
}  # fmt: skip
#: Abbreviations whose dot may also end the sentence ("... and so on, etc. Then").
ABBREVIATIONS = {
    "etc": "et cetera", "vs": "versus", "jr": "junior", "sr": "senior", "inc": "incorporated",
    "ltd": "limited", "co": "company", "corp": "corporation", "dept": "department", "approx": "approximately",
    "est": "established", "no": "number", "nos": "numbers", "vol": "volume", "ch": "chapter",
    "fig": "figure", "ave": "avenue", "blvd": "boulevard", "rd": "road",
}  # fmt: skip
#: Dotted abbreviations matched as a whole, case-insensitively.
DOTTED = {
    "e.g.": "for example", "i.e.": "that is", "a.k.a.": "also known as", "cf.": "compare",
    "ph.d.": "P H D", "ph.d": "P H D",
}  # fmt: skip

#: Units read after a number: (singular, plural). Matched case-sensitively (``m`` metre, ``M`` not).
UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "ft": ("foot", "feet"), "mi": ("mile", "miles"),
    "l": ("liter", "liters"), "ml": ("milliliter", "milliliters"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "hz": ("hertz", "hertz"), "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"), "kb": ("kilobyte", "kilobytes"),
    "KB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"), "ms": ("millisecond", "milliseconds"), "sec": ("second", "seconds"),
    "min": ("minute", "minutes"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "kW": ("kilowatt", "kilowatts"), "kWh": ("kilowatt hour", "kilowatt hours"), "W": ("watt", "watts"),
    "V": ("volt", "volts"), "dB": ("decibel", "decibels"), "\u00b0C": ("degree celsius", "degrees celsius"),
    "\u00b0F": ("degree fahrenheit", "degrees fahrenheit"), "\u00b0": ("degree", "degrees"),
}  # fmt: skip
#: Currency symbol -> (major singular, major plural, minor singular, minor plural).
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"), "\u00a3": ("pound", "pounds", "penny", "pence"),
    "\u20ac": ("euro", "euros", "cent", "cents"), "\u00a5": ("yen", "yen", "sen", "sen"),
}  # fmt: skip
SCALE_WORDS = ("thousand", "million", "billion", "trillion")

MONTHS = (
    "", "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
MONTH_ABBREVIATIONS = {m[:3]: m for m in MONTHS[1:]} | {"sept": "september"}

#: Symbols read as words wherever they stand (``#`` and ``%`` are handled with numbers first).
SYMBOL_WORDS = {
    "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number ", "%": " percent ",
    "~": " about ", "<": " less than ", ">": " greater than ", "/": " slash ", "\u00b0": " degrees ",
    "\u00a2": " cents ",
}  # fmt: skip
#: ASCII marks mapped onto a pause or onto nothing (quotes, emphasis), on purpose and silently.
PAUSE_MARKS = "()[]{}|"
SILENT_MARKS = '"*_`'

#: Words after which a roman numeral is a number ("Chapter IV" -> chapter four).
ROMAN_COUNTERS = frozenset(
    "chapter part book volume act scene section article episode phase stage level class type world war "
    "grade series psalm canto appendix".split()
)
#: Names after which a roman numeral is regnal ("Henry VIII" -> henry the eighth).
REGNAL_NAMES = frozenset(
    "henry edward george william james charles richard john louis elizabeth mary anne victoria philip "
    "frederick alexander peter nicholas ivan catherine pius leo gregory benedict clement innocent paul "
    "urban boniface ramesses napoleon constantine otto ludwig carlos juan felipe alfonso ferdinand "
    "isabella rudolf sigismund gustav christian olaf harald haakon wilhelm umberto vittorio pedro "
    "manuel francis stephen david malcolm robert".split()
)
#: Words before which a four-digit number is a year ("in 1984").
YEAR_CUES = frozenset(
    "in since by from until till of year during circa before after around summer winter spring autumn "
    "fall early late mid between".split()
)

#: Letter names as ARPAbet, for spelled acronyms and single capital letters.
LETTER_NAMES = {
    "A": ("EY1",), "B": ("B", "IY1"), "C": ("S", "IY1"), "D": ("D", "IY1"), "E": ("IY1",),
    "F": ("EH1", "F"), "G": ("JH", "IY1"), "H": ("EY1", "CH"), "I": ("AY1",), "J": ("JH", "EY1"),
    "K": ("K", "EY1"), "L": ("EH1", "L"), "M": ("EH1", "M"), "N": ("EH1", "N"), "O": ("OW1",),
    "P": ("P", "IY1"), "Q": ("K", "Y", "UW1"), "R": ("AA1", "R"), "S": ("EH1", "S"), "T": ("T", "IY1"),
    "U": ("Y", "UW1"), "V": ("V", "IY1"), "W": ("D", "AH1", "B", "AH0", "L", "Y", "UW0"),
    "X": ("EH1", "K", "S"), "Y": ("W", "AY1"), "Z": ("Z", "IY1"),
}  # fmt: skip
