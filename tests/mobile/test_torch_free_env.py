"""speechkit_rt runs where torch and speechkit are not installed: a fresh venv with ``pip install ./mobile``."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "mobile"
ALLOWED_IMPORTS = {"numpy", "onnxruntime", "speechkit_rt"}
FORBIDDEN = ("torch", "speechkit", "speechkit_export", "scipy", "soundfile", "soxr")
PIP_TIMEOUT_S = 600

CHILD_SCRIPT = """
import importlib, sys
from pathlib import Path

for name in ("torch", "speechkit", "speechkit_export"):
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    raise SystemExit(f"FAIL: {name} is importable in the torch-free venv")

import numpy as np
import speechkit_rt
from speechkit_rt import CodecRuntime, SpeakerRuntime

assert Path(speechkit_rt.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), speechkit_rt.__file__
bundle, wav_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
wav = np.load(wav_path)
with CodecRuntime.open(bundle, num_threads=1) as codec:
    tokens = codec.encode(wav, 16000)
    audio = codec.decode(tokens)
    (out / "tokens.sktk").write_bytes(codec.to_bytes(tokens))
np.save(out / "codes.npy", tokens.codes)
np.save(out / "audio.npy", audio)
with SpeakerRuntime.open(Path(sys.argv[5]), num_threads=1) as speaker:
    np.save(out / "embedding.npy", speaker.embed(wav, 16000))
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[4].split(",")))
if loaded:
    raise SystemExit(f"FAIL: the round trip imported {loaded}")
print("OK", tokens.codes.shape, audio.shape)
"""


def _load_test_helpers(name: str = "test_codec_runtime.py"):
    """The bundle builders of another test file (tests/mobile has no package to import them from)."""
    spec = importlib.util.spec_from_file_location(
        f"_{Path(name).stem}_helpers", Path(__file__).with_name(name)
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_sources_import_only_numpy_onnxruntime_and_the_standard_library():
    sources = sorted((RUNTIME_DIR / "speechkit_rt").glob("*.py"))
    assert len(sources) >= 6
    for path in sources:
        outside = _imports_of(path) - ALLOWED_IMPORTS - set(sys.stdlib_module_names)
        assert not outside, f"{path.name} imports {sorted(outside)}"


def _run(args: list[str], timeout: float, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_fresh_venv_with_only_the_runtime_round_trips_like_the_sdk(tmp_path, speech_16k):
    helpers = _load_test_helpers()
    model, bundle = helpers.build_tiny_codec_bundle(tmp_path / "bundle")
    codec = model.task_api()
    speaker_helpers = _load_test_helpers("test_speaker_runtime.py")
    speaker_model, speaker_bundle = speaker_helpers.build_tiny_speaker_bundle(tmp_path / "speaker")
    wav = speech_16k[:24000]
    np.save(tmp_path / "wav.npy", wav)

    # A copy, so pip's build folder and egg-info never land in the repository.
    source = shutil.copytree(
        RUNTIME_DIR, tmp_path / "mobile", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    started = time.monotonic()
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], 120, tmp_path, env)
    assert made.returncode == 0, f"python -m venv failed:\n{made.stderr[-2000:]}"
    python = venv / "bin" / "python"
    try:
        pip = _run(
            [str(python), "-m", "pip", "install", "--quiet", str(source)], PIP_TIMEOUT_S, tmp_path, env
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip install ./mobile took over {PIP_TIMEOUT_S} s: is the package index reachable?")
    if pip.returncode != 0:
        pytest.fail(
            "pip install ./mobile failed: numpy and onnxruntime must come from a package index, and it "
            f"could not reach one or the install broke. pip said:\n{pip.stderr[-3000:]}"
        )
    installed = time.monotonic()

    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "round_trip.py"
    script.write_text(CHILD_SCRIPT)
    args = [str(python), str(script), str(bundle), str(tmp_path / "wav.npy"), str(out), ",".join(FORBIDDEN),
            str(speaker_bundle)]  # fmt: skip
    child = _run(args, 120, tmp_path, env)
    assert child.returncode == 0 and "OK" in child.stdout, (
        f"torch-free round trip failed:\n{child.stderr[-3000:]}"
    )
    info = _run([str(venv / "bin" / "speechkit-rt"), "info", str(bundle)], 60, tmp_path, env)
    assert info.returncode == 0 and "tiny-rvq" in info.stdout, info.stderr
    print(
        f"venv + pip install: {installed - started:.1f} s, round trip: {time.monotonic() - installed:.1f} s"
    )

    # The SDK, in this (torch) process, reads the venv's token file and decodes it with torch.
    expected = codec.encode(wav, 16000)
    codes = np.load(out / "codes.npy")
    assert np.mean(codes == expected.codes) >= helpers.MIN_CODES_EQUAL
    tokens = codec.from_bytes((out / "tokens.sktk").read_bytes())
    np.testing.assert_array_equal(tokens.codes, codes)
    audio = np.load(out / "audio.npy")
    assert audio.shape == (len(wav),)
    assert np.max(np.abs(audio - codec.decode(tokens))) <= helpers.MAX_DECODER_ABS
    # ... and the venv's speaker embedding is the SDK's (of the same audio, silence not trimmed)
    embedding = speaker_model.task_api().embed(wav, 16000, trim_silence=False)
    assert np.max(np.abs(np.load(out / "embedding.npy") - embedding)) < speaker_helpers.MAX_EMBEDDING_ABS
