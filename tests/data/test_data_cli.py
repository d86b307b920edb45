"""The ``speechkit data`` command line."""

from __future__ import annotations

import argparse

from speechkit.data.cli import register


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechkit")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_parses_each_corpus_command() -> None:
    args = _parser().parse_args(
        ["data", "speech", "--out", "x", "--hours", "0.2", "--seed", "3", "--workers", "1"]
    )
    assert (args.out, args.hours, args.seed, args.workers, args.held_out_engine) == (
        "x",
        0.2,
        3,
        1,
        "festival",
    )
    assert _parser().parse_args(["data", "music", "--minutes", "5"]).minutes == 5.0
    assert _parser().parse_args(["data", "noise"]).num_rirs == 200


def test_noise_command_builds_and_prints(tmp_path, capsys) -> None:
    args = _parser().parse_args(
        ["data", "noise", "--out", str(tmp_path), "--minutes", "0.5", "--num-rirs", "3", "--quiet"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "noise corpus" in out and "rirs" in out
    assert (tmp_path / "noise.jsonl").is_file()
