"""The fixed table of pseudo-speakers the synthetic speech corpus is made of.

A pseudo-speaker is one engine voice combined with one fixed perturbation: engine rate and pitch
settings plus a vocal-tract-length warp (see :mod:`speechkit.data.engines`). Every utterance of a
pseudo-speaker uses the same perturbation, so a speaker model sees a consistent voice, while the
set of speakers is far wider than the engines' own voices; a codec trained on 13 voices lost 0.17
PESQ-WB and 0.14 STOI on unseen voices, so the corpus needs breadth.

The table is a constant: it does not depend on the build seed, so speaker ids mean the same thing
in every corpus. Splits are assigned per *base voice*, never per utterance:

* espeak-ng variants (m1..m7, f1..f5, klatt..klatt4) are split into train / valid / test sets of
  variants, each variant combined with three of the seven English accents;
* flite's natural voices awb and rms train; kal16 validates; the 8 kHz kal and slt test;
* one engine (festival by default) is held out entirely as ``test_ood``: an engine never heard in
  training. Festival's kal_diphone and cmu_us_slt_arctic_hts record the same talkers as flite's
  kal/kal16 and slt, which is why those flite voices never train: the out-of-domain split must
  hold talkers as well as an engine that training never heard.

Example:
    >>> table = speaker_table()
    >>> len({(s.engine, s.voice) for s in table}) >= 20
    True
    >>> {s.split for s in table if s.engine == "festival"}
    {'test_ood'}
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from speechkit.data.engines import ENGINES, ESPEAK_ACCENTS
from speechkit.errors import DataError

CORPUS_SPLITS = ("train", "valid", "test", "test_ood")
ESPEAK_VARIANT_SPLITS = {
    "train": ("m1", "m2", "m4", "m5", "m7", "f1", "f3", "f5", "klatt", "klatt4"),
    "valid": ("m6", "f4", "klatt3"),
    "test": ("m3", "f2", "klatt2"),
}
ACCENTS_PER_VARIANT = 3
# (voice, home split, number of pseudo-speakers, typical mean F0 in Hz or None when not settable)
FLITE_SPEAKERS = (
    ("awb", "train", 4, 105.0),
    ("rms", "train", 4, None),
    ("slt", "test", 2, 175.0),
    ("kal16", "valid", 2, 105.0),
    ("kal", "test", 2, 105.0),
)
FESTIVAL_SPEAKERS = (
    ("kal_diphone", "train", 2, 105.0),
    ("cmu_us_slt_arctic_hts", "train", 2, None),
    ("ked_diphone", "test", 2, 110.0),
)
VTL_WARP_RANGE = (0.92, 1.08)


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One pseudo-speaker: a base voice with a fixed perturbation.

    Args:
        speaker_id: unique id, also the folder name of its wavs.
        engine: "espeak-ng", "flite" or "festival".
        voice: the engine's voice name (espeak-ng ``accent+variant``).
        split: "train", "valid", "test" or "test_ood".
        settings: the perturbation, passed to :func:`speechkit.data.engines.synthesize`.
    """

    speaker_id: str
    engine: str
    voice: str
    split: str
    settings: dict[str, Any]


def _warp(rng: random.Random) -> float:
    return round(rng.uniform(*VTL_WARP_RANGE), 3)


def _espeak_speakers() -> list[Speaker]:
    speakers, slot = [], 0
    for split, variants in ESPEAK_VARIANT_SPLITS.items():
        for variant in variants:
            for _ in range(ACCENTS_PER_VARIANT):
                # Consecutive slots walk through the accents, so every split hears every accent.
                accent = ESPEAK_ACCENTS[slot % len(ESPEAK_ACCENTS)]
                slot += 1
                speaker_id = f"espeak-{accent}-{variant}"
                rng = random.Random(speaker_id)
                settings = {
                    "rate": rng.randint(145, 195),
                    "pitch": rng.randint(30, 70),
                    "vtl_warp": _warp(rng),
                }
                speakers.append(Speaker(speaker_id, "espeak-ng", f"{accent}+{variant}", split, settings))
    return speakers


def _engine_speakers(engine: str, rows: tuple, prefix: str) -> list[Speaker]:
    speakers = []
    for voice, split, count, base_f0 in rows:
        for index in range(count):
            speaker_id = f"{prefix}-{voice}-{index}"
            rng = random.Random(speaker_id)
            settings: dict[str, Any] = {}
            if index > 0:  # perturbation 0 is the voice as shipped
                settings["duration_stretch"] = round(rng.uniform(0.9, 1.15), 3)
                if base_f0 is not None:
                    settings["f0_mean"] = round(base_f0 * rng.uniform(0.85, 1.2), 1)
                settings["vtl_warp"] = _warp(rng)
            speakers.append(Speaker(speaker_id, engine, voice, split, settings))
    return speakers


def speaker_table(held_out_engine: str | None = "festival") -> list[Speaker]:
    """Every pseudo-speaker of the speech corpus, in a fixed order.

    Args:
        held_out_engine: every voice of this engine goes to ``test_ood`` (None: no OOD split; each
            voice keeps its home split).

    Returns:
        Speakers with unique ids; splits are disjoint by base voice.
    """
    if held_out_engine is not None and held_out_engine not in ENGINES:
        raise DataError(f"held_out_engine must be one of {ENGINES} or None, got {held_out_engine!r}")
    table = (
        _espeak_speakers()
        + _engine_speakers("flite", FLITE_SPEAKERS, "flite")
        + _engine_speakers("festival", FESTIVAL_SPEAKERS, "festival")
    )
    if held_out_engine is not None:
        table = [
            dataclasses.replace(s, split="test_ood") if s.engine == held_out_engine else s for s in table
        ]
    return table


def voices_by_split(table: list[Speaker]) -> dict[str, list[str]]:
    """Sorted ``engine:voice`` names per split (a voice may appear in one split only).

    Example:
        >>> sorted(voices_by_split(speaker_table()))
        ['test', 'test_ood', 'train', 'valid']
    """
    out: dict[str, set[str]] = {}
    for s in table:
        out.setdefault(s.split, set()).add(f"{s.engine}:{s.voice}")
    return {split: sorted(voices) for split, voices in out.items()}
