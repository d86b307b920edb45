"""Core ML export of the speechkit codecs: ML Programs (fp16) with optional weight compression.

Each graph is traced with ``torch.jit.trace`` from an export-only wrapper and converted with
coremltools to an ML Program (``.mlpackage``) with a ranged time axis (``ct.RangeDim``)::

    rvq_codec   encoder  wav f32 [1, num_samples]                     -> codes i32 [1, K, num_frames]
                decoder  codes i32 [1, num_codebooks, num_frames]     -> wav f32 [1, num_samples]

As for ONNX (:mod:`speechkit_export.onnx_graphs`) ``num_samples`` must be a multiple of the codec's
``hop_length`` (Core ML cannot state that, so the runtime pads), the encoder emits all K codebooks and
the decoder takes any 1 <= k <= K. Codes are int32 (Core ML has no int64 tensors).

Under tracing ``speechkit.features`` runs the STFT and inverse STFT as convolutions with fixed DFT
bases (its ``_exporting()`` is true inside ``torch.jit.trace``), which Core ML supports. The compute
precision is fp16 except for the encoder's spectral front-end (everything that feeds the log of the
magnitude): ``real**2 + imag**2`` of full-scale audio exceeds fp16's 65504 and quiet bins underflow,
so those few ops stay fp32.

Compression (``coremltools.optimize.coreml``, post-training, weights only) touches the learned
weights; the DFT bases, the overlap-add window and the VQ codebooks stay fp16, since a 2-bit DFT
basis or codebook would change what the graph computes rather than approximate it.

Core ML prediction needs macOS/iOS, so on Linux an export is checked structurally: the saved
package is read back as a spec and its names, dtypes and (ranged) shapes must match the
declaration (:func:`describe_mlpackage`).

Example:
    >>> import tempfile, pytest
    >>> _ = pytest.importorskip("coremltools")
    >>> from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
    >>> config = RVQCodecConfig(n_fft=64, hop_length=16, dim=16, latent_dim=8, num_quantizers=2,
    ...                         codebook_size=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1))
    >>> graphs = export_coreml(RVQCodec(config), tempfile.mkdtemp(), graphs=("decoder",))
    >>> graphs["decoder"].to_manifest()["inputs"]
    [{'name': 'codes', 'dtype': 'int32', 'shape': [1, 'num_codebooks', 'num_frames']}]
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError, SpeechkitError
from speechkit_export.bundle_writer import size_on_disk as package_size
from speechkit_export.onnx_graphs import GraphSpec, ResidualCodebookTable, TensorSpec

logger = logging.getLogger(__name__)

COMPRESSION_MODES: tuple[str, ...] = ("none", "int8", "palettize4", "palettize2")
COREML_GRAPHS: dict[str, tuple[str, ...]] = {"rvq_codec": ("encoder", "decoder")}

# Palettisation clusters each weight with coremltools' bundled 1-D k-means only for tensors of at
# least 10,000 elements (smaller ones need scikit-learn); they hold few of the bytes anyway.
PALETTIZE_MIN_ELEMENTS = 10_000
_METADATA_KEY = "speechkit.tensors"  # declared tensors (JSON): the names of the dynamic axes
_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32"}


# ---- export-only modules ---------------------------------------------------------------------------


class CoreMLRVQEncoder(nn.Module):
    """wav [1, T] -> codes int32 [1, K, T / hop_length] of every codebook, for Core ML tracing.

    ``ResidualVQ.encode`` flattens [B, D, N] to [B * N, Dc] with Python shape arithmetic that
    coremltools cannot convert (its ``int`` cast of a traced ``batch * frames`` fails); here each
    stage scores [B, N, Dc] against its codebook with one batched matmul (``|c|^2 - 2 x.c``, as
    ``speechkit.tokenizers.kmeans.nearest_code``) and takes the argmin over the last axis, so no
    shape is computed in Python. Same codes as ``RVQCodec.encode_codes`` (up to float ties).

    Args:
        model: an ``RVQCodec`` (read when built; later changes to its codebooks are not seen).

    Example:
        >>> from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
        >>> config = RVQCodecConfig(n_fft=64, hop_length=16, dim=16, latent_dim=8, num_quantizers=3,
        ...                         codebook_size=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> model = RVQCodec(config).eval()
        >>> wav = torch.randn(1, 320)
        >>> bool(torch.equal(CoreMLRVQEncoder(model)(wav).long(), model.encode_codes(wav)))
        True
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_codebooks = len(model.quantizer.layers)
        with torch.no_grad():
            for i, layer in enumerate(model.quantizer.layers):
                codebook = layer.codebook_vectors.detach().float().clone()  # [S, Dc]
                self.register_buffer(f"codebook_{i}", codebook)
                self.register_buffer(f"codebook_sq_{i}", codebook.pow(2).sum(dim=1))  # [S]

    def protected_weights(self) -> list[np.ndarray]:
        """Constants that compression must leave alone: the DFT basis and the codebooks."""
        return [self.model.stft.basis.numpy()] + [buffer.numpy() for buffer in self.buffers()]

    def forward(self, wav: Tensor) -> Tensor:
        residual = self.model.encoder(self.model.analyse(wav))  # [1, D, N]
        codes = []
        for i, layer in enumerate(self.model.quantizer.layers):
            codebook = getattr(self, f"codebook_{i}")
            latent = layer.project_in(residual)  # [1, Dc, N]
            if layer.l2_normalize:
                latent = F.normalize(latent, dim=1)
            scores = getattr(self, f"codebook_sq_{i}") - 2.0 * torch.matmul(
                latent.transpose(1, 2), codebook.t()
            )
            stage_codes = scores.argmin(dim=-1)  # [1, N]
            residual = residual - layer.project_out(F.embedding(stage_codes, codebook).transpose(1, 2))
            codes.append(stage_codes)
        # A batch of one by contract: the reshape pins axis 0, which coremltools would leave symbolic.
        return torch.stack(codes, dim=1).to(torch.int32).reshape(1, self.num_codebooks, -1)


class CoreMLRVQDecoder(nn.Module):
    """codes int32 [1, k, N] (1 <= k <= K) -> wav [1, N * hop_length], for Core ML tracing.

    Args:
        model: an ``RVQCodec`` (its codebooks are read once, into a :class:`ResidualCodebookTable`).

    Example:
        >>> from speechkit.codec.rvq_codec import RVQCodec, RVQCodecConfig
        >>> config = RVQCodecConfig(n_fft=64, hop_length=16, dim=16, latent_dim=8, num_quantizers=3,
        ...                         codebook_size=8, encoder_blocks=(1, 1), decoder_blocks=(1, 1))
        >>> model = RVQCodec(config).eval()
        >>> codes = torch.randint(0, 8, (1, 2, 5), dtype=torch.int32)
        >>> bool(torch.allclose(CoreMLRVQDecoder(model)(codes), model.decode_codes(codes.long()), atol=1e-5))
        True
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.table = model, ResidualCodebookTable(model.quantizer)

    def protected_weights(self) -> list[np.ndarray]:
        """Constants that compression must leave alone: the inverse DFT basis and the codebooks."""
        istft = self.model.istft
        return [istft.basis.numpy(), istft.window_sq.numpy(), self.table.table.numpy()]

    def forward(self, codes: Tensor) -> Tensor:
        return self.model.synthesise(self.table(codes.long())).reshape(1, -1)


# ---- export ----------------------------------------------------------------------------------------


def _import_coremltools() -> Any:
    try:
        import coremltools
    except ImportError as error:
        raise SpeechkitError("Core ML export needs coremltools: pip install 'speechkit[coreml]'") from error
    return coremltools


def _check_arguments(kind: str, graphs: Sequence[str], compression: str) -> None:
    if kind not in COREML_GRAPHS:
        raise ConfigError(
            f"codec kind {kind!r} has no Core ML export (exportable kinds: {sorted(COREML_GRAPHS)})"
        )
    unknown = [name for name in graphs if name not in COREML_GRAPHS[kind]]
    if unknown or not graphs:
        raise ConfigError(f"graphs must be a non-empty subset of {COREML_GRAPHS[kind]}, got {tuple(graphs)}")
    if compression not in COMPRESSION_MODES:
        raise ConfigError(f"unknown compression {compression!r}; choose one of {COMPRESSION_MODES}")


def export_coreml(
    model: nn.Module,
    out_dir: str | Path,
    graphs: Sequence[str] = ("encoder", "decoder"),
    compression: str = "none",
    example_frames: int = 20,
    max_frames: int = 3000,
    minimum_deployment_target: str = "iOS16",
) -> dict[str, GraphSpec]:
    """Convert a codec's graphs to Core ML ML Programs ``out_dir/<name>.mlpackage``.

    Args:
        model: an ``RVQCodec``; exported in eval mode, left unchanged.
        out_dir: folder for the packages (created if missing; a package of the same name is replaced).
        graphs: which of ``COREML_GRAPHS[kind]`` to export.
        compression: "none" (fp16 weights), "int8" (linear symmetric per-channel), "palettize4" or
            "palettize2" (k-means look-up tables per tensor, 16 or 4 entries).
        example_frames: token frames of the traced example (the time axis stays ranged).
        max_frames: upper bound of the ranged time axis, in token frames.
        minimum_deployment_target: a ``coremltools.target`` name, e.g. "iOS16", "macOS13", "iOS18".

    Returns:
        graph name -> :class:`GraphSpec` with ``runtime="coreml"`` (``to_manifest()`` is the
        manifest entry; the dynamic axes are named as in the ONNX export).

    Raises:
        ConfigError: an unknown kind, graph, compression mode or deployment target.
        SpeechkitError: coremltools missing, or a saved package that disagrees with its declaration.
    """
    kind = model.config.KIND
    _check_arguments(kind, graphs, compression)
    ct = _import_coremltools()
    try:
        target = ct.target[minimum_deployment_target]
    except KeyError:
        raise ConfigError(f"unknown minimum_deployment_target {minimum_deployment_target!r}") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        return {
            name: _export_graph(ct, model, name, out_dir, compression, example_frames, max_frames, target)
            for name in graphs
        }
    finally:
        model.train(was_training)


def _plan(ct: Any, model: nn.Module, name: str, frames: int, max_frames: int) -> tuple:
    """(wrapper, example input, ct input type, declared inputs, declared outputs) of one graph."""
    hop, num = int(model.hop_length), len(model.codebook_sizes)
    wav = TensorSpec("wav", "float32", (1, "num_samples"))
    if name == "encoder":
        example = torch.randn(1, frames * hop) * 0.1
        # Reflect padding needs more samples than it pads: the shortest input is whole hops above it.
        shortest = hop * (model.stft.pad // hop + 1)
        shape = (1, ct.RangeDim(shortest, hop * max_frames, default=frames * hop))
        ct_input = ct.TensorType(name="wav", shape=shape, dtype=np.float32)
        codes = TensorSpec("codes", "int32", (1, num, "num_frames"))
        return CoreMLRVQEncoder(model), example, ct_input, (wav,), (codes,)
    example = torch.randint(0, min(model.codebook_sizes), (1, num, frames), dtype=torch.int32)
    shape = (1, ct.RangeDim(1, num, default=num), ct.RangeDim(1, max_frames, default=frames))
    ct_input = ct.TensorType(name="codes", shape=shape, dtype=np.int32)
    codes = TensorSpec("codes", "int32", (1, "num_codebooks", "num_frames"))
    return CoreMLRVQDecoder(model), example, ct_input, (codes,), (wav,)


def _export_graph(
    ct: Any,
    model: nn.Module,
    name: str,
    out_dir: Path,
    compression: str,
    frames: int,
    max_frames: int,
    target: Any,
) -> GraphSpec:
    wrapper, example, ct_input, inputs, outputs = _plan(ct, model, name, frames, max_frames)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings are about Python-side shape checks; the ranged axes are checked below.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper.eval(), example)
        mlmodel = ct.convert(
            traced,
            inputs=[ct_input],
            outputs=[ct.TensorType(name=spec.name, dtype=_numpy_dtype(spec.dtype)) for spec in outputs],
            convert_to="mlprogram",
            compute_precision=ct.transform.FP16ComputePrecision(op_selector=_Float32Frontend()),
            minimum_deployment_target=target,
        )
    mlmodel = compress(mlmodel, compression, wrapper.protected_weights())
    mlmodel.short_description = f"speechkit {model.config.KIND} {name} ({compression})"
    declared = {"inputs": [s.to_manifest() for s in inputs], "outputs": [s.to_manifest() for s in outputs]}
    mlmodel.user_defined_metadata[_METADATA_KEY] = json.dumps(declared)
    mlmodel.user_defined_metadata["speechkit.compression"] = compression
    path = out_dir / f"{name}.mlpackage"
    if path.is_dir():
        shutil.rmtree(path)
    mlmodel.save(str(path))
    found = describe_mlpackage(path)
    for key in ("inputs", "outputs"):
        got = [{k: t[k] for k in ("name", "dtype", "shape")} for t in found[key]]
        if got != declared[key]:
            raise SpeechkitError(
                f"{path.name}: the saved {key} {got} differ from the declared {declared[key]}"
            )
    logger.info("exported %s (%s, %.1f kB)", path, compression, package_size(path) / 1e3)
    return GraphSpec(path.name, inputs, outputs, runtime="coreml", path=path.resolve())


def _numpy_dtype(dtype: str) -> type:
    return {"float32": np.float32, "int32": np.int32}[dtype]


class _Float32Frontend:
    """``op_selector`` for fp16 compute: True (fp16) for every op except those that feed a ``log``.

    In the encoder those are the padding, the DFT convolution and the magnitude; the decoder has no
    ``log``, so it is fp16 throughout. The set is computed once, on the first op seen.
    """

    def __init__(self) -> None:
        self._keep_fp32: set[str] | None = None

    def __call__(self, op: Any) -> bool:
        if self._keep_fp32 is None:
            self._keep_fp32 = set()
            stack = [o for o in op.enclosing_block.operations if o.op_type == "log"]
            while stack:
                current = stack.pop()
                if current.name in self._keep_fp32:
                    continue
                self._keep_fp32.add(current.name)
                stack.extend(
                    var.op for var in current.inputs.values() if getattr(var, "op", None) is not None
                )
        return op.name not in self._keep_fp32


# ---- compression -----------------------------------------------------------------------------------


def compress(mlmodel: Any, compression: str, protected: Sequence[np.ndarray] = ()) -> Any:
    """Compress the weights of an ML Program, leaving the constants equal to ``protected`` as they are.

    Args:
        mlmodel: a ``coremltools.models.MLModel`` of type mlprogram (fp16 or fp32 weights).
        compression: one of :data:`COMPRESSION_MODES` ("none" returns ``mlmodel``).
        protected: arrays whose constants (same values, same or transposed 2-D shape) stay
            uncompressed, e.g. DFT bases and codebooks.

    Returns:
        the compressed ``MLModel``.

    Raises:
        ConfigError: an unknown mode.

    Example:
        >>> compress(None, "none") is None
        True
    """
    if compression not in COMPRESSION_MODES:
        raise ConfigError(f"unknown compression {compression!r}; choose one of {COMPRESSION_MODES}")
    if compression == "none":
        return mlmodel
    _import_coremltools()
    import coremltools.optimize.coreml as cto

    if compression == "int8":
        op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
        threshold = op_config.weight_threshold
    else:
        nbits = int(compression.removeprefix("palettize"))
        threshold = PALETTIZE_MIN_ELEMENTS - 1  # weight_threshold is exclusive
        op_config = cto.OpPalettizerConfig(nbits=nbits, mode="kmeans", weight_threshold=threshold)
    weights = cto.get_weights_metadata(mlmodel, weight_threshold=threshold)
    skip = {name: None for name, meta in weights.items() if _matches_any(meta.val, protected)}
    logger.info("%s: leaving %d protected constants uncompressed: %s", compression, len(skip), sorted(skip))
    config = cto.OptimizationConfig(global_config=op_config, op_name_configs=skip)
    if compression == "int8":
        return cto.linear_quantize_weights(mlmodel, config)
    return cto.palettize_weights(mlmodel, config)


def _matches_any(value: np.ndarray, protected: Sequence[np.ndarray]) -> bool:
    value = np.asarray(value, dtype=np.float32)
    for array in protected:
        candidates = [array] + ([array.T] if array.ndim == 2 else [])
        for candidate in candidates:
            if candidate.shape == value.shape and np.allclose(value, candidate, rtol=1e-3, atol=1e-6):
                return True
    return False


# ---- reading packages back -------------------------------------------------------------------------


def describe_mlpackage(path: str | Path) -> dict:
    """Inputs and outputs of a saved ML Program, read back from its spec (no Core ML runtime needed).

    Input shapes come from the description's shape ranges, output shapes from the program's output
    types (Core ML records no ranges for outputs). An axis is an int when fixed, else the name the
    exporter declared for it (``"<tensor>_axis<i>"`` for packages not written by speechkit).

    Args:
        path: a ``.mlpackage`` folder.

    Returns:
        ``{"inputs": [...], "outputs": [...], "metadata": {...}, "size_bytes": int}``; each tensor is
        ``{"name", "dtype", "shape", "bounds"}`` with ``bounds`` a [low, high] per axis for inputs
        (high -1: unbounded) and None for outputs.

    Raises:
        SpeechkitError: coremltools missing, or a path that is not an ML Program package.

    Example: see the module docstring (:func:`export_coreml` reads every package back with this).
    """
    ct = _import_coremltools()
    path = Path(path)
    if not path.is_dir():
        raise SpeechkitError(f"{path} is not an .mlpackage folder")
    spec = ct.utils.load_spec(str(path))
    if spec.WhichOneof("Type") != "mlProgram":
        raise SpeechkitError(f"{path.name} is not an ML Program (it holds {spec.WhichOneof('Type')!r})")
    metadata = dict(spec.description.metadata.userDefined)
    declared = json.loads(metadata.get(_METADATA_KEY, '{"inputs": [], "outputs": []}'))
    axis_names = {t["name"]: t["shape"] for t in declared["inputs"] + declared["outputs"]}
    data_type = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    function = spec.mlProgram.functions["main"]
    output_types = {
        var.name: var.type.tensorType
        for op in function.block_specializations[function.opset].operations
        for var in op.outputs
    }

    def tensor(feature: Any, dims: list[int | None], bounds: list[list[int]] | None) -> dict:
        names = axis_names.get(feature.name, [])
        shape = [
            size if size is not None else _axis_name(names, axis, feature.name)
            for axis, size in enumerate(dims)
        ]
        dtype = data_type.Name(feature.type.multiArrayType.dataType)
        return {
            "name": feature.name,
            "dtype": _DTYPES.get(dtype, dtype.lower()),
            "shape": shape,
            "bounds": bounds,
        }

    inputs = []
    for feature in spec.description.input:
        ranges = [[r.lowerBound, r.upperBound] for r in feature.type.multiArrayType.shapeRange.sizeRanges]
        ranges = ranges or [[s, s] for s in feature.type.multiArrayType.shape]
        inputs.append(tensor(feature, [lo if lo == hi else None for lo, hi in ranges], ranges))
    outputs = []
    for feature in spec.description.output:
        dims = [
            d.constant.size if d.HasField("constant") else None for d in output_types[feature.name].dimensions
        ]
        outputs.append(tensor(feature, dims, None))
    return {"inputs": inputs, "outputs": outputs, "metadata": metadata, "size_bytes": package_size(path)}


def _axis_name(declared: list, axis: int, tensor_name: str) -> str:
    name = declared[axis] if axis < len(declared) else None
    return name if isinstance(name, str) else f"{tensor_name}_axis{axis}"
