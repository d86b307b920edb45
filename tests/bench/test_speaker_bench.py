"""bench/speaker.py (trial lists, DET points, corpus DER, rows, targets) and the peer's segment batching."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import common, speaker  # noqa: E402
from bench.speaker_similarity import SegmentEmbedder  # noqa: E402
from speechkit.speaker.der import DiarizationErrorRate  # noqa: E402
from speechkit.speaker.scoring import equal_error_rate  # noqa: E402


def _der(missed: float, false_alarm: float, confusion: float, total: float) -> DiarizationErrorRate:
    return DiarizationErrorRate(
        (missed + false_alarm + confusion) / total, missed, false_alarm, confusion, total, {}
    )


def test_all_pairs_trials_counts_every_unordered_pair_once() -> None:
    speakers = ["a"] * 4 + ["b"] * 3 + ["c"]
    first, second, target = speaker.all_pairs_trials(speakers)
    assert len(first) == 8 * 7 // 2
    assert np.all(first < second)
    assert target.sum() == 4 * 3 // 2 + 3 * 2 // 2  # C(4,2) + C(3,2); "c" has no target trial
    assert all(target[k] == (speakers[i] == speakers[j]) for k, (i, j) in enumerate(zip(first, second)))


def test_det_curve_runs_from_reject_all_to_accept_all_and_crosses_at_the_eer() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.3
    scores = rng.normal(size=400) + 1.5 * labels
    p_fa, p_miss = speaker.det_curve(scores, labels)
    assert (p_fa[0], p_miss[0], p_fa[-1], p_miss[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(p_fa) >= 0) and np.all(np.diff(p_miss) <= 0)
    eer, _ = equal_error_rate(scores, labels)
    crossing = int(np.argmax(p_miss <= p_fa))
    assert p_miss[crossing] <= eer + 0.02 and p_fa[crossing - 1] <= eer + 0.02


def test_verification_metrics_report_counts_and_rates_at_the_threshold() -> None:
    scores = np.array([0.9, 0.7, 0.4, 0.6, 0.2, 0.1])
    labels = np.array([True, True, True, False, False, False])
    row = speaker.verification_metrics(scores, labels, threshold=0.5)
    assert (row["targets"], row["nontargets"]) == (3, 3)
    assert row["miss_at_threshold"] == pytest.approx(1 / 3)
    assert row["false_alarm_at_threshold"] == pytest.approx(1 / 3)
    assert 0 < row["eer"] < 0.5 and 0 <= row["min_dcf"] <= 1
    assert "miss_at_threshold" not in speaker.verification_metrics(scores, labels, threshold=None)


def test_corpus_der_weights_meetings_by_reference_time_not_equally() -> None:
    short, long = _der(1.0, 0.0, 0.0, 2.0), _der(0.0, 1.0, 1.0, 98.0)  # 50 % and ~2 %
    result = speaker.corpus_der([short, long])
    assert result["der"] == pytest.approx(3.0 / 100.0)
    assert result["missed"] + result["false_alarm"] + result["confusion"] == pytest.approx(result["der"])
    assert math.isnan(speaker.corpus_der([])["der"])


def test_summarize_system_assembles_one_row_per_system() -> None:
    records = [
        {"der": _der(1, 0, 1, 10), "der_collar": _der(0, 0, 1, 8), "num_speakers": 2, "true_speakers": 2,
         "seconds": 2.0, "duration": 60.0, "delays": [1.0, 2.0]},
        {"der": _der(0, 0, 2, 10), "der_collar": _der(0, 0, 1, 8), "num_speakers": 4, "true_speakers": 3,
         "seconds": 1.0, "duration": 40.0, "delays": [1.5]},
    ]  # fmt: skip
    row = speaker.summarize_system("test", "streaming-msdd", "streaming MSDD", records)
    assert row["der"] == pytest.approx(0.2) and row["der_collar"] == pytest.approx(2 / 16)
    assert row["count_accuracy"] == 0.5 and row["speaker_counts"] == [(2, 2), (4, 3)]
    assert row["rtf"] == pytest.approx(0.03)
    assert row["latency_s"] == [1.5, 2.0]
    table = common.markdown_table([row], speaker.DIARIZATION_COLUMNS)
    assert "| test | streaming MSDD | 20.0% |" in table and "1.50 / 2.00 s" in table
    assert table.splitlines()[-1].endswith("| – | – | – |")  # no params, size or memory yet


def test_check_targets_compares_the_right_rows_and_skips_missing_ones() -> None:
    verification = [
        {"split": "test_ood", "key": "ecapa-api", "eer": 0.04},
        {"split": "test_ood", "key": "ecapa-cosine", "eer": 0.01},  # not the API score: ignored
        {"split": "test_ood", "key": "peer", "eer": 0.03},
    ]
    diarization = [
        {"split": "test", "key": "single-scale", "der": 0.20},
        {"split": "test", "key": "msdd", "der": 0.17},
        {"split": "test", "key": "streaming-msdd", "der": 0.25},
        {"split": "test_ood", "key": "single-scale", "der": 0.30},  # no MSDD rows: no targets
    ]
    targets = speaker.check_targets(verification, diarization)
    assert [(t["target"], t["met"]) for t in targets] == [
        ("test_ood: EER below Resemblyzer", False),
        ("test: MSDD DER <= 90% of single-scale", True),
        ("test: streaming DER <= 1.5x offline MSDD", True),
    ]
    assert targets[1]["goal"] == pytest.approx(0.18)
    assert speaker.check_targets([], []) == []


class _LengthEncoder(torch.nn.Module):
    """Stands in for Resemblyzer's LSTM: every embedding holds its input's frame count."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[int, int]] = []

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        self.batches.append(tuple(mels.shape[:2]))
        return torch.full((mels.shape[0], 256), float(mels.shape[1]))


def test_peer_segment_encoder_batches_by_length_and_keeps_segment_order() -> None:
    fake = _LengthEncoder()
    peer = SegmentEmbedder.__new__(SegmentEmbedder)
    peer.encoder, peer._wav = fake, None
    wav = np.random.default_rng(0).normal(scale=0.1, size=3 * 16000).astype(np.float32)
    segments = np.array([[0.0, 1.5], [0.25, 0.75], [0.75, 2.25], [2.8, 3.0], [1.0, 1.5]])
    out = peer.embed_segments(wav, segments, batch_size=1)
    assert out.shape == (5, 256)
    assert out[:, 0].tolist() == [150.0, 50.0, 150.0, 20.0, 50.0]  # frames = 100 per second
    assert sorted(fake.batches) == [(1, 20), (1, 50), (1, 50), (1, 150), (1, 150)]
    peer.embed_segments(wav, segments[:2])
    assert fake.batches[-2:] == [(1, 50), (1, 150)]  # same array: mel reused; one batch per length


def test_quick_clamps_counts_and_keeps_committed_results_untouched() -> None:
    args = speaker.parse_args(["--quick", "--utterances", "500"])
    assert (args.utterances, args.meetings) == (speaker.QUICK["utterances"], speaker.QUICK["meetings"])
    assert args.results_dir != common.RESULTS_DIR
    assert speaker.parse_args([]).results_dir == common.RESULTS_DIR
