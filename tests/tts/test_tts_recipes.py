"""End to end on a tiny corpus: token corpus -> aligner recipe -> MobileSpeech recipe -> export ->
``speechkit.load`` -> synthesis in the default voice and a prompt's voice -> the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechkit.data.speakers import speaker_table
from speechkit.data.speech import build_speech_corpus

pytestmark = pytest.mark.slow


def _speakers() -> list[str]:
    picked: dict[tuple[str, str], str] = {}
    for s in speaker_table(None):
        if s.engine == "espeak-ng":
            picked.setdefault((s.split, s.voice), s.speaker_id)
    by_split: dict[str, list[str]] = {}
    for (split, _), speaker in sorted(picked.items()):
        by_split.setdefault(split, []).append(speaker)
    return [sp for split in ("train", "valid", "test") for sp in by_split[split][:2]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from speechkit.cli import main
    from speechkit.train.token_corpus import encode_corpus

    root = tmp_path_factory.mktemp("tts")
    data, tokens = root / "speech", root / "tokens"
    build_speech_corpus(
        data, hours=0.02, num_workers=1, progress=False, max_utterances_per_speaker=4,
        speaker_ids=_speakers(), held_out_engine=None,
    )  # fmt: skip
    encode_corpus(data.resolve(), "codec-rvq", tokens, ("train", "valid"))
    assert main(["train", "tts-aligner", "--tokens", str(tokens), "--data", str(data), "--run-dir",
                 str(root / "run-aligner"), "--max-steps", "20", "--batch-size", "4"]) == 0  # fmt: skip
    config = root / "tiny.json"
    config.write_text(json.dumps({"dim": 32, "num_heads": 2, "text_layers": 1, "prompt_layers": 1,
                                  "duration_layers": 1, "decoder_layers": 1, "num_codebooks": 2}))  # fmt: skip
    export = root / "mobilespeech"
    assert main(["train", "mobilespeech", "--tokens", str(tokens), "--run-dir", str(root / "run-ms"),
                 "--max-steps", "6", "--batch-size", "4", "--eval-every", "3", "--config", str(config),
                 "--export", str(export)]) == 0  # fmt: skip
    return root, data, tokens, export


def test_aligner_durations_cover_every_frame(trained):
    _, _, tokens, _ = trained
    records = [json.loads(line) for line in (tokens / "train.tokens.jsonl").read_text().splitlines()]
    phonemes = [json.loads(line)["ids"] for line in (tokens / "train.phonemes.jsonl").read_text().splitlines()]
    durations = [json.loads(line)["durations"] for line in (tokens / "train.durations.jsonl").read_text().splitlines()]
    aligned = [(r, p, d) for r, p, d in zip(records, phonemes, durations, strict=True) if d is not None]
    assert len(aligned) >= 0.9 * len(records)
    for record, ids, d in aligned:
        assert len(d) == len(ids) and sum(d) == record["frames"] and min(d) >= 1


def test_exported_model_synthesises_default_and_prompt_voices(trained):
    import speechkit

    _, data, _, export = trained
    card = json.loads((export / "card.json").read_text())
    assert card["task"] == "tts" and card["default_voice"] and card["ledger"]["total_steps"] == 6
    tts = speechkit.load(export)
    audio = tts.synthesize("Hello, world. This is a test.")
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and len(audio) > 0.3 * tts.sample_rate
    chunks = list(tts.stream("First sentence. Second one!"))
    assert len(chunks) == 2
    from speechkit.audio import load_audio

    record = json.loads((data / "test.jsonl").read_text().splitlines()[0])
    prompt, rate = load_audio(data / record["path"])
    cloned = tts.synthesize("Hello, world.", prompt=prompt, prompt_sample_rate=rate, seed=3)
    assert np.isfinite(cloned).all() and len(cloned) > 0


def test_cli_synthesize_writes_audio(trained, tmp_path, capsys):
    import soundfile as sf

    from speechkit.cli import main

    _, _, _, export = trained
    out = tmp_path / "hello.wav"
    assert main(["synthesize", "Hello there.", "-o", str(out), "--model", str(export), "-q"]) == 0
    info = sf.info(out)
    assert info.samplerate == 16000 and info.frames > 0
    assert "real-time factor" in capsys.readouterr().out
    assert main(["synthesize", "...", "-o", str(tmp_path / "x.wav"), "--model", str(export), "-q"]) == 2
    assert not (tmp_path / "x.wav").exists()
