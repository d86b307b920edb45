"""The trained letter-to-sound model: held-out accuracy, size and format, strict loading, alignment."""

from __future__ import annotations

import json

import pytest

from speechkit.errors import CheckpointError
from speechkit.text.lexicon import load_cmudict
from speechkit.text.lts import DEFAULT_MODEL_PATH, LetterToSound, _one_primary_stress, default_lts
from speechkit.text.symbols import PHONEMES
from speechkit.text.train_lts import (
    align_word,
    edit_distance,
    is_held_out,
    phoneme_error_rate,
    training_pairs,
)

#: The bar the shipped model must clear on held-out CMUdict words (stress digits count as errors).
MAX_HELD_OUT_PER = 0.15


def test_held_out_phoneme_error_rate_is_low_and_matches_the_stored_one():
    model = default_lts()
    held_out = training_pairs(held_out=True)
    assert len(held_out) > 5000 and all(is_held_out(w) for w, _ in held_out)
    per = phoneme_error_rate(model, held_out)
    assert per < MAX_HELD_OUT_PER
    assert per == pytest.approx(model.held_out_per, abs=1e-4)


def test_held_out_words_are_disjoint_from_training_words():
    train_words = {w for w, _ in training_pairs(held_out=False)}
    held_out_words = {w for w, _ in training_pairs(held_out=True)}
    assert train_words and held_out_words and not train_words & held_out_words


def test_training_words_are_learned_better_than_held_out_ones():
    model = default_lts()
    assert phoneme_error_rate(model, training_pairs(held_out=False)[::50]) < model.held_out_per


def test_plausible_phonemes_for_made_up_words():
    lts = default_lts()
    assert lts.predict("blick")[:2] == ["B", "L"] and lts.predict("blick")[-1] == "K"
    assert lts.predict("zorp")[0] == "Z"
    assert lts.predict("shtenk")[:1] == ["SH"]
    assert "K" in lts.predict("xander") or "Z" in lts.predict("xander")
    assert lts.predict("") == []
    assert lts.predict("Blick") == lts.predict("blick")  # case does not matter


def test_every_prediction_is_in_the_phoneme_table_with_one_primary_stress():
    lts = default_lts()
    for word in ["quixotically", "zzyzx", "aaaa", "'tis", "mcgillicuddy", "q", "rhythm"]:
        phonemes = lts.predict(word)
        assert phonemes and all(p in PHONEMES for p in phonemes), word
        stressed = [p for p in phonemes if p[-1] in "012"]
        assert not stressed or sum(p.endswith("1") for p in stressed) == 1, (word, phonemes)


def test_outputs_are_table_phonemes():
    outputs = default_lts().outputs
    assert outputs[0] == "" and len(outputs) > 60
    for label in outputs:
        assert all(p in PHONEMES for p in label.split())


def test_one_primary_stress():
    assert _one_primary_stress(["AH1", "B", "AH1"]) == ["AH1", "B", "AH2"]
    assert _one_primary_stress(["AH0", "B", "AH2"]) == ["AH0", "B", "AH1"]
    assert _one_primary_stress(["AH0", "B", "AH0"]) == ["AH1", "B", "AH0"]
    assert _one_primary_stress(["B", "M"]) == ["B", "M"]


def test_alignment_assigns_one_label_per_letter():
    assert align_word("box", ("B", "AA1", "K", "S"), {}) == ["B", "AA1", "K S"]
    log_probs = {"t": {"T": -0.1}, "h": {"": -0.1, "HH": -3.0}, "e": {"AH": -0.1}}
    assert align_word("the", ("T", "AH0"), log_probs) == ["T", "", "AH0"]
    assert align_word("ab", ("A", "B", "C", "D", "E"), {}) is None


def test_edit_distance():
    assert edit_distance(["A", "B", "C"], ["A", "C"]) == 1
    assert edit_distance([], ["A", "B"]) == 2
    assert edit_distance(["A"], ["A"]) == 0


def test_model_file_is_small_json():
    assert DEFAULT_MODEL_PATH.stat().st_size < 2 * 1024 * 1024
    data = json.loads(DEFAULT_MODEL_PATH.read_text())
    assert data["format"] == "speechkit-lts" and data["version"] == 1


def test_save_load_round_trip(tmp_path):
    model = default_lts()
    path = tmp_path / "lts.json"
    model.save(path)
    loaded = LetterToSound.load(path)
    for word in ["grobnik", "speechkit", "zorbington"]:
        assert loaded.predict(word) == model.predict(word)
    assert loaded.held_out_per == model.held_out_per


def test_strict_loading(tmp_path):
    data = json.loads(DEFAULT_MODEL_PATH.read_text())
    bad = tmp_path / "extra.json"
    bad.write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(CheckpointError, match="keys"):
        LetterToSound.load(bad)
    missing_key = tmp_path / "missing_key.json"
    missing_key.write_text(json.dumps({k: v for k, v in data.items() if k != "tables"}))
    with pytest.raises(CheckpointError, match="keys"):
        LetterToSound.load(missing_key)
    wrong = tmp_path / "version.json"
    wrong.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(CheckpointError, match="v99"):
        LetterToSound.load(wrong)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(DEFAULT_MODEL_PATH.read_text()[:1000])
    with pytest.raises(CheckpointError, match="cannot read"):
        LetterToSound.load(truncated)
    with pytest.raises(CheckpointError, match="cannot read"):
        LetterToSound.load(tmp_path / "missing.json")


def test_lexicon_keeps_first_pronunciation_and_stress():
    lexicon = load_cmudict()
    assert len(lexicon) > 120_000
    assert lexicon["read"] == ("R", "EH1", "D")  # first of "R EH1 D" / "R IY1 D"
    assert lexicon["aalborg"] == ("AO1", "L", "B", "AO0", "R", "G")  # "# place, danish" comment dropped
    assert load_cmudict() is lexicon  # loaded once
    with pytest.raises(TypeError):
        lexicon["new"] = ("N", "UW1")  # read-only


@pytest.mark.slow
def test_training_reproduces_the_shipped_model(tmp_path):
    from speechkit.text.train_lts import main

    out = tmp_path / "lts.json"
    main(["--output", str(out)])
    assert out.read_text() == DEFAULT_MODEL_PATH.read_text()
