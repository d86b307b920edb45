"""GraphemeToPhoneme: CMUdict lookups, letters, possessives, apostrophes, out-of-vocabulary words."""

from __future__ import annotations

import pytest

from speechkit.text.g2p import GraphemeToPhoneme
from speechkit.text.lexicon import load_cmudict
from speechkit.text.symbols import PHONEMES


@pytest.fixture(scope="module")
def g2p() -> GraphemeToPhoneme:
    return GraphemeToPhoneme()


def test_first_cmudict_pronunciation_with_stress(g2p):
    assert g2p("hello") == ["HH", "AH0", "L", "OW1"]
    assert g2p("Hello") == ["HH", "AH0", "L", "OW1"]
    assert g2p("a") == list(load_cmudict()["a"])


def test_lexicon_is_loaded_once():
    assert load_cmudict() is load_cmudict()
    assert len(load_cmudict()) > 100_000


def test_spelled_letters(g2p):
    assert g2p("A") == ["EY1"]
    assert g2p("W") == ["D", "AH1", "B", "AH0", "L", "Y", "UW0"]
    assert g2p("X's") == ["EH1", "K", "S", "IH0", "Z"]


def test_possessives_of_unknown_forms(g2p):
    assert g2p("zorbington's")[-1] == "Z"
    assert g2p("glorptik's")[-1] == "S"
    assert g2p("blorfmatch's")[-2:] == ["IH0", "Z"]
    assert g2p("zorbingtons'") == g2p("zorbingtons")


def test_apostrophes(g2p):
    assert g2p("'em") == list(load_cmudict()["'em"])
    assert g2p("o'neill") == list(load_cmudict()["o'neill"])
    assert all(p in PHONEMES for p in g2p("zy'xorp"))


@pytest.mark.parametrize(
    "word", ["zorblaxian", "kubernetes", "snarfle", "glimbert", "quixotry", "flibbertigibbet"]
)
def test_oov_words_get_table_phonemes_with_one_primary_stress(g2p, word):
    assert word not in load_cmudict()
    phonemes = g2p(word)
    assert phonemes and all(p in PHONEMES for p in phonemes)
    assert sum(p.endswith("1") for p in phonemes) == 1


def test_plausible_oov_readings(g2p):
    assert g2p("snarfle")[:2] == ["S", "N"]
    assert g2p("glimbert")[:4] == ["G", "L", "IH1", "M"]


def test_rejects_non_words(g2p):
    with pytest.raises(ValueError):
        g2p("two words")
    with pytest.raises(ValueError):
        g2p("")


#: The bar the out-of-vocabulary fallback must clear on held-out CMUdict words (stress digits count).
MAX_HELD_OUT_PER = 0.16


def _edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def test_oov_fallback_phoneme_error_rate_on_held_out_cmudict_words():
    from speechkit.text.lts import DEFAULT_MODEL_PATH, default_lts
    from speechkit.text.train_lts import training_pairs

    held_out = training_pairs(held_out=True)  # words the letter-to-sound model never saw
    assert len(held_out) > 5000
    oov = GraphemeToPhoneme(lexicon={})  # an empty lexicon sends every word to the fallback
    errors = sum(_edit_distance(oov(word), list(phonemes)) for word, phonemes in held_out)
    per = errors / sum(len(p) for _, p in held_out)
    assert per < MAX_HELD_OUT_PER
    assert per == pytest.approx(default_lts().held_out_per, abs=2e-3)
    assert DEFAULT_MODEL_PATH.stat().st_size < 2 * 1024 * 1024


@pytest.mark.parametrize("word", ["blorft", "browe", "chirps", "zorbington"])
def test_oov_words_always_get_a_vowel(g2p, word):
    assert any(p[-1] in "012" for p in g2p(word))


def test_repeated_letters_and_overlong_words(g2p):
    assert g2p("soooooooo") == g2p("soo")
    long_word = "abcdefghij" * 100
    phonemes = g2p(long_word)
    assert phonemes and all(p in PHONEMES for p in phonemes)
    assert len(phonemes) < 3 * len(long_word)
