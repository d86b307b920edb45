"""Speaker bundles in the torch-free runtime: embeddings and verification, and the MSDD decoder.

:class:`SpeakerRuntime` runs an ECAPA-TDNN bundle (``model_kind: "ecapa_tdnn"``) with the call shapes
of ``speechkit``'s ``SpeakerEncoder``::

    embed:  audio [T] or [T, C] at any rate
            -> mono, resampled to the bundle's sample_rate, checked (empty / NaN / Inf / silence)
            -> refused when shorter than min_speech_seconds
            -> pieces of max_embed_seconds (shorter trailing pieces dropped unless alone)
            -> graph "embedder": wav f32 [1, T] -> embedding f32 [1, D] per piece
            -> the length-weighted mean, L2-normalised                          -> float32 [D]
    score:  cosine of two embeddings; AS-norm against the bundle's cohort (cohort.npy, the model's
            unit class prototypes) when extra.speaker.asnorm_top_k > 0
    verify: score >= threshold (calibrated on held-out speakers, extra.speaker.threshold)

It embeds the audio it is given: the SDK's ``SpeakerEncoder.embed`` first trims silence with its
speech detector (``speechkit.speaker.vad``, numpy only); on device, cut the speech first (or pass
recordings that are speech throughout). ``embed`` here equals the SDK's ``embed(..., trim_silence=False)``.

:class:`DiarizationDecoderRuntime` runs an MSDD bundle (``model_kind: "msdd_diarizer"``): per base
step, the multi-scale embeddings [K, T, D] and each speaker's per-scale centroid [S, K, D] give speaker
activity probabilities [S, T]; :meth:`~DiarizationDecoderRuntime.decide` turns them into per-step
decisions as ``speechkit.speaker.diarize.decide_speakers`` does. Speech detection, segmentation and
clustering (which give those inputs) are the SDK's numpy modules ``speechkit.speaker.vad``,
``segmentation`` and ``clustering``: no torch, but not part of this runtime.

Example:
    >>> SpeakerRuntime.open("/no/such/bundle")
    Traceback (most recent call last):
    ...
    speechkit_rt.errors.BundleError: /no/such/bundle: no such bundle folder or .zip
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort

from speechkit_rt.audio_io import prepare_input
from speechkit_rt.bundle import Bundle
from speechkit_rt.errors import AudioError, BundleError
from speechkit_rt.weights import materialize

logger = logging.getLogger(__name__)
_Runtime = TypeVar("_Runtime", bound="_GraphRuntime")

SPEAKER_KIND, DIARIZER_KIND = "ecapa_tdnn", "msdd_diarizer"
EMBEDDER_GRAPH, DECODER_GRAPH = "embedder", "decoder"
MAX_OVERLAP_SPEAKERS = 2  # as speechkit.speaker.diarize: the overlap MSDD was trained on
# extra.speaker / extra.diarization: key -> JSON type (int, float, str, list, None = null allowed)
_SPEAKER_KEYS = {
    "embedding_dim": int, "threshold": float, "cosine_threshold": float, "asnorm_top_k": int,
    "cohort_file": (str, None),
    "min_speech_seconds": float, "max_embed_seconds": float, "n_fft": int, "hop_length": int,
}  # fmt: skip
_DIARIZATION_KEYS = {
    "embedding_dim": int, "num_scales": int, "windows": list, "shifts": list, "threshold": float,
    "speaker_model": str, "max_overlap_speakers": int,
}  # fmt: skip


@dataclass(frozen=True)
class Verification:
    """Result of :meth:`SpeakerRuntime.verify` (as the SDK's ``Verification``)."""

    score: float
    threshold: float
    same_speaker: bool


def as_norm_score(raw: float, enrol_cohort: np.ndarray, test_cohort: np.ndarray, top_k: int) -> float:
    """Adaptive symmetric score normalisation of one trial (Matejka et al. 2017).

    ``((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2`` with the mean and std of each side's
    ``top_k`` largest cohort scores; as ``speechkit.speaker.scoring.as_norm`` for one trial.

    Example:
        >>> round(as_norm_score(0.5, np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.4, 0.5]), top_k=2), 4)
        3.0
    """
    k = min(int(top_k), len(enrol_cohort))
    if k < 2:
        raise ValueError("AS-norm needs at least 2 cohort scores per side (top_k >= 2) for a std")

    def standardise(cohort: np.ndarray) -> float:
        top = -np.partition(-np.asarray(cohort, dtype=np.float64), k - 1)[:k]  # the k largest
        return (raw - top.mean()) / max(float(top.std()), 1e-8)

    return float(0.5 * (standardise(enrol_cohort) + standardise(test_cohort)))


def decide_speakers(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Per-step decisions bool [T, S] from probabilities [S, T]: the most likely speaker always, the
    next ones (up to :data:`MAX_OVERLAP_SPEAKERS` in all) when they pass ``threshold``.

    Example:
        >>> decide_speakers(np.array([[0.9, 0.2, 0.7], [0.1, 0.3, 0.8]]), 0.5).astype(int).tolist()
        [[1, 0], [0, 1], [1, 1]]
    """
    probs = np.asarray(probs)
    order = np.argsort(-probs, axis=0)  # [S, T]
    active = np.zeros(probs.T.shape, dtype=bool)
    steps = np.arange(probs.shape[1])
    active[steps, order[0]] = True
    for rank in range(1, min(MAX_OVERLAP_SPEAKERS, probs.shape[0])):
        speaker = order[rank]
        active[steps, speaker] = probs[speaker, steps] >= threshold
    return active


class _GraphRuntime:
    """What both speaker runtimes share: the bundle checks, one session per graph, the lifetime."""

    KIND = ""
    GRAPH = ""
    SECTION = ""

    def __init__(self, bundle: Bundle, num_threads: int | None, keys: dict[str, Any]) -> None:
        manifest = bundle.manifest
        name, kind = manifest["model_name"], manifest["model_kind"]
        if manifest["task"] != "speaker" or kind != self.KIND:
            raise BundleError(
                f"bundle {name!r} is a {manifest['task']!r} bundle of kind {kind!r}; "
                f"{type(self).__name__} opens speaker bundles of kind {self.KIND!r}"
            )
        graph = bundle.graph(self.GRAPH)
        if graph["runtime"] != "onnxruntime":
            raise BundleError(
                f"graph {self.GRAPH!r} is a {graph['runtime']} graph; this runtime runs onnxruntime"
            )
        self.bundle, self.name, self.kind = bundle, name, kind
        self.sample_rate: int = int(manifest["sample_rate"])
        self.config: dict[str, Any] = _section(manifest, self.SECTION, keys)
        self.num_threads = num_threads
        self._session: ort.InferenceSession | None = None

    @classmethod
    def open(cls: type[_Runtime], path: str | os.PathLike, *, num_threads: int | None = None) -> _Runtime:
        """Open and verify a bundle (folder or .zip): manifest, version, every file's sha256.

        Args:
            path: the bundle folder or .zip.
            num_threads: onnxruntime intra-op threads (None: onnxruntime's default).

        Raises:
            BundleError: the bundle is refused (tampered, unknown version, another task or kind).
        """
        bundle = Bundle.open(path)
        try:
            return cls(bundle, num_threads)
        except BaseException:
            bundle.close()
            raise

    def session(self) -> ort.InferenceSession:
        """The graph's onnxruntime session (derived DFT bases and packed weights rebuilt), made on first use."""
        if self._session is None:
            graph = self.bundle.graph(self.GRAPH)
            session = materialize(self.bundle, self.GRAPH, num_threads=self.num_threads)
            for what, declared, actual in (
                ("inputs", graph["inputs"], session.get_inputs()),
                ("outputs", graph["outputs"], session.get_outputs()),
            ):
                if [t["name"] for t in declared] != [t.name for t in actual]:
                    raise BundleError(
                        f"graph {self.GRAPH!r} ({graph['file']}): {what} are {[t.name for t in actual]}, "
                        f"manifest.json declares {[t['name'] for t in declared]}"
                    )
            self._session = session
        return self._session

    def close(self) -> None:
        """Drop the session and close the bundle (removing a zip's temporary folder)."""
        self._session = None
        self.bundle.close()

    def __enter__(self: _Runtime) -> _Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SpeakerRuntime(_GraphRuntime):
    """Speaker embeddings and verification with a verified ECAPA-TDNN bundle; use :meth:`open`.

    Attributes:
        sample_rate: the rate the graph takes (input at other rates is resampled).
        embedding_dim: D.
        threshold: the calibrated decision threshold of :meth:`verify` (on :meth:`score`'s scale:
            AS-norm units when AS-norm is on).
        cosine_threshold: the threshold calibrated on the same trials for plain cosines (e.g.
            comparing an embedding with a diarization centroid).
        asnorm_top_k: cohort size of AS-norm in :meth:`score` (0: raw cosine).
        min_speech_seconds, max_embed_seconds: the shortest audio :meth:`embed` takes, and the piece
            length longer audio is embedded in (bounded memory), as in the SDK.
    """

    KIND, GRAPH, SECTION = SPEAKER_KIND, EMBEDDER_GRAPH, "speaker"

    def __init__(self, bundle: Bundle, num_threads: int | None = None) -> None:
        super().__init__(bundle, num_threads, _SPEAKER_KEYS)
        c = self.config
        self.embedding_dim = int(c["embedding_dim"])
        self.threshold = float(c["threshold"])
        self.cosine_threshold = float(c["cosine_threshold"])
        self.asnorm_top_k = int(c["asnorm_top_k"])
        self.min_speech_seconds = float(c["min_speech_seconds"])
        self.max_embed_seconds = float(c["max_embed_seconds"])
        self.min_samples = int(c["n_fft"]) // 2 + 1  # the graph's reflect padding needs more than n_fft / 2
        self.hop_length = int(c["hop_length"])
        self.cohort = self._load_cohort(c["cohort_file"])

    def _load_cohort(self, cohort_file: str | None) -> np.ndarray | None:
        if self.asnorm_top_k <= 0:
            return None
        if not cohort_file:
            raise BundleError(
                f"bundle {self.name!r}: extra.speaker.asnorm_top_k is {self.asnorm_top_k} but no cohort_file"
            )
        cohort = self.bundle.load_arrays(cohort_file)["array"]  # hash-checked, never unpickled
        if cohort.ndim != 2 or cohort.shape[1] != self.embedding_dim or len(cohort) < 2:
            raise BundleError(
                f"{cohort_file}: the AS-norm cohort must be [M >= 2, {self.embedding_dim}], got {cohort.shape}"
            )
        if not np.all(np.isfinite(cohort)):
            raise BundleError(f"{cohort_file}: the AS-norm cohort holds NaN or Inf")
        return cohort.astype(np.float32)

    # ---- embeddings -------------------------------------------------------------------------------

    def _run(self, wav: np.ndarray) -> np.ndarray:
        """The graph on one clip [T] at :attr:`sample_rate` -> unit-norm float32 [D]."""
        out = self.session().run(None, {"wav": np.ascontiguousarray(wav, dtype=np.float32)[None]})[0]
        if out.shape != (1, self.embedding_dim):
            raise BundleError(
                f"graph 'embedder' returned shape {out.shape}, expected (1, {self.embedding_dim})"
            )
        return out[0]

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Unit-norm embedding float32 [D] of one recording [T] or [T, C] at ``sample_rate``.

        Raises:
            AudioError: empty, NaN/Inf, all-zero audio, an implausible ``sample_rate``, or audio under
                :attr:`min_speech_seconds` (after resampling).
        """
        wav = prepare_input(wav, sample_rate, self.sample_rate)
        minimum = self.min_speech_seconds * self.sample_rate
        if len(wav) < minimum:
            raise AudioError(
                f"audio of {len(wav) / self.sample_rate:.2f} s is under {self.min_speech_seconds:g} s"
            )
        piece = int(self.max_embed_seconds * self.sample_rate)
        pieces = [wav[i : i + piece] for i in range(0, len(wav), piece)]
        pieces = [p for p in pieces if len(p) >= minimum] or pieces[:1]
        vectors = np.stack([self._run(p) for p in pieces]).astype(np.float64)
        mean = (vectors * np.array([len(p) for p in pieces], dtype=np.float64)[:, None]).sum(axis=0)
        return (mean / max(np.linalg.norm(mean), 1e-8)).astype(np.float32)

    def embed_segments(self, wav: np.ndarray, segments: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] of ``segments`` [N, 2] (start, end seconds) of one mono recording [T] at
        :attr:`sample_rate`, each cut and embedded alone (the SDK's padded batches give the same
        numbers: its masks are padding-exact). For diarization: no minimum length, no resampling.
        """
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or not np.all(np.isfinite(wav)):
            raise AudioError(
                f"embed_segments takes finite mono audio [T] at {self.sample_rate} Hz, got {wav.shape}"
            )
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        bounds = np.clip(np.round(segments * self.sample_rate).astype(np.int64), 0, len(wav))
        out = np.zeros((len(segments), self.embedding_dim), dtype=np.float32)
        for row, (start, end) in enumerate(bounds):
            cut = wav[start:end]
            length = max(len(cut), self.hop_length, self.min_samples)
            out[row] = self._run(np.pad(cut, (0, length - len(cut))))
        return out

    # ---- scoring ----------------------------------------------------------------------------------

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        """Similarity of two embeddings [D]: cosine, AS-normalised when the bundle says so."""
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != (self.embedding_dim,) or b.shape != (self.embedding_dim,):
            raise ValueError(
                f"embeddings must have shape ({self.embedding_dim},), got {a.shape} and {b.shape}"
            )
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise ValueError("embeddings contain NaN or Inf")
        raw = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))
        if self.cohort is None:
            return raw
        return as_norm_score(raw, self.cohort @ a, self.cohort @ b, self.asnorm_top_k)

    def verify(
        self, wav_a: np.ndarray, wav_b: np.ndarray, sample_rate: int, threshold: float | None = None
    ) -> Verification:
        """Are the two recordings the same speaker? :meth:`score` of their embeddings against the threshold."""
        score = self.score(self.embed(wav_a, sample_rate), self.embed(wav_b, sample_rate))
        threshold = self.threshold if threshold is None else float(threshold)
        return Verification(score, threshold, score >= threshold)

    def __repr__(self) -> str:
        return (
            f"SpeakerRuntime({self.name!r}, sample_rate={self.sample_rate}, embedding_dim={self.embedding_dim}, "
            f"threshold={self.threshold:g}, asnorm_top_k={self.asnorm_top_k})"
        )


class DiarizationDecoderRuntime(_GraphRuntime):
    """The MSDD decoder of a verified diarization bundle; use :meth:`open`.

    Attributes:
        num_scales: K; windows, shifts: the scales (seconds, longest first) the decoder was trained on.
        embedding_dim: D of the speaker model it was trained with (``speaker_model``).
        threshold: the probability above which a second speaker is active at a step.
    """

    KIND, GRAPH, SECTION = DIARIZER_KIND, DECODER_GRAPH, "diarization"

    def __init__(self, bundle: Bundle, num_threads: int | None = None) -> None:
        super().__init__(bundle, num_threads, _DIARIZATION_KEYS)
        c = self.config
        self.embedding_dim, self.num_scales = int(c["embedding_dim"]), int(c["num_scales"])
        self.windows = tuple(float(w) for w in c["windows"])
        self.shifts = tuple(float(s) for s in c["shifts"])
        self.threshold = float(c["threshold"])
        self.speaker_model = str(c["speaker_model"])
        if not (len(self.windows) == len(self.shifts) == self.num_scales >= 1):
            raise BundleError(
                f"bundle {self.name!r}: extra.diarization windows/shifts do not match num_scales"
            )

    def decode(self, embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """Speaker activity probabilities float32 [S, T].

        Args:
            embeddings: [K, T, D] the embedding of the segment of each scale nearest each base step.
            centroids: [S, K, D] each clustered speaker's mean embedding at each scale.

        Raises:
            ValueError: wrong shapes (scales, dimension), no step or speaker, NaN/Inf.
        """
        e = np.ascontiguousarray(embeddings, dtype=np.float32)
        c = np.ascontiguousarray(centroids, dtype=np.float32)
        k, d = self.num_scales, self.embedding_dim
        if e.ndim != 3 or e.shape[0] != k or e.shape[2] != d or e.shape[1] < 1:
            raise ValueError(f"embeddings must be [{k}, T >= 1, {d}] (scales, steps, dim), got {e.shape}")
        if c.ndim != 3 or c.shape[1:] != (k, d) or c.shape[0] < 1:
            raise ValueError(f"centroids must be [S >= 1, {k}, {d}] (speakers, scales, dim), got {c.shape}")
        if not (np.all(np.isfinite(e)) and np.all(np.isfinite(c))):
            raise ValueError("embeddings or centroids contain NaN or Inf")
        probs = self.session().run(None, {"embeddings": e[None], "centroids": c[None]})[0]
        if probs.shape != (1, c.shape[0], e.shape[1]):
            raise BundleError(
                f"graph 'decoder' returned shape {probs.shape}, expected (1, {c.shape[0]}, {e.shape[1]})"
            )
        return probs[0]

    def decide(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Per-step decisions bool [T, S] from :meth:`decode`'s probabilities (see :func:`decide_speakers`)."""
        return decide_speakers(probs, self.threshold if threshold is None else float(threshold))

    def __repr__(self) -> str:
        return (
            f"DiarizationDecoderRuntime({self.name!r}, scales={self.windows}, threshold={self.threshold:g})"
        )


def _section(manifest: dict[str, Any], key: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``extra.<key>``, checked: exactly the keys of ``spec``, each of its JSON type."""
    section = manifest["extra"].get(key)
    if not isinstance(section, dict):
        raise BundleError(f"manifest.json: extra.{key} (the model's settings) is missing or not an object")
    missing, unknown = sorted(set(spec) - set(section)), sorted(set(section) - set(spec))
    if missing or unknown:
        raise BundleError(
            f"manifest.json: extra.{key} lacks {missing} / has unknown keys {unknown}: "
            "written by another speechkit version?"
        )
    for name, kind in spec.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not any(_is_json_type(section[name], k) for k in kinds):
            raise BundleError(f"manifest.json: extra.{key}.{name} has the wrong type ({section[name]!r})")
    return section


def _is_json_type(value: Any, kind: Any) -> bool:
    """JSON types as the manifest checks them: bool is no number, an int is a float, None is null."""
    if kind is None:
        return value is None
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)
