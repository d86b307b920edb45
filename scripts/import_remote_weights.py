"""Turn the EMA weights of a training run on another machine into a shipped checkpoint, with its ledger.

When a lent GPU machine could not write the checkpoint itself (it is given back when idle, and only a
few files come back), fetch ``checkpoints/last/ema.safetensors`` of its run folder (fp16 is enough) and:

    python scripts/import_remote_weights.py codec-rvq rvq.safetensors --steps 2942 --hours 0.148 \\
        --device "NVIDIA H100 80GB HBM3" --batch-size 32 --note "4 runs shared the GPU" \\
        --init-from speechkit/checkpoints/codec-rvq --export speechkit/checkpoints/codec-rvq

The weights are loaded strictly into the recipe's model, evaluated here on the corpus's valid and
test_ood picks (PESQ needs the bench extra), and written like the recipe's own ``--export``: fp16
weights, a card with metrics and the ledger summary, and ``ledger.jsonl`` that continues the
``--init-from`` checkpoint's ledger with one ``train`` entry for the remote segment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from speechkit.checkpoint import load_model
from speechkit.codec.causal_rvq_codec import CausalRVQCodec
from speechkit.codec.esc import ESCCodec
from speechkit.codec.single_codec import SingleCodec
from speechkit.train.ledger import read_ledger
from speechkit.train.recipes import codec_rvq, codec_rvq_causal, esc, single_codec
from speechkit.train.recipes.codec_training import write_codec_checkpoint
from speechkit.train.trainer import LEDGER_FILE

RECIPES = {  # recipe name -> (model class for a fresh run, card fields)
    "codec-rvq": (None, {"name": codec_rvq.NAME, "description": codec_rvq.DESCRIPTION}),
    "codec-rvq-causal": (
        CausalRVQCodec,
        {"name": codec_rvq_causal.NAME, "description": codec_rvq_causal.DESCRIPTION},
    ),
    "single-codec": (SingleCodec, {"name": single_codec.NAME, "description": single_codec.DESCRIPTION}),
    "esc": (ESCCodec, {"name": esc.NAME, "description": esc.DESCRIPTION}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("weights", type=Path, help="the run's EMA state dict (keys 'codec.*')")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps of the remote segment")
    parser.add_argument("--hours", type=float, required=True, help="wall hours of the remote segment")
    parser.add_argument("--device", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--note", default="")
    parser.add_argument("--init-from", type=Path, default=None, help="checkpoint the remote run started from")
    parser.add_argument("--data", type=Path, default=Path("data/speech"))
    parser.add_argument("--export", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    model_class, card = RECIPES[args.recipe]
    if args.init_from is not None:
        codec = load_model(args.init_from)
        previous = (
            read_ledger(args.init_from / LEDGER_FILE) if (args.init_from / LEDGER_FILE).exists() else []
        )
    else:
        codec = model_class(model_class.config_class())
        previous = []
    state = {
        k[len("codec.") :]: v.float() if v.is_floating_point() else v
        for k, v in load_file(args.weights).items()
        if k.startswith("codec.")
    }
    codec.load_state_dict(state, strict=True)
    if hasattr(codec.config, "global_num_codes"):  # Single-Codec's side information, as its recipe records
        from speechkit.tokenizers.bitpacking import bits_per_code

        bits = codec.config.global_num_codes * bits_per_code(codec.config.global_codebook_size)
        card = {**card, "global_bits_per_utterance": bits}
    step0 = max((int(e.get("step", 0)) for e in previous), default=0)
    hours0 = max((float(e.get("wall_hours", 0.0)) for e in previous), default=0.0)
    entry = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "event": "train",
        "step": step0 + args.steps,
        "wall_hours": round(hours0 + args.hours, 6),
        "hardware": {
            "device": "cuda",
            "name": args.device,
            "world_size": 1,
            "num_nodes": 1,
            "precision": args.precision,
            "batch_size": args.batch_size,
            "note": args.note,
        },
        "metrics": {"segment_hours": args.hours, "segment_steps": float(args.steps)},
    }
    codec.eval()
    with torch.no_grad():
        write_codec_checkpoint(codec, [*previous, entry], args.export, args.data, card)
    print(json.dumps(json.loads((args.export / "card.json").read_text())["metrics"], indent=1))


if __name__ == "__main__":
    main()
