"""TextFrontend: the phoneme convention the TTS data was made with, ids, word indices, bad input."""

from __future__ import annotations

import logging

import pytest

from speechkit.errors import SpeechkitError, TextError
from speechkit.text import PhonemeSequence, PhonemeSymbols, TextFrontend
from speechkit.text.lexicon import load_cmudict
from speechkit.text.symbols import PUNCTUATION

# Sentences of the TTS training corpus with the phonemes it was trained on (data/tts/*.phonemes.jsonl).
CORPUS = [
    (
        "If people have to choose between freedom and sandwiches, they will take sandwiches.",
        "IH1 F _ P IY1 P AH0 L _ HH AE1 V _ T UW1 _ CH UW1 Z _ B IH0 T W IY1 N _ F R IY1 D AH0 M _ AH0 N D _ "
        "S AE1 N D W IH0 CH IH0 Z , DH EY1 _ W IH1 L _ T EY1 K _ S AE1 N D W IH0 CH IH0 Z .",
    ),
    (
        "Fool-proof Operation All parameters are hard-coded.",
        "F UW1 L - P R UW1 F _ AA2 P ER0 EY1 SH AH0 N _ AO1 L _ P ER0 AE1 M AH0 T ER0 Z _ AA1 R _ "
        "HH AA1 R D - K OW1 D IH0 D .",
    ),
    (
        "Most folks they like the daytime, 'cause they like to see the shining sun.",
        "M OW1 S T _ F OW1 K S _ DH EY1 _ L AY1 K _ DH AH0 _ D EY1 T AY2 M , K AH0 Z _ DH EY1 _ L AY1 K _ "
        "T UW1 _ S IY1 _ DH AH0 _ SH AY1 N IH0 NG _ S AH1 N .",
    ),
    (
        "It's time to boot, do your boot ROMs know where your disk controllers are?",
        "IH1 T S _ T AY1 M _ T UW1 _ B UW1 T , D UW1 _ Y AO1 R _ B UW1 T _ R AA1 M Z _ N OW1 _ W EH1 R _ "
        "Y AO1 R _ D IH1 S K _ K AH0 N T R OW1 L ER0 Z _ AA1 R ?",
    ),
    (
        "William Safire's rules for writing as seen in the New York Times Do not put statements in the negative form.",
        "W IH1 L Y AH0 M _ S AH0 F AY1 R Z _ R UW1 L Z _ F AO1 R _ R AY1 T IH0 NG _ AE1 Z _ S IY1 N _ IH0 N _ "
        "DH AH0 _ N UW1 _ Y AO1 R K _ T AY1 M Z _ D UW1 _ N AA1 T _ P UH1 T _ S T EY1 T M AH0 N T S _ IH0 N _ "
        "DH AH0 _ N EH1 G AH0 T IH0 V _ F AO1 R M .",
    ),
]


@pytest.fixture(scope="module")
def frontend() -> TextFrontend:
    return TextFrontend()


def test_convention_on_the_brief_example(frontend):
    seq = frontend.phonemize("Hello, world.")
    assert seq.symbols == ["HH", "AH0", "L", "OW1", ",", "W", "ER1", "L", "D", "."]
    assert seq.words == ["hello", "world"]
    assert seq.word_index == [0, 0, 0, 0, -1, 1, 1, 1, 1, -1]


@pytest.mark.parametrize("text,expected", CORPUS)
def test_matches_the_tts_training_corpus(frontend, text, expected):
    assert " ".join(frontend.phonemize(text).symbols) == expected


def test_dictionary_words_use_the_first_cmudict_pronunciation(frontend):
    lexicon = load_cmudict()
    words = ["read", "live", "record", "the", "a", "tomato", "either"]
    seq = frontend.phonemize(" ".join(words))
    expected = []
    for word in words:
        expected += list(lexicon[word]) + ["_"]
    assert seq.symbols == expected[:-1] + ["."]


def test_final_mark_is_added_only_when_missing(frontend):
    assert frontend.phonemize("yes").symbols[-1] == "."
    assert frontend.phonemize("yes?").symbols[-2:] == ["S", "?"]
    assert (
        frontend.phonemize("Yes!?").symbols.count("!") + frontend.phonemize("Yes!?").symbols.count("?") == 1
    )
    assert frontend.phonemize("wait;").symbols[-1] == ";"


def test_ids_are_in_the_table_and_round_trip(frontend):
    table = PhonemeSymbols()
    text = (
        "On 3/14/2015 at 7:30 pm, Dr. O'Neill paid $1,234.56 (20% off) for the FBI's XQJ-9 zorblaxian widget!"
    )
    seq = frontend.phonemize(text)
    assert isinstance(seq, PhonemeSequence)
    assert all(0 <= i < len(table) for i in seq.ids)
    assert table.symbols(seq.ids) == seq.symbols
    assert table.unk_id not in seq.ids and table.pad_id not in seq.ids
    assert len(seq.word_index) == len(seq.symbols) == len(seq)
    for symbol, index in zip(seq.symbols, seq.word_index):
        assert (index == -1) == (symbol == "_" or symbol in PUNCTUATION)
    assert max(seq.word_index) == len(seq.words) - 1


def test_no_boundary_around_marks_and_no_doubled_boundaries(frontend):
    symbols = frontend.phonemize("well -- so, umm... (really) right?! ok").symbols
    for a, b in zip(symbols, symbols[1:]):
        assert not (a == "_" and b == "_")
        assert not (a == "_" and b in PUNCTUATION) and not (a in PUNCTUATION and b == "_")
    assert symbols[0] not in PUNCTUATION and symbols[0] != "_"


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "...", "?!,;:-", "()[]\"'", "漢字", "🙂🙂", "^^ \\ |"])
def test_nothing_pronounceable_raises_text_error(frontend, text):
    with pytest.raises(TextError) as info:
        frontend.phonemize(text)
    assert isinstance(info.value, SpeechkitError) and isinstance(info.value, ValueError)
    assert "empty" in str(info.value) or "nothing pronounceable" in str(info.value)
    with pytest.raises(TextError):
        frontend.sentences(text)


def test_non_string_input_raises_text_error(frontend):
    with pytest.raises(TextError, match="must be a str"):
        frontend.phonemize(None)  # type: ignore[arg-type]


def test_unknown_characters_are_dropped_and_reported(frontend, caplog):
    with caplog.at_level(logging.WARNING, logger="speechkit.text"):
        seq = frontend.phonemize("Hello 漢 world ^ 🙂")
    assert seq.dropped == ["漢", "^", "🙂"]
    assert seq.words == ["hello", "world"]
    assert "cannot read" in caplog.text


def test_accents_are_folded_not_dropped(frontend):
    seq = frontend.phonemize("Café naïve façade Zoë")
    assert seq.dropped == []
    assert seq.words == ["cafe", "naive", "facade", "zoe"]


def test_very_long_text_raises_but_sentences_split_it(frontend):
    text = "This is a sentence about nothing in particular, really. " * 200
    with pytest.raises(TextError, match="sentences"):
        frontend.phonemize(text)
    sentences = frontend.sentences(text)
    assert len(sentences) == 200
    assert all(len(frontend.phonemize(s)) > 10 for s in sentences[:3])


def test_sentences_drop_unpronounceable_pieces(frontend):
    assert frontend.sentences("Hello there. !!! ... Goodbye now.") == ["Hello there.", "Goodbye now."]


def test_oov_words_get_phonemes(frontend):
    seq = frontend.phonemize("The zorblaxian flibbertigibbetted.")
    assert seq.words == ["the", "zorblaxian", "flibbertigibbetted"]
    for index in (1, 2):
        phonemes = [s for s, w in zip(seq.symbols, seq.word_index) if w == index]
        assert any(p[-1] in "012" for p in phonemes)
