"""bench/runtime.py: the pure helpers behind its x-real-time, target and size columns."""

from __future__ import annotations

import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import runtime  # noqa: E402


def test_median_x_real_time_ignores_one_slow_outlier() -> None:
    assert runtime.median_x_real_time(10.0, [0.1, 0.1, 5.0]) == 100.0
    assert math.isnan(runtime.median_x_real_time(10.0, []))


def test_meets_target_needs_both_speed_and_start() -> None:
    assert runtime.meets_target(100.0, 0.49)
    assert not runtime.meets_target(99.9, 0.1)
    assert not runtime.meets_target(500.0, 0.5)
    assert not runtime.meets_target(500.0, None)


def test_folder_size_counts_nested_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 5)
    assert runtime.folder_size(tmp_path) == 15
    assert runtime.folder_size(tmp_path / "a.bin") == 10
