"""Pack a speech corpus compactly for a remote training machine that cannot reach this one's disk.

The training split is re-encoded as Opus (24 kbps wideband, transparent enough next to a codec working
at 0.3-6 kbps); the evaluation picks of the other splits stay lossless (16 kHz FLAC) so metrics measured
there match metrics measured here. The packed folder is a normal corpus folder (manifests + audio)
that every recipe reads as it is:

    python scripts/pack_corpus.py data/speech packed/speech --eval-picks 16

Used to carry the offline corpus to a lent GPU machine (64 MiB transfer limit); a real corpus on a
cluster file system needs none of this.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm import tqdm


def _records(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def _write(manifest: Path, records: list[dict]) -> None:
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))


def pack(source: Path, target: Path, kbps: int, eval_picks: int, workers: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    jobs = []
    for split in ("train", "valid", "test_ood"):
        manifest = source / f"{split}.jsonl"
        if not manifest.exists():
            continue
        records = _records(manifest)
        if split != "train":  # the same picks the recipes' evaluation makes (every len // n-th)
            records = records[:: max(1, len(records) // eval_picks)][:eval_picks]
        packed = []
        for record in records:
            suffix = ".opus" if split == "train" else ".flac"
            rel = str(Path(record["path"]).with_suffix(suffix))
            jobs.append((source / record["path"], target / rel, split == "train"))
            packed.append({**record, "path": rel})
        _write(target / f"{split}.jsonl", packed)

    def run(job: tuple[Path, Path, bool]) -> None:
        src, dst, lossy = job
        dst.parent.mkdir(parents=True, exist_ok=True)
        if lossy:
            cmd = ["opusenc", "--quiet", "--bitrate", str(kbps), "--comp", "10", str(src), str(dst)]
            subprocess.run(cmd, check=True)
        else:
            wav, rate = sf.read(str(src))
            sf.write(str(dst), wav, rate, format="FLAC")

    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(run, jobs), total=len(jobs), desc="packing"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--kbps", type=int, default=24)
    parser.add_argument("--eval-picks", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    pack(args.source, args.target, args.kbps, args.eval_picks, args.workers)


if __name__ == "__main__":
    main()
