"""TTS benchmark: intelligibility, zero-shot speaker similarity and speed, peers in the same run.

    OMP_NUM_THREADS=1 python -m bench.tts                         # shipped TTS models, 20 sentences/split
    OMP_NUM_THREADS=1 python -m bench.tts --models runs/x --sentences 6

For each split (``test``: unseen voices of the training engines; ``test_ood``: the held-out festival
engine) the held-out sentences of ``--sentences`` utterances are spoken by

- the recording itself and its codec-rvq resynthesis at the TTS's token rate (the ceilings),
- eSpeak NG and Flite (the peers),
- each speechkit TTS model in its default voice and zero-shot, prompted with *another* utterance
  of the recording's speaker (a voice never seen in training).

Scores: Whisper base word error rate (after ``bench.wer.normalize_text``); speaker similarity
(Resemblyzer cosine) between the output and the prompt; for speechkit models real-time factor on one
thread (text frontend + token decoding + codec decoding, after one warm-up), parameters, checkpoint
size and peak memory. Writes ``bench/results/tts.json`` and ``bench/results/tts_spectrograms.png``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

try:
    from bench import common
except ModuleNotFoundError:  # run as a file: put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
from bench.plots import plot_spectrograms
from bench.recognizers import WhisperBase
from bench.speaker_similarity import SpeakerSimilarity
from bench.tts_peers import available_tts_peers
from bench.wer import corpus_cer, corpus_wer
from speechkit.audio import load_audio
from speechkit.data.manifest import Utterance, read_manifest

logger = logging.getLogger("bench.tts")

SPLITS = ("test", "test_ood")
DEFAULT_MODELS = ("mobilespeech", "ar-tts-fbd", "ar-tts-baseline")
COLUMNS = [
    common.Column("split", "split", align="left"),
    common.Column("system", "system", align="left"),
    common.Column("wer", "WER (Whisper)", "{:.1%}"),
    common.Column("cer", "CER", "{:.1%}"),
    common.Column("similarity", "sim. to prompt", "{:.3f}"),
    common.Column("rtf", "RTF (1 thread)", "{:.3f}"),
    common.Column("params", "params", lambda v: f"{v / 1e6:.2f}M"),
    common.Column("size_mib", "size", "{:.2f} MiB"),
    common.Column("peak_mib", "peak mem", "{:.0f} MiB"),
]


def pick_targets(split: str, count: int) -> list[tuple[Utterance, Utterance]]:
    """(target, prompt) pairs: held-out sentences, each with another utterance of its speaker."""
    targets = common.load_test_set(split, count)
    everything = read_manifest(common.SPEECH_CORPUS_DIR / f"{split}.jsonl")
    pairs = []
    for target in targets:
        others = sorted(
            (u for u in everything if u.speaker == target.speaker and u.path != target.path and u.duration >= 2.0),
            key=lambda u: abs(u.duration - 4.0),
        )
        if others:
            pairs.append((target, others[0]))
    return pairs


def _score(texts: list[str], hypotheses: list[str]) -> dict[str, float]:
    return {"wer": corpus_wer(texts, hypotheses).rate, "cer": corpus_cer(texts, hypotheses).rate}


def _resolve_models(names: list[str]) -> list[str]:
    from speechkit.checkpoint import shipped_checkpoints

    shipped = {c.name for c in shipped_checkpoints()}
    kept = [n for n in names if n in shipped or Path(n).is_dir()]
    for name in set(names) - set(kept):
        logger.warning("skipping %s: not a shipped checkpoint or folder", name)
    return kept


def memory_probe(name: str, text: str) -> None:
    """Load a TTS model and speak one sentence (run in a fresh interpreter by measure_peak_memory)."""
    import speechkit

    speechkit.load(name).synthesize(text)


def evaluate_model(name: str, pairs, prompts, whisper, similarity, split: str) -> list[dict[str, Any]]:
    import torch

    import speechkit
    from speechkit.checkpoint import resolve_checkpoint

    tts = speechkit.load(name)
    folder = resolve_checkpoint(name)
    size = (folder / "model.safetensors").stat().st_size / 2**20
    params = sum(p.numel() for p in tts.model.parameters())
    texts = [t.text for t, _ in pairs]
    rows = []
    with common.one_thread():
        tts.synthesize(texts[0])  # warm-up
        for mode in ("default voice", "zero-shot"):
            outputs, seconds, clock = [], 0.0, common.Stopwatch()
            for (target, _), prompt in zip(pairs, prompts, strict=True):
                with clock, torch.inference_mode():
                    if mode == "default voice":
                        wav = tts.synthesize(target.text)
                    else:
                        wav = tts.synthesize(target.text, prompt=prompt, prompt_sample_rate=16000)
                outputs.append(wav)
                seconds += len(wav) / tts.sample_rate
            hypotheses = [whisper.transcribe(w, tts.sample_rate) for w in outputs]
            sims = [similarity.similarity(w, p) for w, p in zip(outputs, prompts, strict=True)]
            rows.append(
                {
                    "split": split,
                    "system": f"{Path(name).name} ({mode})",
                    **_score(texts, hypotheses),
                    "similarity": float(np.mean(sims)),
                    "rtf": clock.seconds / max(seconds, 1e-9),
                    "params": params,
                    "size_mib": size,
                    "transcripts": hypotheses,
                    "_audio": outputs[0],
                }
            )
    peak = common.measure_peak_memory("bench.tts:memory_probe", (name, texts[0]))
    for row in rows:
        row["peak_mib"] = peak.delta_mib
    return rows


def evaluate_split(split: str, count: int, models: list[str], whisper, similarity) -> tuple[list[dict], list]:
    from speechkit.registry import load

    pairs = pick_targets(split, count)
    texts = [t.text for t, _ in pairs]
    recordings = [load_audio(t.path, target_sample_rate=16000)[0] for t, _ in pairs]
    prompts = [load_audio(p.path, target_sample_rate=16000)[0] for _, p in pairs]
    rows = []

    def reference_row(system: str, audio: list[np.ndarray], extra: dict | None = None) -> dict:
        hypotheses = [whisper.transcribe(w, 16000) for w in audio]
        sims = [similarity.similarity(w, p) for w, p in zip(audio, prompts, strict=True)]
        return {"split": split, "system": system, **_score(texts, hypotheses), "similarity": float(np.mean(sims)),
                "transcripts": hypotheses, "_audio": audio[0], **(extra or {})}  # fmt: skip

    rows.append(reference_row("recording", recordings))
    codec = load("codec-rvq")
    resynth = [codec.decode(codec.encode(w, 16000, 6)) for w in recordings]
    rows.append(reference_row("codec-rvq 6/12 cb resynthesis", resynth))
    for peer in available_tts_peers():
        spoken = [peer.synthesize(t) for t in texts]
        rows.append(reference_row(peer.name, spoken, {"rtf": 1.0 / peer.x_real_time}))
    for name in models:
        rows.extend(evaluate_model(name, pairs, prompts, whisper, similarity, split))
    panels = [("prompt (another utterance of the speaker)", prompts[0])]
    panels += [(r["system"], r.pop("_audio")) for r in rows]
    return rows, panels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--sentences", type=int, default=20, help="per split")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    common.setup_logging(args.verbose)
    models = _resolve_models(args.models)
    whisper, similarity = WhisperBase(num_threads=1), SpeakerSimilarity()
    all_rows = []
    for split in args.splits:
        rows, panels = evaluate_split(split, args.sentences, models, whisper, similarity)
        all_rows.extend(rows)
        if split == args.splits[-1]:
            png = plot_spectrograms(panels[:6], 16000, common.RESULTS_DIR / "tts_spectrograms.png",
                                    title=f"TTS on a held-out sentence ({split})")  # fmt: skip
            print(f"wrote {png}")
    print(common.markdown_table(all_rows, COLUMNS))
    path = common.write_results(common.RESULTS_DIR / "tts.json", {"rows": all_rows, "env": common.environment_info()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
