"""Fit the mel-rvq-demo codec: ResidualVQ (k-means + EMA) on log-mel frames of the speech corpus.

    speechkit train mel-rvq-demo --data data/speech --out speechkit/checkpoints/mel-rvq-demo

No gradients are involved, so this recipe does not use the Trainer: it streams batches of frames
through the quantizer in training mode (k-means init, EMA updates, dead-code restart), then measures
the log-mel distance and codebook use on the validation split and writes the checkpoint with its card.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import torch
from tqdm import tqdm

from speechkit.audio import load_audio
from speechkit.checkpoint import save_checkpoint
from speechkit.codec.mel_rvq import MelRVQCodec, MelRVQCodecConfig
from speechkit.data.manifest import read_manifest

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="data/speech", help="speech corpus folder (speechkit data speech)")
    parser.add_argument("--out", default="runs/mel-rvq-demo", help="checkpoint folder to write")
    parser.add_argument("--steps", type=int, default=600, help="quantizer update steps")
    parser.add_argument("--frames-per-step", type=int, default=4096)
    parser.add_argument("--max-utterances", type=int, default=600, help="training utterances to read")
    parser.add_argument("--seed", type=int, default=0)


def _features(model: MelRVQCodec, manifest: Path, limit: int) -> torch.Tensor:
    """Raw log-mel frames [n_mels, total_frames] of up to ``limit`` utterances."""
    records = read_manifest(manifest)[:limit]
    frames = []
    for record in tqdm(records, desc=f"features {manifest.stem}", leave=False):
        wav, _ = load_audio(record.path, target_sample_rate=model.sample_rate)
        with torch.no_grad():
            frames.append(model.mel(torch.from_numpy(wav)[None])[0])
    return torch.cat(frames, dim=-1)


def fit(model: MelRVQCodec, train: torch.Tensor, steps: int, frames_per_step: int, seed: int) -> None:
    """Set the feature normalisation and fit the quantizer on frames [n_mels, N] (in place)."""
    model.feature_mean.copy_(train.mean(dim=1))
    model.feature_std.copy_(train.std(dim=1).clamp_min(1e-3))
    normalised = (train - model.feature_mean[:, None]) / model.feature_std[:, None]
    generator = torch.Generator().manual_seed(seed)
    model.quantizer.train()
    with torch.no_grad():
        for _ in tqdm(range(steps), desc="fit quantizer"):
            idx = torch.randint(normalised.shape[1], (frames_per_step,), generator=generator)
            model.quantizer(normalised[:, idx][None])
    model.eval()


def evaluate(model: MelRVQCodec, frames: torch.Tensor) -> dict[str, float]:
    """Mean absolute log-mel error of the quantized frames, and per-stage codebook use."""
    normalised = (frames - model.feature_mean[:, None]) / model.feature_std[:, None]
    with torch.no_grad():
        codes = model.quantizer.encode(normalised[None])
        decoded = model.quantizer.decode(codes)[0] * model.feature_std[:, None] + model.feature_mean[:, None]
    usage = [len(torch.unique(codes[0, k])) / model.config.codebook_size for k in range(codes.shape[1])]
    return {
        "log_mel_l1": round(float((decoded - frames).abs().mean()), 4),
        "min_codebook_usage": round(min(usage), 3),
    }


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    data = Path(args.data)
    model = MelRVQCodec(MelRVQCodecConfig())
    start = time.time()
    train = _features(model, data / "train.jsonl", args.max_utterances)
    valid = _features(model, data / "valid.jsonl", 100)
    fit(model, train, args.steps, args.frames_per_step, args.seed)
    metrics = {"valid": evaluate(model, valid)}
    if (data / "test_ood.jsonl").exists():
        metrics["test_ood"] = evaluate(model, _features(model, data / "test_ood.jsonl", 100))
    card = {
        "task": "codec",
        "description": "Demo codec: ResidualVQ over log-mel frames, Griffin-Lim resynthesis (a floor, not a product).",
        "data": f"speechkit data speech ({args.max_utterances} train utterances of {data})",
        "bitrate_bps": model.frame_rate * 8 * model.config.num_quantizers,
        "metrics": metrics,
        "headline_metrics": {
            "kbps": model.frame_rate * 8 * model.config.num_quantizers / 1000,
            "ood log-mel L1": metrics.get("test_ood", metrics["valid"])["log_mel_l1"],
        },
        "ledger": [
            {
                "steps": args.steps,
                "wall_hours": round((time.time() - start) / 3600, 4),
                "hardware": f"{platform.processor() or platform.machine()}, CPU",
                "metrics": metrics,
            }
        ],
        "recipe": "speechkit train mel-rvq-demo",
    }
    save_checkpoint(model, args.out, card)
    print(f"wrote {args.out}: {metrics}")
    return 0
