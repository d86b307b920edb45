"""A speech corpus encoded once by a codec: every utterance's tokens, for token-level training.

TTS (the masked and the autoregressive decoders), music LMs, enhancement and ASR pre-training all
train on codec tokens rather than audio, so encoding is done once per corpus split and stored as

    <out>/<split>.tokens.safetensors   codes [K, N_total] int16, offsets [U + 1] int64
                                       (+ global_codes [U, G] for codecs with global codes)
    <out>/<split>.tokens.jsonl         one record per utterance (manifest fields + frames)
    <out>/tokens.json                  codec name, weights fingerprint, frame rate, codebook sizes

Utterance ``u``'s codes are ``codes[:, offsets[u]:offsets[u + 1]]``. No pickle anywhere.

    python -m speechkit.train.token_corpus --data data/speech --codec codec-rvq --out data/tts
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from speechkit.audio import load_audio
from speechkit.data.manifest import Utterance, read_manifest
from speechkit.errors import DataError
from speechkit.registry import load

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test", "test_ood")
INDEX_FILE = "tokens.json"


@dataclasses.dataclass(frozen=True)
class TokenSplit:
    """One split's tokens: ``codes(u)`` [K, N_u] int64 for utterance u, with its manifest record."""

    records: list[dict]
    codes_table: np.ndarray  # [K, N_total] int16
    offsets: np.ndarray  # [U + 1] int64
    global_codes: np.ndarray | None = None  # [U, G] int64, for codecs with a global embedding

    def __len__(self) -> int:
        return len(self.records)

    def codes(self, index: int) -> np.ndarray:
        return self.codes_table[:, self.offsets[index] : self.offsets[index + 1]].astype(np.int64)


def read_token_split(folder: str | Path, split: str) -> TokenSplit:
    """Load ``<folder>/<split>.tokens.*`` written by :func:`encode_corpus`."""
    folder = Path(folder)
    table, index = folder / f"{split}.tokens.safetensors", folder / f"{split}.tokens.jsonl"
    if not table.exists() or not index.exists():
        raise DataError(f"no token split {split!r} in {folder}: run python -m speechkit.train.token_corpus")
    arrays = load_file(str(table))
    records = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
    if len(records) + 1 != len(arrays["offsets"]):
        raise DataError(f"{index} has {len(records)} records but the table holds {len(arrays['offsets']) - 1}")
    global_codes = arrays["global_codes"].astype(np.int64) if "global_codes" in arrays else None
    return TokenSplit(records, arrays["codes"], arrays["offsets"], global_codes)


def read_token_index(folder: str | Path) -> dict:
    path = Path(folder) / INDEX_FILE
    if not path.exists():
        raise DataError(f"{path} is missing: run python -m speechkit.train.token_corpus")
    return json.loads(path.read_text())


@torch.inference_mode()
def encode_corpus(data: Path, codec_name: str, out: Path, splits: tuple[str, ...] = SPLITS) -> None:
    """Encode every utterance of ``data/<split>.jsonl`` with all of the codec's codebooks."""
    codec = load(codec_name)
    out.mkdir(parents=True, exist_ok=True)
    index = {
        "codec": codec_name,
        "codec_kind": codec.kind,
        "fingerprint": codec.fingerprint,
        "frame_rate": codec.frame_rate,
        "sample_rate": codec.sample_rate,
        "hop_length": int(codec.model.hop_length),
        "codebook_sizes": list(codec.codebook_sizes),
        "global_codebook_sizes": list(codec.global_codebook_sizes),
    }
    for split in splits:
        manifest = data / f"{split}.jsonl"
        if not manifest.exists():
            logger.warning("skipping %s: %s is missing", split, manifest)
            continue
        records, chunks, offsets, global_codes = [], [], [0], []
        for utt in tqdm(read_manifest(manifest), desc=f"encode {split}", unit="utt"):
            wav, _ = load_audio(utt.path, target_sample_rate=codec.sample_rate)
            tokens = codec.encode(wav, codec.sample_rate)
            codes = tokens.codes[0]  # [K, N]
            if "global_codes" in tokens.extras:
                global_codes.append(np.asarray(tokens.extras["global_codes"])[0])
            chunks.append(codes.astype(np.int16))
            offsets.append(offsets[-1] + codes.shape[1])
            records.append(_record(utt, data, codes.shape[1], len(wav)))
        arrays = {"codes": np.concatenate(chunks, axis=1), "offsets": np.asarray(offsets, dtype=np.int64)}
        if global_codes:
            arrays["global_codes"] = np.stack(global_codes).astype(np.int64)
        save_file(arrays, str(out / f"{split}.tokens.safetensors"))
        (out / f"{split}.tokens.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        logger.info("%s: %d utterances, %d frames", split, len(records), offsets[-1])
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def _record(utt: Utterance, data: Path, frames: int, num_samples: int) -> dict:
    path = Path(utt.path)
    return {
        "path": str(path.relative_to(data.resolve()) if path.is_relative_to(data.resolve()) else path),
        "text": utt.text,
        "speaker": utt.speaker,
        "engine": utt.engine,
        "split": utt.split,
        "frames": int(frames),
        "num_samples": int(num_samples),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/speech")
    parser.add_argument("--codec", default="codec-rvq")
    parser.add_argument("--out", default="data/tts")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    encode_corpus(Path(args.data).resolve(), args.codec, Path(args.out), tuple(args.splits))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
