"""ResidualVQ: error falls with stages, quantizer dropout, gradients, bitrate, Tokens round trip."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from speechkit.errors import ConfigError
from speechkit.tokenizers import ResidualVQ, Tokens, pack_codes, unpack_codes


@pytest.mark.slow
def test_reconstruction_error_falls_strictly_with_each_stage():
    rvq = ResidualVQ(dim=8, num_quantizers=4, codebook_size=32)
    for _ in range(40):
        out = rvq(torch.randn(16, 8, 64))
    assert out.usage.min() >= 0.9
    rvq.eval()
    x = torch.randn(16, 8, 64)
    errors = [(rvq.decode(rvq.encode(x, n)) - x).pow(2).mean().item() for n in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.7 * errors[0], errors


def test_quantizer_dropout_uses_fewer_stages_in_training_only():
    # No dead-code restarts: they would change codebooks before this forward's lookup.
    rvq = ResidualVQ(4, 4, 16, quantizer_dropout=1.0, threshold_ema_dead_code=0.0)
    rvq(torch.randn(8, 4, 20))  # first batch: k-means init of every stage
    before = copy.deepcopy(rvq).eval()  # codebooks as the next forward sees them
    x = torch.randn(32, 4, 20)
    out = rvq(x)
    assert out.num_stages.min() >= 1 and out.num_stages.max() <= 4
    assert (out.num_stages < 4).any()  # P(all 32 items keep 4 stages) = 4**-32
    for b in range(32):
        n = int(out.num_stages[b])
        expected = before.decode(out.codes[b : b + 1, :n])
        assert torch.allclose(out.quantized[b : b + 1], expected, atol=1e-5), (b, n)

    rvq.eval()
    out = rvq(x)
    assert (out.num_stages == 4).all()
    assert torch.allclose(out.quantized, rvq.decode(out.codes), atol=1e-5)


def test_no_dropout_when_disabled_or_stage_count_given():
    rvq = ResidualVQ(dim=4, num_quantizers=4, codebook_size=16, quantizer_dropout=0.0)
    assert (rvq(torch.randn(8, 4, 10)).num_stages == 4).all()
    rvq = ResidualVQ(dim=4, num_quantizers=4, codebook_size=16, quantizer_dropout=1.0)
    out = rvq(torch.randn(8, 4, 10), num_quantizers=2)
    assert out.codes.shape == (8, 2, 10) and (out.num_stages == 2).all()
    assert out.perplexity.shape == out.usage.shape == (2,)


def test_gradient_is_straight_through_across_stages():
    rvq = ResidualVQ(dim=4, num_quantizers=3, codebook_size=8, quantizer_dropout=0.5)
    x = torch.randn(4, 4, 12, requires_grad=True)
    rvq(x).quantized.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_factorised_learned_stages_get_gradients():
    rvq = ResidualVQ(
        dim=8, num_quantizers=2, codebook_size=8, codebook_dim=2, l2_normalize=True, ema_decay=None
    )
    x = torch.randn(2, 8, 16)
    out = rvq(x)
    ((out.quantized - x).pow(2).mean() + out.commitment_loss + out.codebook_loss).backward()
    for layer in rvq.layers:
        assert layer.codebook.grad is not None and layer.codebook.grad.abs().sum() > 0
        assert layer.project_in.weight.grad.abs().sum() > 0
        assert layer.project_out.weight.grad.abs().sum() > 0


def test_losses_are_sums_over_stages():
    rvq = ResidualVQ(dim=4, num_quantizers=3, codebook_size=8).eval()
    x = torch.randn(2, 4, 10)
    out = rvq(x)
    residual, expected = x, 0.0
    for layer in rvq.layers:
        stage = layer(residual)
        expected += stage.commitment_loss.item()
        residual = residual - stage.quantized
    assert out.commitment_loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.codebook_loss == 0


def test_decode_accepts_fewer_codebooks_and_rejects_more():
    rvq = ResidualVQ(dim=4, num_quantizers=3, codebook_size=8)
    rvq(torch.randn(2, 4, 30))
    x = torch.randn(2, 4, 5)
    codes = rvq.encode(x)
    assert codes.shape == (2, 3, 5)
    assert torch.equal(rvq.encode(x, num_quantizers=1), codes[:, :1])
    assert rvq.decode(codes[:, :2]).shape == (2, 4, 5)
    with pytest.raises(ValueError, match="1 <= n <= 3"):
        rvq.decode(torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="num_quantizers"):
        rvq.encode(x, num_quantizers=4)
    with pytest.raises(ConfigError):
        ResidualVQ(dim=4, num_quantizers=3, codebook_size=8, quantizer_dropout=1.5)


def test_bitrate_helper():
    rvq = ResidualVQ(dim=4, num_quantizers=8, codebook_size=1024)
    assert rvq.bitrate(frame_rate=50.0) == 4000.0
    assert rvq.bitrate(frame_rate=50.0, num_quantizers=2) == 1000.0
    assert rvq.codebook_sizes == (1024,) * 8


def test_tokens_bitstream_round_trip():
    rvq = ResidualVQ(dim=4, num_quantizers=3, codebook_size=16)
    rvq(torch.randn(2, 4, 40))
    rvq.eval()
    x = torch.randn(1, 4, 25)
    tokens = Tokens(rvq.encode(x).numpy(), 50.0, rvq.codebook_sizes, kind="rvq_test")
    data = pack_codes(tokens.codes[0], tokens.codebook_sizes)
    assert len(data) == 25 * 3 * 4 // 8 + 1  # 300 bits -> 38 bytes
    codes = unpack_codes(data, tokens.codebook_sizes, tokens.num_frames)[None]
    np.testing.assert_array_equal(codes, tokens.codes)
    assert torch.equal(rvq.decode(torch.from_numpy(codes)), rvq.decode(tokens.to_torch()))
    assert torch.allclose(rvq.decode(tokens.to_torch()), rvq(x).quantized, atol=1e-6)


class _Method(torch.nn.Module):
    """Exposes one method of a module as ``forward``, for export."""

    def __init__(self, module: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.module, self.method)(x)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_encode_and_decode_export_to_onnx(tmp_path):
    """No data-dependent Python control flow on the encode/decode paths: the graphs generalise.

    The TorchScript exporter is used because it takes well under a second here; the dynamo
    exporter also exports them, with the same outputs (checked by hand), but takes about ten.
    """
    import onnxruntime

    rvq = ResidualVQ(8, 3, 16, codebook_dim=4, l2_normalize=True)
    rvq(torch.randn(4, 8, 50))
    rvq.eval()
    x = torch.randn(2, 8, 13)
    batch_and_time = {0: "B", 2: "T"}
    encode_path, decode_path = str(tmp_path / "encode.onnx"), str(tmp_path / "decode.onnx")
    torch.onnx.export(
        _Method(rvq, "encode"),
        (x,),
        encode_path,
        input_names=["x"],
        output_names=["codes"],
        dynamic_axes={"x": batch_and_time, "codes": batch_and_time},
        dynamo=False,
    )
    torch.onnx.export(
        _Method(rvq, "decode"),
        (rvq.encode(x),),
        decode_path,
        input_names=["codes"],
        output_names=["y"],
        dynamic_axes={"codes": batch_and_time, "y": batch_and_time},
        dynamo=False,
    )
    other = torch.randn(3, 8, 21)  # another batch size and length than the traced ones
    codes = onnxruntime.InferenceSession(encode_path).run(None, {"x": other.numpy()})[0]
    np.testing.assert_array_equal(codes, rvq.encode(other).numpy())
    decoded = onnxruntime.InferenceSession(decode_path).run(None, {"codes": codes})[0]
    np.testing.assert_allclose(decoded, rvq.decode(torch.from_numpy(codes)).detach().numpy(), atol=1e-6)
