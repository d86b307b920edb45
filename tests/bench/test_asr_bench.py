"""bench/asr.py: the pure helpers behind its scoring, size, ablation and target columns (no model loaded)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import asr  # noqa: E402


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("You're late, Dr. Who!", "you are late doctor who"),
        ("it's", "its"),
        ("At 5:30 on the 21st", "at five thirty on the twenty first"),
        ("  ", ""),
    ],
)
def test_scoring_text_folds_both_normalisers(written: str, spoken: str) -> None:
    assert asr.scoring_text(written) == spoken
    assert asr.scoring_text(spoken) == spoken  # idempotent: model output scores as itself


def test_score_transcripts_pools_words_and_characters() -> None:
    score = asr.score_transcripts(["One two.", "three four five six"], ["one", "three four five six"])
    assert score["wer"] == pytest.approx(1 / 6)
    assert score["sdi"] == "0/1/0" and score["reference_words"] == 6
    assert 0 < score["cer"] < score["wer"]
    with pytest.raises(ValueError):
        asr.score_transcripts(["a"], [])


def test_transcribe_all_warms_up_untimed_and_counts_audio() -> None:
    calls: list[int] = []
    texts, timing = asr.transcribe_all(
        lambda w: calls.append(len(w)) or "x", [np.zeros(16000), np.zeros(32000)]
    )
    assert texts == ["x", "x"] and calls == [16000, 16000, 32000]
    assert timing.audio_seconds == 3.0
    assert timing.wall_seconds >= 0 and timing.cpu_seconds >= 0
    assert math.isnan(asr.Timing().rtf_cpu)


def test_safetensors_sizes_reports_fp32_equivalent(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(4, 8, dtype=torch.float16), "b": torch.zeros(3), "i": torch.zeros(2, dtype=torch.int64)},
              str(path))  # fmt: skip
    sizes = asr.safetensors_sizes(path)
    assert sizes["stored_as"] == "F16+F32+I64"
    assert sizes["tensor_bytes"] == 64 + 12 + 16
    assert sizes["fp32_bytes"] == 128 + 12 + 16
    assert sizes["disk_bytes"] == path.stat().st_size > sizes["tensor_bytes"]


def test_bundle_bytes_sums_a_folder_or_says_not_exported(tmp_path: Path) -> None:
    assert asr.bundle_bytes(None) == asr.NOT_EXPORTED
    assert asr.bundle_bytes(tmp_path / "missing") == asr.NOT_EXPORTED
    (tmp_path / "graphs").mkdir()
    (tmp_path / "manifest.json").write_bytes(b"{}")
    (tmp_path / "graphs" / "encoder.onnx").write_bytes(b"x" * 100)
    assert asr.bundle_bytes(tmp_path) == 102
    assert asr.bundle_bytes(tmp_path / "graphs" / "encoder.onnx") == 100


def test_parse_named_paths() -> None:
    assert asr.parse_named_paths(None, {"a": "b"}) == {"a": "b"}
    assert asr.parse_named_paths([], {"a": "b"}) == {}
    assert asr.parse_named_paths(["x=runs/y"], {"a": "b"}) == {"x": "runs/y"}
    for bad in ("runs/y", "=runs/y", "x="):
        with pytest.raises(ValueError, match="NAME=PATH"):
            asr.parse_named_paths([bad], {})


def test_card_summary_reads_the_ledger_and_tolerates_a_bare_card() -> None:
    card = {"ledger": {"total_steps": 3000, "total_wall_hours": 1.2}, "paired_hours": 0.4,
            "description": "E-Branchformer CTC/attention character ASR (baseline; init scratch)."}  # fmt: skip
    assert asr.card_summary(card, {"intermediate_layers": []}) == {
        "steps": 3000, "hours": 1.2, "paired_hours": 0.4, "init": "scratch", "decred": False,
    }  # fmt: skip
    bare = asr.card_summary({}, {})
    assert bare["steps"] is None and bare["init"] is None and bare["decred"] is False


def test_missing_checkpoints_are_rows_marked_not_trained(tmp_path: Path) -> None:
    evaluator = SimpleNamespace(clips={"test": []}, references={"test": []})
    rows = asr.evaluate_checkpoints(evaluator, {"s2c": str(tmp_path / "nothing"), "empty": str(tmp_path)})
    assert [(r["row"], r["status"]) for r in rows] == [("s2c", asr.NOT_TRAINED), ("empty", asr.NOT_TRAINED)]
    keys = [c.key for c in asr.ablation_columns(["test", "test_ood"])]
    assert keys[-4:] == [
        "wer_test_ctc_greedy",
        "wer_test_attention",
        "wer_test_ood_ctc_greedy",
        "wer_test_ood_attention",
    ]


def test_check_targets_judges_each_target_or_leaves_it_open() -> None:
    label = asr.model_label(Path("ckpt/asr"), "joint", "joint")
    rows = [
        {"split": "test", "system": label, "wer": 0.3, "rtf_cpu": 0.06},
        {"split": "test_ood", "system": label, "wer": 0.2, "rtf_cpu": 0.03},
        {"split": "test_ood", "system": "PocketSphinx en-us", "wer": 0.15},
    ]
    targets = asr.check_targets(rows, [{"int8_bundle": 9_000_000}], label)
    assert [t["met"] for t in targets] == [False, False, True]
    assert targets[1]["measured"] == "0.0600"  # the worse split decides
    assert [t["met"] for t in asr.check_targets([], [], label)] == [None, None, None]


def test_quick_flags_shrink_the_run() -> None:
    args = asr.parse_args(["--quick"])
    assert args.utterances == 10 and args.no_memory and args.modes == list(asr.QUICK_MODES)
    assert asr.parse_args([]).modes == list(asr.MODES)


def test_plot_wer_rtf_writes_a_png(tmp_path: Path) -> None:
    rows = [
        {"split": "test", "system": "a", "wer": 0.1, "rtf_cpu": 0.02},
        {"split": "test_ood", "system": "a", "wer": 0.2, "rtf_cpu": 0.03},
        {"split": "test", "system": "b", "wer": 0.3, "rtf_cpu": None},
    ]
    path = asr.plot_wer_rtf(rows, tmp_path / "fig.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decoding_modes_name_a_method_and_optionally_a_decred_strategy() -> None:
    assert asr.decoding_changes("attention/log_linear") == {"method": "attention", "decred": "log_linear"}
    for bad in ("beam", "attention/mean", "joint/"):
        with pytest.raises(ValueError, match="decoding mode"):
            asr.decoding_changes(bad)
    with pytest.raises(SystemExit):
        asr.parse_args(["--modes", "greedy"])
    assert all(asr.decoding_changes(m) for m in (*asr.MODES, *asr.QUICK_MODES, *asr.ABLATION_MODES))
