"""English sentences for corpus synthesis, cut from Debian's fortune files, and their stable splits.

There is no internet on the build machines, so the text side of every synthetic corpus comes from
files Debian ships: ``fortunes`` (``/usr/share/games/fortunes``) and, when installed, a word list
under ``/usr/share/dict``. Fortunes are messy (ASCII art, code, dialogue, "-- Author" lines), so
they are split into sentences and only plain, short, speakable English is kept.

Sentences are assigned to train / valid / test by a hash of their normalised text rather than by a
seeded shuffle: a sentence keeps its split when the pool grows (a new fortune package, another word
list), so test text can never leak into training across corpus versions.

Example:
    >>> is_plain_sentence("The cat sat on the warm mat.")
    True
    >>> is_plain_sentence("See http://example.com for more.")
    False
    >>> split_sentences("I came home.  Then I slept!  Mr. Smith stayed.")
    ['I came home.', 'Then I slept!', 'Mr. Smith stayed.']
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechkit.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_FORTUNE_DIR = Path("/usr/share/games/fortunes")
DEFAULT_DICT_DIR = Path("/usr/share/dict")
SPLITS = ("train", "valid", "test")
MIN_WORDS = 4
MAX_WORDS = 20
MAX_WORD_LENGTH = 18

# Offensive fortunes live in an "off" folder (fortunes-off); the others are noise for speech text.
_SKIPPED_FOLDERS = {"off"}
_SKIPPED_FILES = {"ascii-art", "art", "perl", "translate-me"}
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "gen", "col", "lt"}
# A plain sentence: capitalised start, letters and light punctuation inside, one terminal mark.
_PLAIN = re.compile(r"^[A-Z][A-Za-z' ,;-]*[A-Za-z][.!?]$")
_URL = re.compile(r"(https?:|www\.|\.(com|org|net|edu|gov)\b|@)", re.IGNORECASE)
_ATTRIBUTION = re.compile(r"(^|\n)\s*(--|\u2014)\s*\S.*$", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Verse joined into one line shows as ", And so ..."; a capitalised function word mid-sentence means that.
_VERSE_BREAK = re.compile(r"[,;] (And|But|Or|The|So|To|In|Of|With|When|Where|That|For|Nor|As|If|A|An)\b")


def normalize_text(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends.

    Example:
        >>> normalize_text("  two\\n words\\t here ")
        'two words here'
    """
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences after ``.``, ``!`` or ``?`` followed by a capital.

    A full stop after a common abbreviation (Mr., Dr., St. ...) or a single initial does not end a
    sentence.
    """
    pieces = _SENTENCE_END.split(normalize_text(text))
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _ends_with_abbreviation(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return [s for s in sentences if s]


def _ends_with_abbreviation(sentence: str) -> bool:
    if not sentence.endswith("."):
        return False
    last = sentence[:-1].rsplit(" ", 1)[-1].lower()
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def is_plain_sentence(sentence: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> bool:
    """True for a short plain English sentence a TTS engine reads unambiguously.

    Keeps ASCII letters, spaces and ``' , ; -`` inside, one ``. ! ?`` at the end, ``min_words`` to
    ``max_words`` words. Drops URLs, code, digits, quotes, attributions ("-- Author"), dialogue
    labels ("Q:"), verse lines joined by wrapping (", And so"), shouting (a word of two or more capitals other than "I") and giant words.
    """
    if _URL.search(sentence) or not _PLAIN.match(sentence) or _VERSE_BREAK.search(sentence):
        return False
    if "--" in sentence or "''" in sentence or " -" in sentence or "- " in sentence:
        return False
    words = sentence[:-1].replace(",", " ").replace(";", " ").split()
    if not min_words <= len(words) <= max_words:
        return False
    for word in words:
        letters = word.strip("'-")
        if not letters or len(letters) > MAX_WORD_LENGTH:
            return False
        if len(letters) >= 2 and letters.isupper():
            return False
    return True


def sentences_from_fortune_text(text: str) -> list[str]:
    """Plain sentences from the contents of one fortune file (entries separated by ``%`` lines).

    Example:
        >>> sentences_from_fortune_text("You will travel far today.\\n\\t-- Anon\\n%\\nOK.\\n")
        ['You will travel far today.']
    """
    kept = []
    for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        entry = _ATTRIBUTION.sub("", entry)
        kept.extend(s for s in split_sentences(entry) if is_plain_sentence(s))
    return kept


def fortune_files(fortune_dir: str | Path = DEFAULT_FORTUNE_DIR) -> list[Path]:
    """The fortune text files under ``fortune_dir`` (sorted; no ``.dat``/``.u8``, no offensive sets)."""
    root = Path(fortune_dir)
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink():
            continue
        rel = path.relative_to(root)
        if _SKIPPED_FOLDERS & set(rel.parts[:-1]) or path.name in _SKIPPED_FILES:
            continue
        files.append(path)
    return files


def load_sentences(
    fortune_dir: str | Path = DEFAULT_FORTUNE_DIR,
    word_list: str | Path | None = None,
    num_word_list_sentences: int = 0,
    seed: int = 0,
) -> list[str]:
    """The deduplicated, sorted pool of plain sentences from fortunes (plus optional word-list ones).

    Args:
        fortune_dir: folder of fortune files (Debian package ``fortunes``).
        word_list: a one-word-per-line list (e.g. ``/usr/share/dict/words`` from ``wamerican``);
            ``num_word_list_sentences`` random-word sentences are drawn from it for lexical breadth.
        num_word_list_sentences: how many such sentences to add (0 = none).
        seed: seed of the word-list sentences.

    Returns:
        Sorted unique sentences.

    Raises:
        DataError: no fortunes found, or an unreadable word list.
    """
    word_list = str(word_list) if word_list is not None else None
    return list(_load_sentences(str(fortune_dir), word_list, num_word_list_sentences, seed))


@functools.lru_cache(maxsize=8)
def _load_sentences(
    fortune_dir: str, word_list: str | None, num_word_list_sentences: int, seed: int
) -> tuple[str, ...]:
    # Cached: a corpus build asks for the same pool once per split and per speaker job.
    files = fortune_files(fortune_dir) if Path(fortune_dir).is_dir() else []
    if not files:
        raise DataError(f"no fortune files under {fortune_dir}; install them with `apt-get install fortunes`")
    pool: dict[str, str] = {}
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for sentence in sentences_from_fortune_text(text):
            pool.setdefault(sentence.lower(), sentence)
    if word_list is not None and num_word_list_sentences > 0:
        for sentence in word_list_sentences(word_list, num_word_list_sentences, seed):
            pool.setdefault(sentence.lower(), sentence)
    logger.info("sentence pool: %d sentences from %d fortune files", len(pool), len(files))
    return tuple(sorted(pool.values()))


def word_list_sentences(word_list: str | Path, count: int, seed: int = 0) -> list[str]:
    """``count`` pseudo-sentences of 4-10 random lower-case words from a word list (deterministic)."""
    path = Path(word_list)
    if not path.is_file():
        raise DataError(
            f"word list {path} not found; `apt-get install wamerican` provides /usr/share/dict/words"
        )
    words = sorted(
        {
            w
            for w in path.read_text(encoding="utf-8", errors="replace").split()
            if re.fullmatch(r"[a-z]{2,12}", w)
        }
    )
    if len(words) < 10:
        raise DataError(f"word list {path} has fewer than 10 usable lower-case words")
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        chosen = rng.sample(words, rng.randint(MIN_WORDS, 10))
        out.append(" ".join(chosen).capitalize() + ".")
    return out


def sentence_split(sentence: str, valid_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """The split ("train", "valid" or "test") a sentence belongs to, from a hash of its text.

    The assignment depends on the sentence alone, so it is stable when the pool changes.

    Example:
        >>> sentence_split("The cat sat on the warm mat.") in SPLITS
        True
    """
    if valid_fraction < 0 or test_fraction < 0 or valid_fraction + test_fraction >= 1:
        raise DataError(f"bad split fractions: valid {valid_fraction}, test {test_fraction}")
    digest = hashlib.sha256(normalize_text(sentence).lower().encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def split_sentence_pool(
    sentences: Iterable[str], valid_fraction: float = 0.05, test_fraction: float = 0.05
) -> dict[str, list[str]]:
    """Partition sentences into disjoint, sorted train / valid / test lists by :func:`sentence_split`.

    Example:
        >>> parts = split_sentence_pool(["One two three four.", "Five six seven eight."])
        >>> sorted(parts) == sorted(SPLITS)
        True
    """
    parts: dict[str, list[str]] = {name: [] for name in SPLITS}
    for sentence in sorted(set(sentences)):
        parts[sentence_split(sentence, valid_fraction, test_fraction)].append(sentence)
    return parts


def shuffled(sentences: Sequence[str], seed: int) -> list[str]:
    """A seeded shuffle of a copy of ``sentences`` (sorted first, so input order does not matter)."""
    out = sorted(sentences)
    random.Random(seed).shuffle(out)
    return out
