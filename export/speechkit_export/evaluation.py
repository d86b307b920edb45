"""Measure an exported codec against its float32 torch model on real audio: parity, quality, sizes.

The audio (:func:`select_audio`): the bundled speech sample (Festival's slt voice, an engine held out
of every training split) and, when the speech corpus is built, clips of ``valid.jsonl``: a few for
the parity checks and others, disjoint from them, for calibration (GPTQ / decoupleQ Hessians,
int8-static ranges). Without the corpus the bundled sample serves for both, and the notes say so.

Parity (:func:`graph_parity`) runs :func:`speechkit_export.onnx_graphs.check_parity` on each clip and
aggregates: codes equal to the torch encoder's, and the decoder's SNR on the torch codes (so it
measures the decoder graph alone). Quality (:func:`bundle_quality`) codes each clip through the
bundle's own onnxruntime sessions (encoder then decoder) and scores it against the input with
PESQ-WB and STOI, next to the torch model's own round trip.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from speechkit.assets import sample_speech_path
from speechkit.audio import load_audio
from speechkit.errors import AudioError, SpeechkitError
from speechkit_export.onnx_graphs import GraphSpec, check_parity, mel_rvq_initial_phase
from speechkit_rt.bundle import Bundle
from speechkit_rt.weights import materialize

logger = logging.getLogger(__name__)

MAX_SNR_DB = 200.0  # a bit-exact output has infinite SNR; the manifest stores finite numbers only
MAX_CLIP_SECONDS = 6.0
NUM_CALIBRATION_CLIPS = 8
NUM_PARITY_CLIPS = 2  # valid clips besides the bundled sample


@dataclass
class AudioSets:
    """Clips (float32 [T] at the model's rate) for the parity checks and for calibration.

    Attributes:
        parity: the bundled sample first, then held-out corpus clips.
        calibration: clips for calibration (disjoint from ``parity`` when the corpus exists).
        sources: ``{"parity": description, "calibration": description}`` for the manifest.
        notes: what a reader should know (e.g. that the corpus was missing).
    """

    parity: list[np.ndarray]
    calibration: list[np.ndarray]
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _clip(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    return np.ascontiguousarray(wav[: int(MAX_CLIP_SECONDS * sample_rate)], dtype=np.float32)


def _corpus_clips(corpus_dir: Path, sample_rate: int, count: int) -> list[np.ndarray]:
    """``count`` clips of ``valid.jsonl`` spread evenly over the file (it is grouped by speaker)."""
    lines = [line for line in (corpus_dir / "valid.jsonl").read_text().splitlines() if line.strip()]
    step = max(len(lines) // count, 1)
    clips = []
    for line in lines[::step][:count]:
        record = json.loads(line)
        wav, _ = load_audio(corpus_dir / record["path"], target_sample_rate=sample_rate)
        clips.append(_clip(wav, sample_rate))
    return clips


def select_audio(
    sample_rate: int,
    calibration_audio: Sequence[np.ndarray | str | Path] | None = None,
    corpus_dir: str | Path = "data/speech",
) -> AudioSets:
    """The parity and calibration clips of an export (see the module docstring).

    Args:
        sample_rate: the model's rate (files are resampled to it).
        calibration_audio: clips (arrays at ``sample_rate``) or audio files to calibrate on instead
            of the corpus.
        corpus_dir: the speech corpus folder (its ``valid.jsonl``).

    Returns:
        The :class:`AudioSets`.

    Raises:
        AudioError: an unreadable calibration file or an empty calibration list.

    Example:
        >>> sets = select_audio(16000, corpus_dir="/no/corpus")
        >>> len(sets.parity), len(sets.calibration), sets.sources["calibration"]
        (1, 1, 'bundled sample (no /no/corpus/valid.jsonl)')
    """
    sample, _ = load_audio(sample_speech_path(), target_sample_rate=sample_rate)
    sets = AudioSets([_clip(sample, sample_rate)], [], {"parity": "bundled sample"})
    corpus_dir = Path(corpus_dir)
    corpus = corpus_dir / "valid.jsonl"
    if corpus.is_file():
        clips = _corpus_clips(corpus_dir, sample_rate, NUM_CALIBRATION_CLIPS + NUM_PARITY_CLIPS)
        sets.parity += clips[:NUM_PARITY_CLIPS]
        sets.calibration = clips[NUM_PARITY_CLIPS:]
        sets.sources["parity"] = f"bundled sample + {len(clips[:NUM_PARITY_CLIPS])} clips of {corpus}"
        sets.sources["calibration"] = f"{len(sets.calibration)} other clips of {corpus}"
    else:
        sets.calibration = list(sets.parity)
        sets.sources["calibration"] = f"bundled sample (no {corpus})"
        sets.notes.append(
            f"speech corpus not found ({corpus}): parity and calibration both use the bundled sample "
            "(build the corpus with `speechkit data speech` for held-out numbers)"
        )
    if calibration_audio is not None:
        sets.calibration = [_load(item, sample_rate) for item in calibration_audio]
        if not sets.calibration:
            raise AudioError("calibration_audio is empty: give at least one clip")
        sets.sources["calibration"] = f"{len(sets.calibration)} clips given by the caller"
    return sets


def _load(item: np.ndarray | str | Path, sample_rate: int) -> np.ndarray:
    if isinstance(item, (str, Path)):
        item, _ = load_audio(item, target_sample_rate=sample_rate)
    wav = np.asarray(item, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0 or not np.all(np.isfinite(wav)):
        raise AudioError(f"calibration clips must be finite mono arrays [T], got shape {wav.shape}")
    return _clip(wav, sample_rate)


def seconds(clips: Sequence[np.ndarray], sample_rate: int) -> float:
    """Total duration of clips in seconds."""
    return float(sum(len(c) for c in clips) / sample_rate)


def graph_parity(
    model: nn.Module, graphs: Mapping[str, GraphSpec], clips: Sequence[np.ndarray], prefix: str = ""
) -> dict[str, float]:
    """:func:`check_parity` over several clips: frame-weighted code agreement, mean / min decoder SNR.

    Args:
        model: the torch model to compare with (the float32 one, or the quantised one).
        graphs: graphs on disk with their weights in the file.
        clips: float32 [T] clips.
        prefix: prepended to every key (e.g. "export_").

    Returns:
        ``encoder_codes_equal_fraction``, ``encoder_first_codebook_equal_fraction``,
        ``global_codes_equal_fraction`` (with global codes), ``decoder_snr_db`` (mean over clips),
        ``decoder_snr_db_min``, ``decoder_max_abs``, ``partial_decoder_snr_db`` (first half of the
        codebooks). SNRs are capped at ``MAX_SNR_DB`` (bit-exact).
    """
    reports = [check_parity(model, dict(graphs), clip) for clip in clips]
    frames = np.array([r["num_frames"] for r in reports])

    def weighted(key: str) -> float:
        return float(np.sum([r[key] for r in reports] * frames) / np.sum(frames))

    def snr(values: list[float]) -> list[float]:
        return [min(v, MAX_SNR_DB) for v in values]

    out = {
        "encoder_codes_equal_fraction": weighted("codes_equal_fraction"),
        "encoder_first_codebook_equal_fraction": weighted("first_codebook_equal_fraction"),
        "decoder_snr_db": float(np.mean(snr([r["decoder_snr_db"] for r in reports]))),
        "decoder_snr_db_min": float(np.min(snr([r["decoder_snr_db"] for r in reports]))),
        "decoder_max_abs": float(max(r["decoder_max_abs"] for r in reports)),
    }
    if "global_codes_equal_fraction" in reports[0]:
        out["global_codes_equal_fraction"] = weighted("global_codes_equal_fraction")
    if "partial_decoder_snr_db" in reports[0]:
        out["partial_decoder_snr_db"] = float(np.mean(snr([r["partial_decoder_snr_db"] for r in reports])))
    return {prefix + key: value for key, value in out.items()}


def decoder_feeds(
    graph: Mapping, codes: np.ndarray, global_codes: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Inputs of a codec decoder graph from its manifest entry: codes, global codes, Griffin-Lim phase."""
    feeds: dict[str, np.ndarray] = {}
    for spec in graph["inputs"]:
        name = spec["name"]
        if name == "codes":
            feeds[name] = codes.astype(np.int64 if spec["dtype"] == "int64" else np.int32)
        elif name == "global_codes":
            feeds[name] = global_codes
        elif name == "initial_phase":
            feeds[name] = mel_rvq_initial_phase(int(spec["shape"][1]), codes.shape[-1])
    return feeds


def session_round_trip(
    sessions: Mapping[str, ort.InferenceSession], graphs: Mapping[str, Mapping], wav: np.ndarray, hop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode [T] audio with onnxruntime sessions: (codes [1, K, N], audio [T])."""
    padded = np.pad(wav, (0, (-len(wav)) % hop))[None].astype(np.float32)
    codes = sessions["encoder"].run(None, {"wav": padded})[0]
    global_codes = (
        sessions["global_encoder"].run(None, {"wav": padded})[0] if "global_encoder" in sessions else None
    )
    audio = sessions["decoder"].run(None, decoder_feeds(graphs["decoder"], codes, global_codes))[0]
    return codes, audio[0, : len(wav)]


@torch.no_grad()
def torch_round_trip(model: nn.Module, wav: np.ndarray) -> np.ndarray:
    """Encode and decode [T] audio with the torch model (all codebooks): audio [T]."""
    hop = int(model.hop_length)
    padded = torch.from_numpy(np.pad(wav, (0, (-len(wav)) % hop)).astype(np.float32))[None]
    extra = (
        {"global_codes": model.encode_global(padded)} if getattr(model, "global_codebook_sizes", ()) else {}
    )
    return model.decode_codes(model.encode_codes(padded), **extra)[0, : len(wav)].numpy()


def quality(
    references: Sequence[np.ndarray], decoded: Sequence[np.ndarray], sample_rate: int
) -> dict[str, float]:
    """Mean PESQ-WB and STOI of decoded clips against their references; {} without pesq/pystoi or at
    a rate other than 16 kHz (wide-band PESQ is defined there only)."""
    from speechkit import metrics

    if sample_rate != 16000:
        return {}
    try:
        pesq = [metrics.pesq_wb(r, d, sample_rate) for r, d in zip(references, decoded)]
        stoi = [metrics.stoi(r, d, sample_rate) for r, d in zip(references, decoded)]
    except SpeechkitError as err:  # the bench extra is not installed
        logger.warning("quality not measured: %s", err)
        return {}
    finite = [p for p in pesq if math.isfinite(p)]
    out = {"stoi": float(np.mean(stoi))}
    if finite:
        out["pesq_wb"] = float(np.mean(finite))
    return out


def open_sessions(
    bundle_path: str | Path, num_threads: int = 1
) -> tuple[Bundle, dict[str, ort.InferenceSession]]:
    """Open a bundle and materialise an onnxruntime session per graph: (bundle, {name: session}).

    The caller closes the bundle (a zip's temporary folder).
    """
    bundle = Bundle.open(bundle_path)
    try:
        sessions = {name: materialize(bundle, name, num_threads) for name in bundle.manifest["graphs"]}
    except BaseException:
        bundle.close()
        raise
    return bundle, sessions


def open_graph_files(
    graphs: Mapping[str, GraphSpec], num_threads: int = 1
) -> dict[str, ort.InferenceSession]:
    """An onnxruntime session per graph file on disk (graphs with their weights in the file)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    return {
        name: ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])
        for name, spec in graphs.items()
    }
