"""torch -> ONNX round trips of the blocks with a dynamic time axis (TorchScript exporter, opset 17)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from speechkit.nn import ConvEncoderStack, KVCache, Transformer


def _export(model: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    dynamic_axes = {name: {0: "batch", 1: "time"} for name in names}
    dynamic_axes["y"] = {0: "batch", 1: "time"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but still exact
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=names,
            output_names=["y"],
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )


class _EncoderOnTime(nn.Module):
    """Put time on axis 1 of input and output so one dynamic_axes spec serves both graphs."""

    def __init__(self, encoder: ConvEncoderStack) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, T / hop, D]
        return self.encoder(x.unsqueeze(1)).transpose(1, 2)


@pytest.mark.slow
def test_windowed_transformer_exports_with_dynamic_time(tmp_path: Path) -> None:
    model = Transformer(16, depth=2, num_heads=2, window_size=3).eval()
    path = tmp_path / "transformer.onnx"
    example = (torch.randn(1, 9, 16), torch.ones(1, 9, dtype=torch.bool))
    _export(model, example, ["x", "padding_mask"], path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 9), (2, 23)):
        x = torch.randn(batch, length, 16)
        mask = torch.ones(batch, length, dtype=torch.bool)
        mask[-1, length - 4 :] = False
        (y,) = session.run(None, {"x": x.numpy(), "padding_mask": mask.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(y, model(x, mask).numpy(), atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("causal", [False, True])
def test_conv_encoder_stack_exports_with_dynamic_time(tmp_path: Path, causal: bool) -> None:
    encoder = ConvEncoderStack(1, 4, strides=(2, 3), causal=causal, out_channels=8, activation="snake")
    model = _EncoderOnTime(encoder).eval()
    path = tmp_path / "encoder.onnx"
    _export(model, (torch.randn(1, 48),), ["x"], path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 48), (2, 61)):
        x = torch.randn(batch, length)
        (y,) = session.run(None, {"x": x.numpy()})
        assert y.shape == (batch, -(-length // 6), 8)
        with torch.no_grad():
            np.testing.assert_allclose(y, model(x).numpy(), atol=1e-4, rtol=0)


class _TransformerStep(nn.Module):
    """Step graph with the KV cache as explicit tensors: (x, offset, k0, v0, k1, v1, ...)."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, offset: torch.Tensor, *kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = [KVCache(kv[2 * i], kv[2 * i + 1], offset) for i in range(len(kv) // 2)]
        y, cache = self.model.step(x, cache)
        return (y, cache[0].offset, *[t for layer in cache for t in (layer.k, layer.v)])


@pytest.mark.slow
@pytest.mark.parametrize("window_size", [None, 3])
def test_kv_cache_step_graph_decodes_like_torch(tmp_path: Path, window_size: int | None) -> None:
    model = Transformer(16, depth=2, num_heads=2, causal=True, window_size=window_size).eval()
    _, cache = model.step(torch.randn(1, 2, 16), model.initial_cache(1))  # a non-empty example cache
    kv_names = [f"{kind}{i}" for i in range(2) for kind in ("k", "v")]
    dynamic_axes = {"x": {0: "batch", 1: "n"}, "y": {0: "batch", 1: "n"}}
    dynamic_axes |= {name: {0: "batch", 2: "cache"} for name in kv_names}
    dynamic_axes |= {f"{name}_out": {0: "batch", 2: "cache_out"} for name in kv_names}
    path = tmp_path / "step.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _TransformerStep(model),
            (torch.randn(1, 1, 16), cache[0].offset, *[t for layer in cache for t in (layer.k, layer.v)]),
            str(path),
            input_names=["x", "offset", *kv_names],
            output_names=["y", "offset_out", *[f"{name}_out" for name in kv_names]],
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 8, 16)
    empty = model.initial_cache(2)
    feeds = {"offset": np.array(0, dtype=np.int64)}
    feeds |= {
        name: t.numpy() for name, t in zip(kv_names, [t for c in empty for t in (c.k, c.v)], strict=True)
    }
    outputs = []
    for t in range(8):
        y, offset, *kv = session.run(None, feeds | {"x": x[:, t : t + 1].numpy()})
        outputs.append(y)
        feeds = {"offset": offset} | dict(zip(kv_names, kv, strict=True))
    with torch.no_grad():
        np.testing.assert_allclose(np.concatenate(outputs, axis=1), model(x).numpy(), atol=1e-4, rtol=0)
    assert feeds["k0"].shape[2] == (8 if window_size is None else window_size)


class _EncoderStep(nn.Module):
    def __init__(self, encoder: ConvEncoderStack) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, new_state = self.encoder.step(x, list(state))
        return (y, *new_state)


@pytest.mark.slow
def test_causal_encoder_step_graph_streams_like_torch(tmp_path: Path) -> None:
    encoder = ConvEncoderStack(1, 4, strides=(2, 3), causal=True, out_channels=8, dilations=(1, 3)).eval()
    state = encoder.initial_state(1)
    names = [f"state{i}" for i in range(len(state))]
    path = tmp_path / "encoder_step.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _EncoderStep(encoder),
            (torch.randn(1, 1, 12), *state),
            str(path),
            input_names=["x", *names],
            output_names=["y", *[f"{name}_out" for name in names]],
            dynamic_axes={"x": {2: "time"}, "y": {2: "frames"}},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 1, 48)
    feeds = {name: s.numpy() for name, s in zip(names, state, strict=True)}
    outputs, start = [], 0
    for size in (6, 24, 18):
        y, *new_state = session.run(None, feeds | {"x": x[..., start : start + size].numpy()})
        outputs.append(y)
        feeds = dict(zip(names, new_state, strict=True))
        start += size
    with torch.no_grad():
        np.testing.assert_allclose(np.concatenate(outputs, axis=-1), encoder(x).numpy(), atol=1e-4, rtol=0)
