"""``speechkit export``: the summary it prints and the refusals (exit code 2, one line naming the problem)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speechkit.checkpoint import save_checkpoint
from speechkit.cli import main as speechkit_main
from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
from speechkit_export.cli import main
from speechkit_rt.bundle import Bundle

TINY = RVQCodecConfig(
    n_fft=64, hop_length=16, dim=64, latent_dim=8, num_quantizers=2, codebook_size=8,
    encoder_blocks=(1, 1), decoder_blocks=(1, 1),
)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["codec-rvq", "--format", "coreml", "--quant", "decoupleq-w2"],
            "none, int8, palettize4, palettize2",
        ),
        (["codec-rvq", "--quant", "int4"], "unknown quant mode 'int4'"),
        (["codec-rvq", "--quant", "w4", "--group-size", "48"], "power of two"),
        (["no-such-codec", "--quant", "int8"], "no checkpoint named or found at 'no-such-codec'"),
    ],
)
def test_bad_requests_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv, expected):
    assert main([*argv, "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "out").exists()


def test_unwritable_output_path_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["mel-rvq-demo", "-o", str(blocker / "bundle"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write a bundle to" in err[0] and "a-file" in err[0]
    assert blocker.read_text() == "not a folder"  # nothing lost


def test_speechkit_cli_registers_export(tmp_path: Path, capsys: pytest.CaptureFixture):
    argv = ["export", "codec-rvq", "--format", "coreml", "--quant", "gptq-w4", "-o", str(tmp_path / "o")]
    assert speechkit_main(argv) == 2
    assert "Core ML export supports quant modes" in capsys.readouterr().err


@pytest.mark.slow
def test_export_prints_the_summary_and_writes_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(RVQCodec(TINY).eval(), tmp_path / "tiny-codec")
    out = tmp_path / "bundle"
    argv = [str(checkpoint), "--quant", "rtn-w3", "-o", str(out), "--zip", "--no-progress"]
    assert main([*argv, "--corpus", str(tmp_path / "no-corpus")]) == 0
    printed = capsys.readouterr().out
    for expected in (
        "MiB on disk",
        "zipped",
        "rtn-w3 (3-bit, groups of 64",
        "parity       encoder",
        "SNR",
        "PESQ-WB",
    ):
        assert expected in printed
    with Bundle.open(out.with_suffix(".zip")) as bundle:
        assert bundle.manifest["model_name"] == "tiny-codec"
        assert bundle.manifest["quantization"]["mode"] == "rtn-w3"


@pytest.mark.slow
def test_console_script_refuses_a_bad_combination_with_a_nonzero_exit(tmp_path: Path):
    argv = ["export", "codec-rvq", "--format", "coreml", "--quant", "rtn-w2", "-o", str(tmp_path / "o")]
    done = subprocess.run(
        [sys.executable, "-m", "speechkit.cli", *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "palettize4" in done.stderr and "Traceback" not in done.stderr
