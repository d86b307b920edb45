"""PNG figures shared by the benchmark scripts (matplotlib, Agg backend: no display needed).

- :func:`plot_rate_quality`: quality metrics against bitrate, one line per system family and split;
- :func:`plot_spectrograms`: log-mel spectrograms of one utterance as several systems rebuilt it;
- :func:`plot_det_curves`: speaker-verification DET curves on normal-deviate axes, a panel per split;
- :func:`plot_diarization_timeline`: who spoke when, reference lanes above a system's lanes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechkit_rt.features import log_mel_spectrogram

SPLIT_STYLES = {"test": ("-", "o"), "test_ood": ("--", "s")}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # file output only; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def plot_rate_quality(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    metrics: Sequence[tuple[str, str]],
    x_key: str = "kbps",
    title: str = "",
) -> Path:
    """One panel per metric, value against bitrate; a line per (family, split), markers per point.

    Args:
        rows: dicts with "family", "split", ``x_key`` and the metric keys.
        path: PNG to write (folder created).
        metrics: (row key, axis label) per panel, e.g. ``[("pesq_wb", "PESQ-WB"), ("stoi", "STOI")]``.
        x_key: row key of the bitrate in kbit/s.
        title: figure title.

    Returns:
        The path written.
    """
    plt = _pyplot()
    families = sorted({r["family"] for r in rows})
    colors = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.0 * len(metrics), 4.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics):
        for family in families:
            for split, (linestyle, marker) in SPLIT_STYLES.items():
                points = sorted(
                    (r[x_key], r[key])
                    for r in rows
                    if r["family"] == family and r["split"] == split and r.get(key) is not None
                )
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(
                    xs,
                    ys,
                    linestyle=linestyle,
                    marker=marker,
                    color=colors[family],
                    label=f"{family} ({split})",
                )
        _log_kbps_axis(ax, [r[x_key] for r in rows])
        ax.set_xlabel("bitrate written (kbit/s, log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _log_kbps_axis(ax: Any, values: Sequence[float]) -> None:
    """Log-scaled bitrate axis with plain-number ticks (0.5, 1, 1.5, 2, 3, ...) instead of 2x10^0."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    low, high = min(values) / 1.15, max(values) * 1.15
    ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64) if low <= t <= high]
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_spectrograms(
    panels: Sequence[tuple[str, np.ndarray]], sample_rate: int, path: str | Path, title: str = ""
) -> Path:
    """Stacked log-mel spectrograms (80 mels, 32 ms window, 10 ms hop) on one colour scale.

    Args:
        panels: (caption, float audio [T]) per row, the reference first.
        sample_rate: rate of every waveform, Hz.
        path: PNG to write (folder created).
        title: figure title.

    Returns:
        The path written.
    """
    plt = _pyplot()
    n_fft, hop = int(0.032 * sample_rate), int(0.010 * sample_rate)
    mels = [
        log_mel_spectrogram(np.asarray(w, np.float32), sample_rate, n_fft, hop, 80, power=1.0)
        for _, w in panels
    ]
    vmax = max(float(m.max()) for m in mels)
    vmin = vmax - 10.0  # 10 nepers ~ 87 dB of magnitude range: enough to show codec noise floors
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9.0, 1.7 * len(panels) + 0.6), sharex=True, squeeze=False
    )
    for ax, (caption, _), mel in zip(axes[:, 0], panels, mels):
        seconds = mel.shape[1] * hop / sample_rate
        image = ax.imshow(
            mel,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmin,
            vmax=vmax,
            extent=(0.0, seconds, 0, mel.shape[0]),
        )
        ax.set_ylabel(f"mel bin (0-{sample_rate // 2000} kHz)", fontsize=8)
        ax.set_title(caption, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="log magnitude", shrink=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6)


def plot_det_curves(
    curves: Mapping[str, Sequence[tuple[str, np.ndarray, np.ndarray]]], path: str | Path, title: str = ""
) -> Path:
    """DET curves (miss rate against false-alarm rate, both on normal-deviate axes), a panel per split.

    Args:
        curves: split -> (system, false-alarm rates [N], miss rates [N]) per system, e.g. from
            ``bench.speaker.det_curve``; the equal-error points lie on the diagonal drawn.
        path: PNG to write (folder created).
        title: figure title.

    Returns:
        The path written.
    """
    from scipy.stats import norm

    plt = _pyplot()
    low, high = DET_TICKS[0], DET_TICKS[-1]
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 5.0), squeeze=False)
    for ax, (split, systems) in zip(axes[0], curves.items()):
        for system, p_fa, p_miss in systems:
            clip = (low / 2, 1 - low / 2)
            ax.plot(norm.ppf(np.clip(p_fa, *clip)), norm.ppf(np.clip(p_miss, *clip)), label=system)
        ax.plot(norm.ppf([low, high]), norm.ppf([low, high]), color="gray", linewidth=0.8, linestyle=":")
        ticks = norm.ppf(DET_TICKS)
        labels = [f"{100 * t:g}" for t in DET_TICKS]
        ax.set_xticks(ticks, labels)
        ax.set_yticks(ticks, labels)
        ax.set_xlim(norm.ppf(low), norm.ppf(high))
        ax.set_ylim(norm.ppf(low), norm.ppf(high))
        ax.set_xlabel("false-alarm rate (%)")
        ax.set_ylabel("miss rate (%)")
        ax.set_title(split)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_diarization_timeline(
    reference: Sequence[Any],
    hypothesis: Sequence[Any],
    mapping: Mapping[str, str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Speaker lanes over time: the reference's speakers on top, the hypothesis's below.

    Args:
        reference: segments with ``start``, ``end`` and ``speaker`` (e.g. RTTM ``Segment``).
        hypothesis: the system's segments.
        mapping: hypothesis label -> reference label (the DER mapping); a mapped hypothesis
            speaker takes its reference speaker's colour, an unmapped one is grey.
        path: PNG to write (folder created).
        title: figure title.

    Returns:
        The path written.
    """
    plt = _pyplot()
    ref_names = sorted({s.speaker for s in reference})
    hyp_names = sorted(
        {s.speaker for s in hypothesis}, key=lambda n: (mapping.get(n) is None, mapping.get(n, n))
    )
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(ref_names)}
    lanes = [("ref", n, colors[n]) for n in ref_names]
    lanes += [("hyp", n, colors.get(mapping.get(n), (0.6, 0.6, 0.6, 1.0))) for n in hyp_names]
    fig, ax = plt.subplots(figsize=(12.0, 0.45 * len(lanes) + 1.4))
    for row, (side, name, color) in enumerate(lanes):
        segments = reference if side == "ref" else hypothesis
        spans = [(s.start, s.end - s.start) for s in segments if s.speaker == name]
        ax.broken_barh(spans, (len(lanes) - row - 0.9, 0.8), facecolors=color)
    ax.axhline(len(hyp_names), color="black", linewidth=0.8)
    ax.set_yticks(
        [len(lanes) - row - 0.5 for row in range(len(lanes))],
        [f"ref {n}" if side == "ref" else f"hyp {n} -> {mapping.get(n, '-')}" for side, n, _ in lanes],
        fontsize=7,
    )
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, max((s.end for s in [*reference, *hypothesis]), default=1.0))
    ax.grid(True, axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
