"""Shared pytest fixtures: deterministic seeds and a short real speech clip."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_single_thread():
    """Seeded, and one torch thread: on 2 busy cores, 2 threads per test slows small ops 10x+."""
    torch.manual_seed(0)
    np.random.seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def speech_16k() -> np.ndarray:
    """About two seconds of real speech at 16 kHz (the bundled sample), float32 mono."""
    from speechkit.assets import sample_speech_path
    from speechkit.audio import load_audio

    wav, sr = load_audio(sample_speech_path(), target_sample_rate=16000)
    assert sr == 16000
    return wav


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=True, capture_output=True)
