"""The shipped speaker checkpoints on voices they never trained on (festival, the held-out engine).

Speech comes from the TTS engines the project's setup installs, so nothing here reads the corpus.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechkit.checkpoint import shipped_checkpoints
from speechkit.cli import main
from speechkit.data.engines import synthesize
from speechkit.speaker.der import diarization_error_rate
from speechkit.speaker.rttm import Segment, read_rttm

SHIPPED = {c.name for c in shipped_checkpoints()}
pytestmark = pytest.mark.skipif(
    not {"ecapa-tdnn", "msdd"} <= SHIPPED, reason="speaker checkpoints not shipped in this checkout"
)
RATE = 16000
MALE, FEMALE = "kal_diphone", "cmu_us_slt_arctic_hts"
SENTENCES = (
    "A speaker model must hear the voice, not the words.",
    "Every morning the train left the station at seven.",
    "Please bring the green folder to the second meeting.",
    "Nobody expected the storm to arrive before noon.",
)


@pytest.fixture(scope="module")
def voices() -> dict[str, list[np.ndarray]]:
    return {voice: [synthesize("festival", text, voice) for text in SENTENCES] for voice in (MALE, FEMALE)}


@pytest.fixture(scope="module")
def encoder():
    import speechkit

    return speechkit.load("ecapa-tdnn")


def test_same_voice_scores_above_other_voice(encoder, voices):
    male = [encoder.embed(w, RATE) for w in voices[MALE]]
    female = [encoder.embed(w, RATE) for w in voices[FEMALE]]
    same = [encoder.score(male[i], male[j]) for i in range(4) for j in range(i + 1, 4)]
    same += [encoder.score(female[i], female[j]) for i in range(4) for j in range(i + 1, 4)]
    different = [encoder.score(m, f) for m in male for f in female]
    assert min(same) > max(different)
    assert np.mean(same) > encoder.threshold > np.mean(different)


def test_enrolment_identifies_the_held_out_voices(encoder, voices):
    encoder.enrolled.clear()
    encoder.enroll("kal", voices[MALE][:2], RATE)
    encoder.enroll("slt", voices[FEMALE][:2], RATE)
    assert encoder.identify(voices[MALE][3], RATE).name == "kal"
    assert encoder.identify(voices[FEMALE][3], RATE).name == "slt"


def _conversation(voices) -> tuple[np.ndarray, list[Segment]]:
    pieces, reference, clock = [], [], 0.0
    gap = np.zeros(int(0.5 * RATE), np.float32)
    for turn in range(6):
        voice = (MALE, FEMALE)[turn % 2]
        wav = voices[voice][turn // 2 % 4]
        pieces += [gap, wav]
        clock += 0.5
        reference.append(Segment(clock, clock + len(wav) / RATE, voice))
        clock += len(wav) / RATE
    return np.concatenate(pieces + [gap]), reference


def test_cli_embed_verify_diarize(tmp_path, voices, capsys):
    import soundfile as sf

    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    sf.write(a, voices[MALE][0], RATE)
    sf.write(b, voices[MALE][1], RATE)
    sf.write(c, voices[FEMALE][0], RATE)
    assert main(["embed", str(a), "-o", str(tmp_path / "a.json")]) == 0
    assert len(json.loads((tmp_path / "a.json").read_text())) == 192
    capsys.readouterr()
    assert main(["verify", str(a), str(b)]) == 0 and "same speaker" in capsys.readouterr().out
    assert main(["verify", str(a), str(c)]) == 0 and "different speakers" in capsys.readouterr().out

    wav, reference = _conversation(voices)
    meeting = tmp_path / "meeting.wav"
    sf.write(meeting, wav, RATE)
    assert main(["diarize", str(meeting), "-o", str(tmp_path / "meeting.rttm")]) == 0
    hypothesis = read_rttm(tmp_path / "meeting.rttm")["meeting"]
    assert len({s.speaker for s in hypothesis}) == 2
    assert diarization_error_rate(reference, hypothesis, collar=0.25).der < 0.15
    assert main(["diarize", str(tmp_path / "missing.wav")]) == 2
