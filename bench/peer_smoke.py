"""Smoke run of the peer rows the TTS and ASR benchmarks share: recognisers and peer TTS engines.

Run from the repository root (needs the speech corpus and the bench extra)::

    OMP_NUM_THREADS=1 python -m bench.peer_smoke            # 10 utterances of test_ood
    OMP_NUM_THREADS=1 python -m bench.peer_smoke --utterances 4

1. ASR peers: Whisper base (int8, one thread) and PocketSphinx transcribe ``--utterances``
   recordings of the split; corpus WER and CER after :func:`bench.wer.normalize_text`, x real time
   on one thread (after one warm-up utterance that is not timed).
2. TTS peers: eSpeak NG and Flite speak the same utterances' texts; Whisper base transcribes them
   (intelligibility WER, as the TTS benchmark scores speechkit's output), and Resemblyzer scores
   each output against the recording of the same sentence, a voice the peer cannot imitate: the
   "no cloning" floor of the zero-shot similarity column.

Prints two markdown tables and writes ``bench/results/peer_smoke.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

try:
    from bench import common
except ModuleNotFoundError:  # run as a file: put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
from bench.recognizers import PocketSphinx, Recognizer, WhisperBase
from bench.speaker_similarity import SpeakerSimilarity
from bench.tts_peers import available_tts_peers
from bench.wer import corpus_cer, corpus_wer
from speechkit.audio import load_audio

logger = logging.getLogger("bench.peer_smoke")

ASR_COLUMNS = [
    common.Column("system", "recogniser", align="left"),
    common.Column("wer", "WER", "{:.1%}"),
    common.Column("sdi", "S/D/I", align="left"),
    common.Column("cer", "CER", "{:.1%}"),
    common.Column("x_real_time", "x real time (1 thread)", "{:.1f}"),
    common.Column("load_seconds", "load s", "{:.2f}"),
]
TTS_COLUMNS = [
    common.Column("system", "TTS peer", align="left"),
    common.Column("wer", "Whisper WER", "{:.1%}"),
    common.Column("cer", "Whisper CER", "{:.1%}"),
    common.Column("speaker_similarity", "sim. to recording", "{:.3f}"),
    common.Column("x_real_time", "x real time", "{:.1f}"),
]


def score(references: list[str], hypotheses: list[str]) -> dict[str, Any]:
    """Corpus WER (with its S/D/I) and CER of a list of transcripts."""
    words = corpus_wer(references, hypotheses)
    return {
        "wer": words.rate,
        "sdi": f"{words.substitutions}/{words.deletions}/{words.insertions}",
        "reference_words": words.reference_words,
        "cer": corpus_cer(references, hypotheses).rate,
    }


def run_recognizer(recognizer: Recognizer, audio: list[np.ndarray], texts: list[str]) -> dict[str, Any]:
    """Transcribe every clip (one untimed warm-up first) and score it."""
    recognizer.transcribe(audio[0], 16000)
    recognizer.reset_timing()
    hypotheses = [recognizer.transcribe(wav, 16000) for wav in audio]
    row = {"system": recognizer.name, **score(texts, hypotheses), "x_real_time": recognizer.x_real_time}
    row["load_seconds"] = getattr(recognizer, "load_seconds", None)
    row["transcripts"] = hypotheses
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="test_ood")
    parser.add_argument("--utterances", type=int, default=10)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    common.setup_logging(args.verbose)

    utterances = common.load_test_set(args.split, args.utterances)
    texts = [u.text for u in utterances]
    audio = [load_audio(u.path, target_sample_rate=16000)[0] for u in utterances]
    whisper = WhisperBase(num_threads=1)
    asr_rows = [run_recognizer(whisper, audio, texts), run_recognizer(PocketSphinx(), audio, texts)]

    similarity = SpeakerSimilarity()
    tts_rows = []
    with common.one_thread():
        for peer in available_tts_peers():
            spoken = [peer.synthesize(text) for text in texts]
            hypotheses = [whisper.transcribe(wav, 16000) for wav in spoken]
            cosines = [similarity.similarity(out, ref) for out, ref in zip(spoken, audio)]
            tts_rows.append(
                {
                    "system": peer.name,
                    **score(texts, hypotheses),
                    "speaker_similarity": float(np.mean(cosines)),
                    "x_real_time": peer.x_real_time,
                    "transcripts": hypotheses,
                }
            )

    seconds = sum(len(wav) for wav in audio) / 16000
    print(f"## ASR peers: {len(audio)} utterances of {args.split} ({seconds:.1f} s)\n")
    print(common.markdown_table(asr_rows, ASR_COLUMNS))
    print(f"\n## TTS peers: the same {len(texts)} sentences, transcribed by Whisper base\n")
    print(common.markdown_table(tts_rows, TTS_COLUMNS))
    path = common.write_results(
        common.RESULTS_DIR / "peer_smoke.json",
        {
            "split": args.split,
            "references": texts,
            "paths": [os.path.relpath(u.path, common.REPO_ROOT) for u in utterances],
            "asr": asr_rows,
            "tts": tts_rows,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
