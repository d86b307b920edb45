"""Speaker benchmark: verification EER / minDCF and diarization DER, with Resemblyzer in the same run.

    OMP_NUM_THREADS=1 python -m bench.speaker                 # all utterances, 10 meetings per split
    OMP_NUM_THREADS=1 python -m bench.speaker --quick         # smoke run; results go to a temporary folder
    OMP_NUM_THREADS=1 python -m bench.speaker --speaker-model runs/spk/export --diarizer runs/msdd/export

Splits: ``test`` holds unseen voices of the training engines (eSpeak NG, Flite), ``test_ood`` the
held-out festival engine (kal, ked and slt voices; each voice is two pseudo-speakers, the second
with a shifted vocal-tract length, pitch and tempo, so some impostor trials pair a voice with its
own perturbed copy).

Verification: every utterance of a split (``--utterances`` caps it, picked round robin over
speakers) is embedded by speechkit's ECAPA-TDNN and by Resemblyzer (GE2E d-vectors, the peer) from
the same audio, each with its own silence trimming; the trial list is all pairs of utterances
(target = same speaker). Reported: EER, the EER without the impostor trials that pair a voice
with its own perturbed copy ("distinct voices"), minDCF (p_target = 0.01, C_miss = C_fa = 1), miss and
false-alarm rates at the checkpoint's calibrated threshold, trial counts, RTF on one thread (after
a warm-up), parameters, size on disk and peak memory (a fresh interpreter loading the model and
embedding one utterance, above the imports). ECAPA is scored twice: raw cosine, and the API's
``SpeakerEncoder.score`` (AS-norm against the model's class prototypes when the checkpoint enables
it; otherwise the same cosine, and the row is left out).

Diarization: the first ``--meetings`` synthetic meetings of each split (2-4 speakers, about 10 %
overlapped speech, exact RTTM) are diarized with the speaker count estimated, by

- ``single-scale``, ``multiscale`` and ``msdd`` offline (:class:`~speechkit.speaker.diarize.Diarizer`),
- the streaming diarizer with MSDD and with clustering only (12 s window, 1 s hop, 1 s look-ahead;
  audio fed in 0.5 s chunks), whose label delay is measured per emitted segment,
- the peer: Resemblyzer segment embeddings through speechkit's multiscale clustering.

DER is summed over meetings (errors / reference speaker time) at collar 0 and 0.25 s on each side
of every reference boundary, with its missed / false-alarm / confusion parts; overlap is scored.
Also the share of meetings whose speaker count was found exactly, and RTF on one thread.

Targets (issue): ECAPA's EER (API score) below Resemblyzer's on test_ood; MSDD's DER at least 10 % (relative)
below single-scale clustering's; streaming MSDD's DER within 1.5x of offline MSDD's.

Writes ``bench/results/speaker.json``, ``speaker_det.png`` (DET curves) and
``speaker_timeline.png`` (reference vs MSDD on one test meeting).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch  # imported here so the peak-memory baseline includes it

try:
    from bench import common
except ModuleNotFoundError:  # run as a file: put the repository on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
from bench.plots import plot_det_curves, plot_diarization_timeline
from bench.speaker_similarity import SegmentEmbedder, SpeakerSimilarity
from speechkit.audio import load_audio
from speechkit.data.manifest import Utterance
from speechkit.data.meetings import Meeting, read_meetings
from speechkit.errors import AudioError, CheckpointError
from speechkit.speaker.der import NIST_COLLAR, DiarizationErrorRate, diarization_error_rate
from speechkit.speaker.diarize import Diarization
from speechkit.speaker.rttm import Segment, read_rttm
from speechkit.speaker.scoring import equal_error_rate, error_rates, min_dcf
from speechkit.speaker.streaming import StreamingDiarizer

logger = logging.getLogger("bench.speaker")

SPLITS = ("test", "test_ood")
MEETINGS_DIR = common.REPO_ROOT / "data" / "meetings"
SAMPLE_RATE = 16000
P_TARGET = 0.01
COLLARS = (0.0, NIST_COLLAR)
STREAM_WINDOW_SECONDS = 12.0
STREAM_HOP_SECONDS = 1.0
STREAM_LOOKAHEAD_SECONDS = 1.0
STREAM_CHUNK_SECONDS = 0.5
MSDD_MARGIN = 0.9  # "clearly below": MSDD's DER at most 90 % of single-scale's
STREAMING_RATIO = 1.5
QUICK = {"utterances": 24, "meetings": 1}

VERIFICATION_COLUMNS = [
    common.Column("split", "split", align="left"),
    common.Column("system", "system", align="left"),
    common.Column("eer", "EER", "{:.2%}"),
    common.Column("eer_distinct_voices", "EER, distinct voices", "{:.2%}"),
    common.Column("min_dcf", "minDCF(0.01)", "{:.3f}"),
    common.Column("miss_at_threshold", "miss @thr", "{:.1%}"),
    common.Column("false_alarm_at_threshold", "FA @thr", "{:.1%}"),
    common.Column("targets", "target trials"),
    common.Column("nontargets", "non-target"),
    common.Column("rtf", "RTF (1 thread)", "{:.4f}"),
    common.Column("params", "params", lambda v: f"{v / 1e6:.2f}M"),
    common.Column("size_mib", "size", "{:.1f} MiB"),
    common.Column("peak_mib", "peak mem", "{:.0f} MiB"),
]
DIARIZATION_COLUMNS = [
    common.Column("split", "split", align="left"),
    common.Column("system", "system", align="left"),
    common.Column("der", "DER", "{:.1%}"),
    common.Column("missed", "miss", "{:.1%}"),
    common.Column("false_alarm", "FA", "{:.1%}"),
    common.Column("confusion", "conf.", "{:.1%}"),
    common.Column("der_collar", "DER (0.25 s collar)", "{:.1%}"),
    common.Column("count_accuracy", "#spk exact", "{:.0%}"),
    common.Column("rtf", "RTF (1 thread)", "{:.4f}"),
    common.Column("latency_s", "label delay (med/max)", lambda v: f"{v[0]:.2f} / {v[1]:.2f} s"),
    common.Column("params", "params", lambda v: f"{v / 1e6:.2f}M"),
    common.Column("size_mib", "size", "{:.1f} MiB"),
    common.Column("peak_mib", "peak mem", "{:.0f} MiB"),
]
TARGET_COLUMNS = [
    common.Column("target", "target", align="left"),
    common.Column("value", "measured", "{:.2%}"),
    common.Column("goal", "goal", "{:.2%}"),
    common.Column("met", "met", lambda v: "yes" if v else "no"),
]


# ---------------------------------------------------------------------------------- pure helpers
def all_pairs_trials(speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair of utterances as a trial: (first [T], second [T], is_target bool [T]).

    Example:
        >>> first, second, target = all_pairs_trials(["a", "a", "b"])
        >>> first.tolist(), second.tolist(), target.tolist()
        ([0, 0, 1], [1, 2, 2], [True, False, False])
    """
    first, second = np.triu_indices(len(speakers), k=1)
    names = np.asarray(speakers, dtype=object)
    return first, second, names[first] == names[second]


def base_voice(speaker: str) -> str:
    """The engine voice behind a pseudo-speaker id: a trailing ``-<digits>`` (the perturbation copy) dropped.

    Example:
        >>> base_voice("festival-kal_diphone-1"), base_voice("espeak-en-029-m3")
        ('festival-kal_diphone', 'espeak-en-029-m3')
    """
    stem, _, suffix = speaker.rpartition("-")
    return stem if stem and suffix.isdigit() else speaker


def det_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-alarm rate, miss rate) as the threshold sweeps down through every score.

    Example:
        >>> p_fa, p_miss = det_curve(np.array([0.9, 0.6, 0.4, 0.1]), np.array([True, False, True, False]))
        >>> p_fa.tolist(), p_miss.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [1.0, 0.5, 0.5, 0.0, 0.0])
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    ordered = labels[np.argsort(-scores, kind="stable")]
    accepted_targets = np.concatenate([[0], np.cumsum(ordered)])
    accepted_nontargets = np.concatenate([[0], np.cumsum(~ordered)])
    return accepted_nontargets / max((~labels).sum(), 1), 1.0 - accepted_targets / max(labels.sum(), 1)


def verification_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """EER, minDCF(0.01), trial counts and (when a threshold is given) the error rates there.

    Example:
        >>> m = verification_metrics(np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0]), 0.5)
        >>> m["eer"], m["targets"], m["nontargets"], m["miss_at_threshold"]
        (0.0, 2, 2, 0.0)
    """
    labels = np.asarray(labels, dtype=bool)
    eer, eer_threshold = equal_error_rate(scores, labels)
    dcf, _ = min_dcf(scores, labels, p_target=P_TARGET)
    row = {
        "eer": eer,
        "eer_threshold": eer_threshold,
        "min_dcf": dcf,
        "targets": int(labels.sum()),
        "nontargets": int((~labels).sum()),
    }
    if threshold is not None:
        row["threshold"] = threshold
        row["miss_at_threshold"], row["false_alarm_at_threshold"] = error_rates(scores, labels, threshold)
    return row


def corpus_der(results: Sequence[DiarizationErrorRate]) -> dict[str, float]:
    """DER of a set of recordings: every part summed, then divided by the summed reference time.

    Example:
        >>> a = DiarizationErrorRate(0.1, 1.0, 0.0, 0.0, 10.0, {})
        >>> b = DiarizationErrorRate(0.5, 0.0, 5.0, 5.0, 20.0, {})
        >>> {k: round(v, 4) for k, v in corpus_der([a, b]).items()}
        {'der': 0.3667, 'missed': 0.0333, 'false_alarm': 0.1667, 'confusion': 0.1667, 'total_seconds': 30.0}
    """
    total = sum(r.total for r in results)
    parts = {k: sum(getattr(r, k) for r in results) for k in ("missed", "false_alarm", "confusion")}
    if total <= 0:
        return {"der": float("nan"), **{k: float("nan") for k in parts}, "total_seconds": 0.0}
    return {
        "der": sum(parts.values()) / total,
        **{k: v / total for k, v in parts.items()},
        "total_seconds": total,
    }


def check_targets(
    verification: Sequence[dict[str, Any]], diarization: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, the goal it is held to and whether it is met.

    Rows are found by their ``split`` and ``key``; a target whose rows are missing is left out.

    Example:
        >>> v = [{"split": "test_ood", "key": k, "eer": x} for k, x in [("ecapa-api", 0.05), ("peer", 0.08)]]
        >>> d = [{"split": "test", "key": k, "der": x} for k, x in [("single-scale", 0.2), ("msdd", 0.1)]]
        >>> [(t["target"], t["met"]) for t in check_targets(v, d)]
        [('test_ood: EER below Resemblyzer', True), ('test: MSDD DER <= 90% of single-scale', True)]
    """

    def find(rows: Sequence[dict[str, Any]], split: str, key: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["split"] == split and r["key"] == key), None)

    targets = []
    ours, peer = find(verification, "test_ood", "ecapa-api"), find(verification, "test_ood", "peer")
    if ours and peer:
        targets.append(
            {
                "target": "test_ood: EER below Resemblyzer",
                "value": ours["eer"],
                "goal": peer["eer"],
                "met": ours["eer"] < peer["eer"],
            }
        )
    for split in dict.fromkeys(r["split"] for r in diarization):
        single, msdd = find(diarization, split, "single-scale"), find(diarization, split, "msdd")
        stream = find(diarization, split, "streaming-msdd")
        if single and msdd:
            goal = MSDD_MARGIN * single["der"]
            targets.append(
                {
                    "target": f"{split}: MSDD DER <= {MSDD_MARGIN:.0%} of single-scale",
                    "value": msdd["der"],
                    "goal": goal,
                    "met": msdd["der"] <= goal,
                }
            )
        if msdd and stream:
            goal = STREAMING_RATIO * msdd["der"]
            targets.append(
                {
                    "target": f"{split}: streaming DER <= {STREAMING_RATIO}x offline MSDD",
                    "value": stream["der"],
                    "goal": goal,
                    "met": stream["der"] <= goal,
                }
            )
    return targets


# ------------------------------------------------------------------------------------ the models
def checkpoint_facts(name: str, model: torch.nn.Module) -> dict[str, Any]:
    """Name, folder, weights sha256, parameter count (of the loaded ``model``) and size on disk (MiB)."""
    from speechkit.checkpoint import WEIGHTS_FILE, read_card, resolve_checkpoint

    folder = resolve_checkpoint(name)
    return {
        "name": name,
        "path": str(folder),
        "weights_sha256": read_card(folder).get("weights_sha256"),  # results name the exact weights
        "params": sum(p.numel() for p in model.parameters()),
        "size_mib": (folder / WEIGHTS_FILE).stat().st_size / 2**20,
    }


def resemblyzer_facts(similarity: SpeakerSimilarity) -> dict[str, Any]:
    import resemblyzer

    weights = Path(resemblyzer.__file__).with_name("pretrained.pt")
    return {
        "name": similarity.name,
        "params": sum(p.numel() for p in similarity.encoder.parameters()),
        "size_mib": weights.stat().st_size / 2**20,
    }


def load_diarizer(diarizer_name: str, speaker_model: str):
    """The MSDD diarizer (its config names its encoder); clustering only when there is no MSDD checkpoint."""
    import speechkit
    from speechkit.speaker.diarize import Diarizer

    try:
        return speechkit.load(diarizer_name)
    except CheckpointError as error:
        logger.warning(
            "no MSDD checkpoint %r (%s): clustering only, with %s", diarizer_name, error, speaker_model
        )
        return Diarizer.load(speaker_model, None)


# -------------------------------------------------------------------------------- memory probes
def probe_embed(speaker_model: str, wav_path: str) -> None:
    """Load the ECAPA encoder and embed one utterance (run in a fresh interpreter)."""
    import speechkit

    speechkit.load(speaker_model).embed(load_audio(wav_path, SAMPLE_RATE)[0], SAMPLE_RATE)


def probe_resemblyzer(wav_path: str) -> None:
    """Load Resemblyzer and embed one utterance (run in a fresh interpreter)."""
    SpeakerSimilarity().embed(load_audio(wav_path, SAMPLE_RATE)[0], SAMPLE_RATE)


def probe_diarize(diarizer_name: str, speaker_model: str, wav_path: str, streaming: bool) -> None:
    """Load the diarizer and diarize one meeting, offline MSDD or streaming (run in a fresh interpreter)."""
    diarizer = load_diarizer(diarizer_name, speaker_model)
    wav = load_audio(wav_path, SAMPLE_RATE)[0]
    if streaming:
        run_streaming(diarizer, wav, use_msdd=True)
    else:
        diarizer.diarize(wav, SAMPLE_RATE)


def peak_mib(target: str, *args: Any) -> float | None:
    try:
        return common.measure_peak_memory(target, args).delta_mib
    except (RuntimeError, OSError) as error:
        logger.warning("peak memory of %s not measured: %s", target, error)
        return None


# --------------------------------------------------------------------------------- verification
def embed_all(embed: Callable[[np.ndarray], np.ndarray], wavs: Sequence[np.ndarray]) -> tuple[list, float]:
    """Embeddings (None where the system refused the audio) and seconds spent, on one thread."""
    vectors, clock = [], common.Stopwatch()
    with common.one_thread(), torch.inference_mode():
        with contextlib.suppress(AudioError):
            embed(wavs[0])  # warm-up
        for wav in wavs:
            with clock:
                try:
                    vectors.append(embed(wav))
                except AudioError as error:
                    logger.warning("embedding failed: %s", error)
                    vectors.append(None)
    return vectors, clock.seconds


def evaluate_verification(
    split: str, utterances: Sequence[Utterance], encoder, similarity: SpeakerSimilarity | None
) -> tuple[list[dict[str, Any]], list[tuple[str, np.ndarray, np.ndarray]]]:
    """Verification rows of one split and the DET curves (label, p_fa, p_miss) of each system."""
    wavs = [load_audio(u.path, SAMPLE_RATE)[0] for u in utterances]
    systems = {"ecapa": lambda w: encoder.embed(w, SAMPLE_RATE)}
    if similarity is not None:
        systems["peer"] = lambda w: similarity.embed(w, SAMPLE_RATE)
    embedded = {name: embed_all(fn, wavs) for name, fn in systems.items()}
    keep = [i for i in range(len(wavs)) if all(vectors[i] is not None for vectors, _ in embedded.values())]
    audio_seconds = sum(len(wavs[i]) / SAMPLE_RATE for i in keep)
    first, second, labels = all_pairs_trials([utterances[i].speaker for i in keep])
    voices = np.array([base_voice(utterances[i].speaker) for i in keep], dtype=object)
    distinct = labels | (voices[first] != voices[second])  # drops impostors that are a voice's perturbed copy
    base = {
        "split": split,
        "utterances": len(keep),
        "speakers": len({utterances[i].speaker for i in keep}),
        "audio_seconds": audio_seconds,
    }
    rows, curves = [], []

    def add(key: str, system: str, scores: np.ndarray, threshold: float | None, seconds: float) -> None:
        rows.append(
            {
                **base,
                "key": key,
                "system": system,
                **verification_metrics(scores, labels, threshold),
                "eer_distinct_voices": equal_error_rate(scores[distinct], labels[distinct])[0],
                "same_voice_impostors": int((~distinct).sum()),
                "rtf": seconds / max(audio_seconds, 1e-9),
            }
        )
        curves.append((system, *det_curve(scores, labels)))

    ecapa_vectors, ecapa_seconds = embedded["ecapa"]
    vectors = np.stack([ecapa_vectors[i] for i in keep]).astype(np.float64)
    cosine = np.sum(vectors[first] * vectors[second], axis=1)
    name = Path(str(encoder.model.checkpoint_name)).name
    norm = encoder.config.asnorm_top_k > 0
    add(
        "ecapa-cosine" if norm else "ecapa-api",
        f"{name} cosine" + ("" if norm else " (API score)"),
        cosine,
        None if norm else encoder.threshold,
        ecapa_seconds,
    )
    if norm:
        api = np.array([encoder.score(vectors[i], vectors[j]) for i, j in zip(first, second)])
        add("ecapa-api", f"{name} AS-norm (API score)", api, encoder.threshold, ecapa_seconds)
    if similarity is not None:
        peer_vectors, peer_seconds = embedded["peer"]
        peer = np.stack([peer_vectors[i] for i in keep]).astype(np.float64)
        add("peer", similarity.name, np.sum(peer[first] * peer[second], axis=1), None, peer_seconds)
    return rows, curves


# ---------------------------------------------------------------------------------- diarization
def run_offline(diarizer, wav: np.ndarray, method: str) -> tuple[Diarization, float, None]:
    """One offline diarization on one thread: (result, seconds, no delays)."""
    clock = common.Stopwatch()
    with common.one_thread(), clock:
        result = diarizer.diarize(wav, SAMPLE_RATE, method=method)
    return result, clock.seconds, None


def run_streaming(diarizer, wav: np.ndarray, use_msdd: bool) -> tuple[Diarization, float, list[float]]:
    """Stream ``wav`` in 0.5 s chunks on one thread: (result, seconds, label delay of every emitted piece).

    A piece's delay is the stream time when ``accept`` returned it, plus that call's compute time,
    minus the piece's end: what a live caller waits for the label of the piece's last step.
    """
    stream = StreamingDiarizer(
        diarizer, STREAM_WINDOW_SECONDS, STREAM_HOP_SECONDS, STREAM_LOOKAHEAD_SECONDS, use_msdd=use_msdd
    )
    chunk, clock, delays = int(STREAM_CHUNK_SECONDS * SAMPLE_RATE), common.Stopwatch(), []
    with common.one_thread():
        for start in range(0, len(wav), chunk):
            began = time.perf_counter()
            with clock:
                pieces = stream.accept(wav[start : start + chunk])
            now = min(start + chunk, len(wav)) / SAMPLE_RATE + time.perf_counter() - began
            delays.extend(now - piece.end for piece in pieces)
        with clock:
            result = stream.finish()
    return result, clock.seconds, delays


def reference_segments(meeting: Meeting) -> list[Segment]:
    file_id = Path(meeting.path).stem
    return read_rttm(MEETINGS_DIR / meeting.rttm)[file_id]


def diarization_systems(diarizer, peer_diarizer) -> list[tuple[str, str, Callable]]:
    """(key, row name, run(wav) -> (result, seconds, delays)) of every diarization system available."""
    has_msdd = diarizer.msdd is not None
    systems = [
        ("single-scale", "single-scale clustering", lambda w: run_offline(diarizer, w, "single-scale")),
        ("multiscale", "multi-scale clustering", lambda w: run_offline(diarizer, w, "multiscale")),
    ]
    if has_msdd:
        systems.append(("msdd", "MSDD", lambda w: run_offline(diarizer, w, "msdd")))
        systems.append(("streaming-msdd", "streaming MSDD", lambda w: run_streaming(diarizer, w, True)))
    systems.append(
        ("streaming-clustering", "streaming clustering", lambda w: run_streaming(diarizer, w, False))
    )
    if peer_diarizer is not None:
        systems.append(
            (
                "peer-multiscale",
                "Resemblyzer + multi-scale clustering",
                lambda w: run_offline(peer_diarizer, w, "multiscale"),
            )
        )
    return systems


def summarize_system(split: str, key: str, system: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the per-meeting records of one system (DER summed over meetings).

    Example:
        >>> der = DiarizationErrorRate(0.1, 1.0, 0, 0, 10.0, {})
        >>> zero = DiarizationErrorRate(0, 0, 0, 0, 8.0, {})
        >>> r = {"der": der, "der_collar": zero, "num_speakers": 2, "true_speakers": 2, "seconds": 1.0,
        ...      "duration": 20.0, "delays": None}
        >>> row = summarize_system("test", "msdd", "MSDD", [r])
        >>> row["der"], row["der_collar"], row["count_accuracy"], row["rtf"], row["latency_s"]
        (0.1, 0.0, 1.0, 0.05, None)
    """
    no_collar = corpus_der([r["der"] for r in records])
    delays = [d for r in records for d in (r["delays"] or [])]
    counts = [(r["num_speakers"], r["true_speakers"]) for r in records]
    return {
        "split": split,
        "key": key,
        "system": system,
        "meetings": len(records),
        **no_collar,
        "der_collar": corpus_der([r["der_collar"] for r in records])["der"],
        "count_accuracy": float(np.mean([est == true for est, true in counts])),
        "speaker_counts": counts,
        "rtf": sum(r["seconds"] for r in records) / max(sum(r["duration"] for r in records), 1e-9),
        "latency_s": [float(np.median(delays)), float(np.max(delays))] if delays else None,
    }


def evaluate_diarization(
    split: str, meetings: Sequence[Meeting], systems: Sequence[tuple[str, str, Callable]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """Rows per system, per-meeting records, and the first meeting's reference and MSDD output."""
    records: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in systems}
    timeline = None
    for number, meeting in enumerate(meetings):
        wav = load_audio(MEETINGS_DIR / meeting.path, SAMPLE_RATE)[0]
        reference = reference_segments(meeting)
        for key, _, run in systems:
            result, seconds, delays = run(wav)
            der, der_collar = (diarization_error_rate(reference, result.segments, collar=c) for c in COLLARS)
            records[key].append(
                {
                    "meeting": Path(meeting.path).stem,
                    "duration": meeting.duration,
                    "der": der,
                    "der_collar": der_collar,
                    "num_speakers": result.num_speakers,
                    "true_speakers": len(meeting.speakers),
                    "seconds": seconds,
                    "delays": delays,
                }
            )
            logger.info(
                "%s %s %s: DER %.1f%%, %d speakers (%d)",
                split,
                Path(meeting.path).stem,
                key,
                100 * der.der,
                result.num_speakers,
                len(meeting.speakers),
            )
            if number == 0 and key == "msdd":
                timeline = {
                    "meeting": Path(meeting.path).stem,
                    "reference": reference,
                    "hypothesis": result.segments,
                    "mapping": der.mapping,
                    "der": der.der,
                }
    rows = [summarize_system(split, key, system, records[key]) for key, system, _ in systems]
    per_meeting = [
        {"split": split, "system": key, **{k: v for k, v in r.items() if k != "delays"}}
        for key, items in records.items()
        for r in items
    ]
    return rows, per_meeting, timeline


# ----------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speaker-model", default="ecapa-tdnn", help="ECAPA checkpoint name or folder")
    parser.add_argument(
        "--diarizer", default="msdd", help="MSDD checkpoint name or folder (names its encoder)"
    )
    parser.add_argument("--utterances", type=int, default=None, help="per split (default: all)")
    parser.add_argument("--meetings", type=int, default=10, help="per split")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--skip-peer", action="store_true", help="no Resemblyzer rows")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK} per split, temporary results"
    )
    parser.add_argument(
        "--results-dir", default=None, help="default bench/results (a temp folder with --quick)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.utterances = min(args.utterances or QUICK["utterances"], QUICK["utterances"])
        args.meetings = min(args.meetings, QUICK["meetings"])
        args.results_dir = args.results_dir or tempfile.mkdtemp(prefix="bench-speaker-quick-")
    args.results_dir = Path(args.results_dir or common.RESULTS_DIR)
    return args


def add_model_facts(rows: list[dict[str, Any]], facts: dict[str, Any], peak: float | None) -> None:
    for row in rows:
        row.update(params=facts["params"], size_mib=facts["size_mib"], peak_mib=peak)


def run_verification(args: argparse.Namespace, encoder, similarity, facts: dict[str, Any]) -> tuple:
    """Verification rows of every split (with model facts and peak memory), DET curves, utterance counts."""
    rows, curves, counts = [], {}, {}
    for split in args.splits:
        utterances = common.load_test_set(split, args.utterances if args.utterances is not None else 10**9)
        counts[split] = len(utterances)
        split_rows, curves[split] = evaluate_verification(split, utterances, encoder, similarity)
        rows.extend(split_rows)
    probe_wav = str(common.load_test_set(args.splits[0], 1)[0].path)
    ours = [r for r in rows if r["key"] != "peer"]
    add_model_facts(
        ours, facts["ecapa"], peak_mib("bench.speaker:probe_embed", args.speaker_model, probe_wav)
    )
    if similarity is not None:
        peak = peak_mib("bench.speaker:probe_resemblyzer", probe_wav)
        add_model_facts([r for r in rows if r["key"] == "peer"], facts["peer"], peak)
    return rows, curves, counts


def run_diarization(args: argparse.Namespace, diarizer, similarity, facts: dict[str, Any]) -> tuple:
    """Diarization rows of every split (with model facts and peak memory), per-meeting records, timeline."""
    from speechkit.speaker.diarize import Diarizer

    peer = None
    if similarity is not None:
        peer = Diarizer(SegmentEmbedder(similarity), None, scales=diarizer.scales)
    systems = diarization_systems(diarizer, peer)
    rows, per_meeting, timeline = [], [], None
    for split in args.splits:
        meetings = read_meetings(MEETINGS_DIR / f"{split}.jsonl")[: args.meetings]
        split_rows, records, split_timeline = evaluate_diarization(split, meetings, systems)
        rows.extend(split_rows)
        per_meeting.extend(records)
        timeline = timeline or split_timeline
    meeting = str(MEETINGS_DIR / read_meetings(MEETINGS_DIR / f"{args.splits[0]}.jsonl")[0].path)
    probe = "bench.speaker:probe_diarize"
    peaks = {
        "msdd": peak_mib(probe, args.diarizer, args.speaker_model, meeting, False),
        "streaming-msdd": peak_mib(probe, args.diarizer, args.speaker_model, meeting, True),
    }
    for row in rows:
        if row["key"].startswith("peer"):
            add_model_facts([row], facts["peer"], None)
        elif row["key"] in ("msdd", "streaming-msdd"):
            combined = {k: facts["diarizer_encoder"][k] + facts["msdd"][k] for k in ("params", "size_mib")}
            add_model_facts([row], combined, peaks[row["key"]])
        else:
            add_model_facts([row], facts["diarizer_encoder"], None)
    return rows, per_meeting, timeline


def print_tables(verification: list[dict], diarization: list[dict], targets: list[dict]) -> None:
    print("## Verification (all pairs of utterances)\n")
    print(common.markdown_table(verification, VERIFICATION_COLUMNS))
    print("\n## Diarization (speaker count estimated; DER summed over meetings)\n")
    print(common.markdown_table(diarization, DIARIZATION_COLUMNS))
    bound = StreamingDiarizer.latency_seconds(STREAM_HOP_SECONDS, STREAM_LOOKAHEAD_SECONDS)
    print(
        f"\nstreaming: {STREAM_WINDOW_SECONDS:g} s window, {STREAM_HOP_SECONDS:g} s hop, "
        f"{STREAM_LOOKAHEAD_SECONDS:g} s look-ahead: labels at most {bound:g} s late + compute per hop\n"
    )
    print(common.markdown_table(targets, TARGET_COLUMNS))


def main(argv: list[str] | None = None) -> int:
    import speechkit

    args = parse_args(argv)
    common.setup_logging(args.verbose)
    started = time.perf_counter()
    encoder = speechkit.load(args.speaker_model)
    similarity = None if args.skip_peer else SpeakerSimilarity()
    diarizer = load_diarizer(args.diarizer, args.speaker_model)
    diarizer_encoder = diarizer.msdd.config.speaker_model if diarizer.msdd else args.speaker_model
    facts = {
        "ecapa": checkpoint_facts(args.speaker_model, encoder.model),
        "diarizer_encoder": checkpoint_facts(diarizer_encoder, diarizer.encoder.model),
        "msdd": checkpoint_facts(args.diarizer, diarizer.msdd) if diarizer.msdd is not None else None,
        "peer": resemblyzer_facts(similarity) if similarity is not None else None,
    }
    verification, curves, counts = run_verification(args, encoder, similarity, facts)
    diarization, per_meeting, timeline = run_diarization(args, diarizer, similarity, facts)
    targets = check_targets(verification, diarization)
    print_tables(verification, diarization, targets)

    args.results_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"wrote {plot_det_curves(curves, args.results_dir / 'speaker_det.png', 'Speaker verification: DET')}"
    )
    if timeline is not None:
        png = plot_diarization_timeline(
            timeline["reference"],
            timeline["hypothesis"],
            timeline["mapping"],
            args.results_dir / "speaker_timeline.png",
            title=f"{timeline['meeting']}: reference vs MSDD (DER {timeline['der']:.1%})",
        )
        print(f"wrote {png}")
    settings = {
        "models": facts,
        "utterances": counts,
        "meetings": args.meetings,
        "splits": args.splits,
        "p_target": P_TARGET,
        "collars": COLLARS,
        "quick": args.quick,
        "streaming": {
            "window_seconds": STREAM_WINDOW_SECONDS,
            "hop_seconds": STREAM_HOP_SECONDS,
            "lookahead_seconds": STREAM_LOOKAHEAD_SECONDS,
            "chunk_seconds": STREAM_CHUNK_SECONDS,
        },
        "wall_seconds": time.perf_counter() - started,
    }
    results = {
        "settings": settings,
        "verification": verification,
        "diarization": diarization,
        "targets": targets,
        "per_meeting": per_meeting,
    }
    path = common.write_results(args.results_dir / "speaker.json", results)
    print(f"wrote {path} ({settings['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
