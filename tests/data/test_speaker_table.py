"""The speaker table keeps every talker of the held-out engine out of training."""

from __future__ import annotations

from speechkit.data.speakers import speaker_table

# Festival's voices record these talkers, which flite also ships under other names.
SAME_TALKER_AS_FESTIVAL = {("flite", "slt"), ("flite", "kal"), ("flite", "kal16")}


def test_no_talker_of_the_held_out_engine_trains():
    table = speaker_table(held_out_engine="festival")
    train_voices = {(s.engine, s.voice) for s in table if s.split == "train"}
    assert not train_voices & SAME_TALKER_AS_FESTIVAL
    assert {s.split for s in table if s.engine == "festival"} == {"test_ood"}


def test_enough_training_voices_and_disjoint_splits():
    table = speaker_table()
    voices_by_split: dict[str, set] = {}
    for s in table:
        voices_by_split.setdefault(s.split, set()).add((s.engine, s.voice))
    assert len(voices_by_split["train"]) >= 20
    splits = list(voices_by_split.values())
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not a & b
