"""Build a small instrumental music corpus from music21's bundled scores, rendered with FluidSynth.

Pieces come from the scores that ship inside the music21 package (Bach chorales, Beethoven and
Haydn quartets, Mozart, Monteverdi madrigals, Palestrina masses, Joplin, folk tunes ...), so no
download is needed. Each excerpt (10-20 s of measures) is re-scored for one General MIDI ensemble
(piano, strings, organ, woodwinds, guitar ...) at a new tempo, written to MIDI by music21 and
rendered by ``fluidsynth`` with the FluidR3 GM soundfont, then mixed to mono and loudness-normalised.

Splits are by piece: every excerpt of a piece lands in the same split, so test music is unheard.

Layout::

    out_dir/music/<composer>/<piece>-<hash>.wav (+ .json with its tags)   16-bit mono
    out_dir/{train,valid,test}.jsonl                                      AudioClip manifests
    out_dir/corpus.json                                                   summary

Example:
    >>> piece_split_table(["bach/a.mxl", "bach/b.mxl", "mozart/c.mxl"])["mozart/c.mxl"] in SPLITS
    True
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechkit.data.manifest import AudioClip, write_manifest
from speechkit.data.music_render import SOUNDFONT, parse_piece, read_sidecar, render_excerpt
from speechkit.data.speech import hash_seed
from speechkit.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
COMPOSERS = (
    "bach", "beethoven", "mozart", "haydn", "handel", "schumann_robert", "schumann_clara", "chopin",
    "joplin", "corelli", "cpebach", "monteverdi", "palestrina", "josquin", "trecento", "ciconia",
    "verdi", "weber", "johnson_j_r", "liliuokalani", "lusitano", "ryansMammoth", "schoenberg", "webern",
)  # fmt: skip
# Score formats with notes (not roman-numeral analyses) and a size cap that keeps parsing to seconds.
_MAX_KB = {".mxl": 150, ".krn": 150, ".abc": 20, ".xml": 400, ".musicxml": 400}
# GM programs per ensemble; the last entry plays the lowest part (see render_excerpt).
ENSEMBLES: dict[str, tuple[int, ...]] = {
    "piano": (0,),
    "harpsichord": (6,),
    "organ": (19,),
    "strings": (40, 40, 41, 42),
    "string_ensemble": (48,),
    "flute": (73,),
    "woodwinds": (73, 68, 71, 70),
    "brass": (56, 60, 57, 58),
    "guitar": (24,),
    "choir": (52,),
    "vibraphone": (11,),
    "clarinet": (71,),
}
EXCERPTS_PER_PIECE = 2
RENDER_VERSION = 2  # part of every file name: bump when rendering changes so old wavs are not reused
MEAN_EXCERPT_SECONDS = 17.5  # measured: measure rounding and the 3 s ring-out lengthen 10-20 s plans


@functools.lru_cache(maxsize=4)
def candidate_pieces(composers: tuple[str, ...] = COMPOSERS) -> dict[str, tuple[str, ...]]:
    """Bundled score files per composer, as paths relative to music21's corpus folder (sorted; cached)."""
    try:
        from music21 import corpus
    except ImportError as err:
        raise DataError("music21 is not installed; `pip install music21` (speechkit[data])") from err
    root = Path(corpus.__file__).parent
    out = {}
    for composer in composers:
        paths = []
        for path in corpus.getComposer(composer):
            path = Path(path)
            limit = _MAX_KB.get(path.suffix.lower())
            if limit is not None and path.stat().st_size <= limit * 1024:
                paths.append(path.relative_to(root).as_posix())
        out[composer] = tuple(sorted(paths))
    return out


def select_pieces(
    num_pieces: int, seed: int, composers: tuple[str, ...] = COMPOSERS
) -> list[tuple[str, str]]:
    """``num_pieces`` (composer, piece) pairs, drawn round-robin over composers for variety."""
    pools = {
        c: random.Random(hash_seed(seed, c)).sample(list(p), len(p))
        for c, p in candidate_pieces(composers).items()
    }
    chosen: list[tuple[str, str]] = []
    while len(chosen) < num_pieces and any(pools.values()):
        for composer in composers:
            if pools[composer] and len(chosen) < num_pieces:
                chosen.append((composer, pools[composer].pop()))
    return chosen


def piece_split_table(pieces: list[str]) -> dict[str, str]:
    """Assign pieces to splits by ranking a hash of their path: ~10 % test, ~10 % valid (>= 1 each from 3 pieces)."""
    ranked = sorted(pieces, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    held = max(1, round(0.1 * len(ranked))) if len(ranked) >= 3 else 0
    return {p: "test" if i < held else "valid" if i < 2 * held else "train" for i, p in enumerate(ranked)}


def _plan_excerpts(composer: str, piece: str, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(hash_seed(seed, piece))
    plans = []
    ensembles = rng.sample(sorted(ENSEMBLES), EXCERPTS_PER_PIECE)  # each excerpt sounds different
    for index, ensemble in enumerate(ensembles):
        plan = {
            "composer": composer,
            "piece": piece,
            "index": index,
            "ensemble": ensemble,
            "programs": list(ENSEMBLES[ensemble]),
            "tempo_bpm": rng.randint(60, 140),
            "target_seconds": round(rng.uniform(10.0, 20.0), 2),
            "start_fraction": round(rng.random(), 4),
            "render_version": RENDER_VERSION,
        }
        digest = hashlib.sha1(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:10]
        stem = Path(piece).stem.replace(" ", "_")
        plan["path"] = f"music/{composer}/{stem}-{digest}.wav"
        plans.append(plan)
    return plans


def _render_piece(job: dict[str, Any]) -> dict[str, Any]:
    """Worker: render (or reuse) every excerpt of one piece."""
    out_dir, clips, failures = Path(job["out_dir"]), [], []
    score = None  # parsed on first need: a fully rendered piece is never parsed again
    for plan in job["plans"]:
        try:
            tags = read_sidecar(out_dir / plan["path"])
            if tags is None:
                score = score if score is not None else parse_piece(plan["piece"])
                tags = render_excerpt(score, plan, out_dir / plan["path"], job["sample_rate"])
        except DataError as err:
            logger.warning("skipping %s excerpt %d: %s", plan["piece"], plan["index"], err)
            failures.append({"piece": plan["piece"], "index": plan["index"], "error": str(err)})
            continue
        clips.append({"path": plan["path"], "duration": tags.pop("duration"), "tags": tags})
    return {"clips": clips, "failures": failures}


def build_music_corpus(
    out_dir: str | Path,
    minutes: float = 20.0,
    seed: int = 0,
    sample_rate: int = 24000,
    num_workers: int = 2,
    progress: bool = True,
) -> dict[str, Path]:
    """Render music excerpts from music21's bundled corpus into ``out_dir``.

    Args:
        out_dir: corpus folder (excerpts already rendered are reused).
        minutes: approximate total audio (two excerpts of 10-20 s per piece).
        seed: picks pieces, excerpts, ensembles and tempi; same seed, same manifests.
        sample_rate: render rate in Hz.
        num_workers: render processes (1 runs in this process).
        progress: show a tqdm bar.

    Returns:
        Split name -> manifest path.

    Raises:
        DataError: fluidsynth, the soundfont or music21 missing, or a split left empty.
    """
    start = time.monotonic()
    if minutes <= 0:
        raise DataError(f"minutes must be > 0, got {minutes}")
    from speechkit.data.engines import require_tool

    require_tool("fluidsynth")
    if not Path(SOUNDFONT).is_file():
        raise DataError(
            f"soundfont {SOUNDFONT} missing; install it with `apt-get install fluid-soundfont-gm`"
        )
    out_dir = Path(out_dir)
    num_pieces = max(3, round(minutes * 60 / (MEAN_EXCERPT_SECONDS * EXCERPTS_PER_PIECE)))
    pieces = select_pieces(num_pieces, seed)
    splits = piece_split_table([p for _, p in pieces])
    jobs = [
        {"plans": _plan_excerpts(c, p, seed), "out_dir": str(out_dir), "sample_rate": sample_rate}
        for c, p in pieces
    ]
    results = _run(jobs, num_workers, progress)
    by_split: dict[str, list[AudioClip]] = {s: [] for s in SPLITS}
    failures = []
    for (_, piece), result in zip(pieces, results):
        failures.extend(result["failures"])
        for clip in result["clips"]:
            record = AudioClip(
                clip["path"], "music", clip["duration"], sample_rate, splits[piece], clip["tags"]
            )
            by_split[record.split].append(record)
    paths = {}
    for split in SPLITS:
        if not by_split[split]:
            raise DataError(
                f"split {split} of the music corpus is empty; see the warnings for failed excerpts"
            )
        paths[split] = write_manifest(out_dir / f"{split}.jsonl", by_split[split])
    summary = {
        "kind": "music",
        "seed": seed,
        "sample_rate": sample_rate,
        "pieces": {s: sorted({c.tags["piece"] for c in by_split[s]}) for s in SPLITS},
        "excerpts": {s: len(by_split[s]) for s in SPLITS},
        "minutes": {s: round(sum(c.duration for c in by_split[s]) / 60, 3) for s in SPLITS},
        "composers": sorted({c.tags["composer"] for s in SPLITS for c in by_split[s]}),
        "ensembles": sorted({c.tags["instrument"] for s in SPLITS for c in by_split[s]}),
        "failures": failures,
        "build_seconds": round(time.monotonic() - start, 1),
    }
    (out_dir / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return paths


def _run(jobs: list[dict[str, Any]], num_workers: int, progress: bool) -> list[dict[str, Any]]:
    bar = tqdm(total=len(jobs), unit="piece", desc="music corpus", disable=not progress)
    results: list[Any] = [None] * len(jobs)
    if num_workers <= 1:
        for index, job in enumerate(jobs):
            results[index] = _render_piece(job)
            bar.update(1)
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a parent holding torch threads
        with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
            futures = {pool.submit(_render_piece, job): i for i, job in enumerate(jobs)}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    bar.close()
    return results
