"""The run ledger: an append-only JSONL record of every training segment, resume and evaluation.

Training is cumulative over killed, time-limited sessions, so what a checkpoint cost (steps, hours, on
which hardware) is only known by adding up its segments. Each line of ``run_dir/ledger.jsonl`` is::

    {"time": "2025-01-01T12:00:00+00:00", "event": "train" | "eval" | "resume", "step": 1200,
     "wall_hours": 3.1, "hardware": {"device": "cuda", "name": "NVIDIA H100", "world_size": 8, ...},
     "metrics": {...}}

``wall_hours`` is cumulative over the run (restored from the checkpoint on resume, so time after the
last checkpoint of a killed session is not counted). A ``train`` entry closes each segment and carries
``segment_hours`` and ``segment_steps`` in its metrics. :func:`summarize_ledger` condenses the file for
checkpoint cards.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ledger.jsonl"
    >>> hw = {"device": "cpu", "name": "test", "world_size": 1, "precision": "fp32"}
    >>> _ = Ledger(path).append("eval", step=10, wall_hours=0.5, hardware=hw, metrics={"loss": 1.0})
    >>> summarize_ledger(read_ledger(path)).total_steps
    10
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from speechkit.errors import CheckpointError
from speechkit.train.precision import cpu_model_name

EVENTS = ("train", "eval", "resume")


def describe_hardware(
    device: torch.device, world_size: int, precision: str, num_nodes: int = 1
) -> dict[str, Any]:
    """What a segment ran on, for the ledger.

    Args:
        device: this process's device.
        world_size: number of processes.
        precision: the resolved precision (``"bf16"`` / ``"fp32"``).
        num_nodes: machines in the job.

    Returns:
        ``{"device", "name", "world_size", "num_nodes", "precision", "cpu_threads"}``.

    Example:
        >>> describe_hardware(torch.device("cpu"), 1, "fp32")["device"]
        'cpu'
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_model_name()
    return {
        "device": device.type,
        "name": name,
        "world_size": world_size,
        "num_nodes": num_nodes,
        "precision": precision,
        "cpu_threads": torch.get_num_threads(),
    }


class Ledger:
    """Appends entries to a JSONL ledger file (only rank 0 should write).

    Args:
        path: the ``ledger.jsonl`` file (created with its folder on first append).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(
        self,
        event: str,
        *,
        step: int,
        wall_hours: float,
        hardware: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Add one entry and return it.

        Args:
            event: ``"train"``, ``"eval"`` or ``"resume"``.
            step: optimizer step at the time of the event.
            wall_hours: cumulative wall-clock hours of the run.
            hardware: from :func:`describe_hardware`.
            metrics: numbers to record.
        """
        if event not in EVENTS:
            raise ValueError(f"ledger event must be one of {EVENTS}, got {event!r}")
        entry = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "event": event,
            "step": int(step),
            "wall_hours": round(float(wall_hours), 6),
            "hardware": dict(hardware),
            "metrics": {name: float(value) for name, value in (metrics or {}).items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
        return entry


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """All entries of a ledger file (empty list when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as err:
            # A kill can truncate the very last line; anything earlier is corruption.
            if number == len(lines):
                break
            raise CheckpointError(f"{path}:{number} is not valid JSON: {err}") from err
    return entries


@dataclasses.dataclass(frozen=True)
class LedgerSummary:
    """What a run cost and measured, for checkpoint cards.

    Attributes:
        total_steps: the highest step recorded.
        total_wall_hours: cumulative wall-clock hours.
        device_hours: sum over segments of hours times processes (GPU-hours on GPUs).
        segments: number of ``train`` entries (sessions).
        resumes: number of ``resume`` entries.
        hours_by_hardware: ``"name x world_size"`` -> wall hours spent on it.
        evaluations: ``[{"step", "wall_hours", "metrics"}]`` in order.
    """

    total_steps: int
    total_wall_hours: float
    device_hours: float
    segments: int
    resumes: int
    hours_by_hardware: dict[str, float]
    evaluations: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize_ledger(entries: list[dict[str, Any]]) -> LedgerSummary:
    """Condense ledger entries (see :func:`read_ledger`).

    Example:
        >>> hw = {"name": "cpu", "world_size": 2}
        >>> entries = [{"event": "train", "step": 5, "wall_hours": 1.0, "hardware": hw,
        ...             "metrics": {"segment_hours": 1.0}}]
        >>> summarize_ledger(entries).device_hours
        2.0
    """
    hours_by_hardware: dict[str, float] = {}
    device_hours = 0.0
    for entry in entries:
        if entry.get("event") != "train":
            continue
        hardware = entry.get("hardware", {})
        hours = float(entry.get("metrics", {}).get("segment_hours", 0.0))
        world = int(hardware.get("world_size", 1))
        key = f"{hardware.get('name', 'unknown')} x {world}"
        hours_by_hardware[key] = round(hours_by_hardware.get(key, 0.0) + hours, 6)
        device_hours += hours * world
    evaluations = [
        {"step": e["step"], "wall_hours": e["wall_hours"], "metrics": e.get("metrics", {})}
        for e in entries
        if e.get("event") == "eval"
    ]
    return LedgerSummary(
        total_steps=max((int(e.get("step", 0)) for e in entries), default=0),
        total_wall_hours=max((float(e.get("wall_hours", 0.0)) for e in entries), default=0.0),
        device_hours=round(device_hours, 6),
        segments=sum(e.get("event") == "train" for e in entries),
        resumes=sum(e.get("event") == "resume" for e in entries),
        hours_by_hardware=hours_by_hardware,
        evaluations=evaluations,
    )
