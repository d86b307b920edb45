"""ONNX graphs of the speaker family: the ECAPA-TDNN embedder and the MSDD diarization decoder.

One graph per model, batch of one, dynamic axes::

    ecapa_tdnn     embedder  wav f32 [1, num_samples] -> embedding f32 [1, D]   (unit norm)
    msdd_diarizer  decoder   embeddings f32 [1, K, num_steps, D],
                             centroids f32 [1, num_speakers, K, D] -> probs f32 [1, num_speakers, num_steps]

The embedder is ``ECAPATDNN.embed`` traced whole: log-mel front-end (the STFT as a convolution with
the DFT basis, :class:`speechkit.features.STFT`'s export path, which the bundle ships as a derived
initializer), mean normalisation over the valid frames (those whose window ends inside the audio;
the mask is computed from the graph's own length, so the time axis stays dynamic), TDNN /
SE-Res2Net blocks with their BatchNorms as ONNX BatchNormalization nodes, attentive statistics
pooling and the L2 normalisation. The embedding equals ``model.embed(wav)`` of the unpadded clip.

The decoder is ``MSDD.forward`` with every speaker real (no ``speaker_mask``: a device decodes one
recording, never a padded batch) and only the probabilities. :class:`_MSDDDecoderGraph` repeats its
maths with one change: the "not myself" mask of the rival search is an ``arange`` comparison, since
``torch.eye`` of a bool exports to an ``EyeLike`` that onnxruntime has no bool kernel for.

Example:
    >>> import tempfile
    >>> from speechkit.speaker.msdd import MSDD, MSDDConfig
    >>> model = MSDD(MSDDConfig(embedding_dim=8, proj_dim=4, cnn_channels=8, lstm_hidden=8)).eval()
    >>> graphs = export_speaker_graphs(model, tempfile.mkdtemp())
    >>> [t["name"] for t in graphs["decoder"].to_manifest()["inputs"]]
    ['embeddings', 'centroids']
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import AudioError, ConfigError
from speechkit_export.onnx_graphs import GraphSpec, TensorSpec

logger = logging.getLogger(__name__)

# Graph names each speaker kind exports.
SPEAKER_GRAPHS: dict[str, tuple[str, ...]] = {
    "ecapa_tdnn": ("embedder",),
    "msdd_diarizer": ("decoder",),
}


class _MatMulLinear(nn.Module):
    """``nn.Linear`` on [B, D_in] computed on [B, 1, D_in]: exported as MatMul + Add instead of Gemm,
    since onnxruntime's int8 and 4-bit quantisers take MatMul (and Conv) weights only. Same numbers."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.unsqueeze(1)).squeeze(1)


class _EmbedderGraph(nn.Module):
    """wav [1, T] -> unit-norm embedding [1, D]: ``ECAPATDNN.embed`` of one unpadded clip.

    The model is copied, its final projection wrapped in :class:`_MatMulLinear`; the layer names
    (and so the quantised layers ``weight_blobs`` looks for) stay those of the model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        model = copy.deepcopy(model)
        model.projection = _MatMulLinear(model.projection)
        self.model = model

    def forward(self, wav: Tensor) -> Tensor:
        return self.model.embed(wav)


class _MSDDDecoderGraph(nn.Module):
    """(embeddings [1, K, T, D], centroids [1, S, K, D]) -> probabilities [1, S, T] of ``MSDD``.

    ``MSDD.forward`` with ``speaker_mask=None``, step for step (see the module docstring for the
    one export-only change); the parity tests hold the two equal.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeddings: Tensor, centroids: Tensor) -> Tensor:
        m = self.model
        b, k, t, _ = embeddings.shape
        s = centroids.shape[1]
        e, c = F.normalize(embeddings, dim=-1), F.normalize(centroids, dim=-1)
        sims = torch.einsum("bktd,bskd->bskt", e, c)  # [B, S, K, T]
        pe = m.embed_proj(e).permute(0, 1, 3, 2)  # [B, K, P, T]
        pc = m.centroid_proj(c)  # [B, S, K, P]
        cnn_in = torch.cat(
            [
                pe[:, None].expand(b, s, k, -1, t),
                pc[..., None].expand(b, s, k, -1, t),
                sims[:, :, :, None, :],
            ],
            dim=3,
        )  # [B, S, K, 2P+1, T]
        logits = m.scale_cnn(cnn_in.reshape(b * s, -1, t))  # [B*S, K, T]
        weights = torch.softmax(logits, dim=1).reshape(b, s, k, t)
        index = torch.arange(s, device=sims.device)
        itself = (index[:, None] == index[None, :])[None, :, :, None, None]  # [1, S, S, 1, 1]
        # the strongest rival at each scale and step; with one speaker every entry is masked: -1,
        # the value MSDD.forward fills in for S = 1
        rival = sims[:, None].expand(b, s, s, k, t).masked_fill(itself, -1.0).max(dim=2).values
        x = torch.cat([weights * sims, weights * rival, weights], dim=2)  # [B, S, 3K, T]
        h, _ = m.lstm(x.permute(0, 1, 3, 2).reshape(b * s, t, 3 * k))
        return torch.sigmoid(m.head(h)).reshape(b, s, t)


def _embedder_plan(model: nn.Module) -> tuple[nn.Module, tuple[Tensor, ...], tuple, tuple]:
    # A local generator: exporting must not move the caller's global random state.
    wav = 0.1 * torch.randn(1, model.config.sample_rate, generator=torch.Generator().manual_seed(0))
    inputs = (TensorSpec("wav", "float32", (1, "num_samples")),)
    outputs = (TensorSpec("embedding", "float32", (1, model.config.embedding_dim)),)
    return _EmbedderGraph(model), (wav,), inputs, outputs


def _decoder_plan(model: nn.Module) -> tuple[nn.Module, tuple[Tensor, ...], tuple, tuple]:
    config = model.config
    embeddings, centroids = msdd_example_inputs(config.num_scales, config.embedding_dim, 2, 20)
    inputs = (
        TensorSpec("embeddings", "float32", (1, config.num_scales, "num_steps", config.embedding_dim)),
        TensorSpec("centroids", "float32", (1, "num_speakers", config.num_scales, config.embedding_dim)),
    )
    outputs = (TensorSpec("probs", "float32", (1, "num_speakers", "num_steps")),)
    example = (torch.from_numpy(embeddings)[None], torch.from_numpy(centroids)[None])
    return _MSDDDecoderGraph(model), example, inputs, outputs


_PLANNERS = {"embedder": _embedder_plan, "decoder": _decoder_plan}


def export_speaker_graphs(model: nn.Module, out_dir: str | Path, opset: int = 18) -> dict[str, GraphSpec]:
    """Export the graph :data:`SPEAKER_GRAPHS` lists for the model's kind to ``out_dir/<name>.onnx``.

    Args:
        model: an ``ECAPATDNN`` or ``MSDD`` (exported in eval mode, left unchanged).
        out_dir: folder for the graph files (created if missing).
        opset: ONNX opset.

    Returns:
        graph name -> :class:`~speechkit_export.onnx_graphs.GraphSpec`.

    Raises:
        ConfigError: a model kind that is not a speaker model.
    """
    kind = model.config.KIND
    if kind not in SPEAKER_GRAPHS:
        raise ConfigError(f"{kind!r} is not a speaker model kind (exportable: {sorted(SPEAKER_GRAPHS)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        return {name: _export(name, model, out_dir, opset) for name in SPEAKER_GRAPHS[kind]}
    finally:
        model.train(was_training)


def _export(name: str, model: nn.Module, out_dir: Path, opset: int) -> GraphSpec:
    module, example, inputs, outputs = _PLANNERS[name](model)
    path = out_dir / f"{name}.onnx"
    dynamic_axes = {
        spec.name: {axis: size for axis, size in enumerate(spec.shape) if isinstance(size, str)}
        for spec in inputs + outputs
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic; the parity tests vary T and S
        torch.onnx.export(
            module.eval(),  # a fresh wrapper is in training mode, and export restores that mode to the model
            example,
            str(path),
            input_names=[spec.name for spec in inputs],
            output_names=[spec.name for spec in outputs],
            dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    logger.info("exported %s (%.1f kB)", path, path.stat().st_size / 1e3)
    return GraphSpec(path.name, inputs, outputs, path=path.resolve())


def msdd_example_inputs(
    num_scales: int, embedding_dim: int, num_speakers: int, num_steps: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Diarization-like MSDD inputs: embeddings [K, T, D] and centroids [S, K, D], float32, unit norm.

    Speakers take turns of a few steps; each step's embedding at each scale is its speaker's
    centroid plus noise (more at the short scales), so similarities look like a real recording's
    rather than the near-zero cosines of random vectors.

    Example:
        >>> embeddings, centroids = msdd_example_inputs(3, 8, 2, 10)
        >>> embeddings.shape, centroids.shape
        ((3, 10, 8), (2, 3, 8))
    """
    rng = np.random.default_rng(seed)
    speakers = rng.standard_normal((num_speakers, embedding_dim))
    turns = np.repeat(rng.integers(0, num_speakers, size=num_steps // 4 + 1), 4)[:num_steps]
    noise = rng.standard_normal((num_scales, num_steps, embedding_dim))
    scale_noise = np.linspace(0.6, 1.2, num_scales)[:, None, None]
    embeddings = speakers[turns][None] + scale_noise * noise
    centroids = np.stack(
        [
            speakers[s][None] + 0.2 * rng.standard_normal((num_scales, embedding_dim))
            for s in range(num_speakers)
        ]
    )

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    return unit(embeddings), unit(centroids)


@torch.no_grad()
def torch_embedding(model: nn.Module, wav: np.ndarray) -> np.ndarray:
    """``model.embed`` of one clip [T] -> float32 [D] (the reference of every embedder parity number)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size <= model.config.n_fft // 2 or not np.all(np.isfinite(wav)):
        raise AudioError(
            f"torch_embedding takes finite mono audio [T] over n_fft / 2 samples, got {wav.shape}"
        )
    return model.embed(torch.from_numpy(wav)[None])[0].numpy()


@torch.no_grad()
def torch_msdd_probs(model: nn.Module, embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``MSDD.forward`` probabilities [S, T] for embeddings [K, T, D] and centroids [S, K, D]."""
    probs, _ = model(torch.from_numpy(embeddings)[None], torch.from_numpy(centroids)[None])
    return probs[0].numpy()
