"""``nn.ConvTranspose1d`` as the matrix the weight quantisers work on: its polyphase (sub-pixel) form.

A transposed conv with stride s and kernel ``K = M * s`` (weight [C_in, C_out, K]) computes, for
output block t' (samples ``t' * s + p``, phase p in [0, s))::

    y[o, t' * s + p] = sum_{i, m} W[i, o, m * s + p] * x[i, t' - m]        m in [0, M)

so it is an ordinary conv over its input x with ``C_out * s`` output rows ``(o, p)`` and receptive
fields of ``C_in * M`` columns ``(i, m)`` (input channel major, lag m fastest). In that view the layer's
output error is exactly a per-row quadratic form ``d_r H d_r^T`` with ``H = X X^T`` over the lagged
input columns (:func:`polyphase_columns`), which is what GPTQ and decoupleQ minimise. (The naive views
are not: rows = input channels couples rows through H; rows = (o, k) with H over input channels drops
the cross terms between the overlapping taps k and k + s.) Output trimming (``PaddedConvTranspose1d``
cuts ``K - s`` edge samples) is ignored: a few samples per clip.

On codec-rvq (decoder.up.conv, 256 -> 256, K = 4, s = 2; 4 bits, groups of 64, float encoder, 6 test
utterances) this view gave decoder SNR 36.7 dB with decoupleQ and 36.2 dB with GPTQ against 28.6 dB
for RTN on the [C_in, C_out * K] view (output error 1.6e-4, 1.9e-4 and 1.7e-3 of the output energy);
RTN itself is no worse in this view (29.2 dB), so every method uses it.

The weight's layout is rebuilt by :func:`from_polyphase` (and by ``speechkit_rt.weights`` at load).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError

POLYPHASE_LAYOUT = "conv_transpose_polyphase"
"""Manifest name of the layout (``extra.weights[i].layout``) that :func:`from_polyphase` undoes."""


def supports_conv_transpose(module: nn.Module) -> bool:
    """True for a ConvTranspose1d this module can view as a conv: groups 1, dilation 1, no padding,
    no output padding, kernel a multiple of the stride."""
    if not isinstance(module, nn.ConvTranspose1d):
        return False
    (kernel,), (stride,) = module.kernel_size, module.stride
    return (
        module.groups == 1
        and module.dilation == (1,)
        and module.padding == (0,)
        and module.output_padding == (0,)
        and kernel % stride == 0
    )


def polyphase_matrix(weight: Tensor, stride: int) -> Tensor:
    """[C_in, C_out, M * s] -> [C_out * s, C_in, M]: row (o, p), column (i, m) holds ``W[i, o, m * s + p]``.

    Example:
        >>> w = torch.arange(8.0).reshape(1, 2, 4)   # C_in 1, C_out 2, K 4, stride 2
        >>> polyphase_matrix(w, 2)[:, 0].tolist()    # rows (o, p); columns m = 0, 1
        [[0.0, 2.0], [1.0, 3.0], [4.0, 6.0], [5.0, 7.0]]
        >>> torch.equal(from_polyphase(polyphase_matrix(w, 2), 2), w)
        True
    """
    in_channels, out_channels, kernel = weight.shape
    if kernel % stride:
        raise ConfigError(f"kernel {kernel} is not a multiple of the stride {stride}")
    taps = kernel // stride
    # [C_in, C_out, M, s] -> [C_out, s, C_in, M]
    view = weight.reshape(in_channels, out_channels, taps, stride).permute(1, 3, 0, 2)
    return view.reshape(out_channels * stride, in_channels, taps)


def from_polyphase(matrix: Tensor, stride: int) -> Tensor:
    """Inverse of :func:`polyphase_matrix`: [C_out * s, C_in, M] -> [C_in, C_out, M * s]."""
    rows, in_channels, taps = matrix.shape
    view = matrix.reshape(rows // stride, stride, in_channels, taps).permute(
        2, 0, 3, 1
    )  # [C_in, C_out, M, s]
    return view.reshape(in_channels, rows // stride, taps * stride)


def polyphase_columns(conv: nn.ConvTranspose1d, x: Tensor) -> Tensor:
    """Lagged input columns of a ConvTranspose1d: [B, C_in, T] -> [1, C_in * M, B * (T + M - 1)].

    Column t' of batch item b holds ``x[b, i, t' - m]`` at row ``i * M + m`` (zero outside the input),
    so ``polyphase_matrix(W).reshape(C_out * s, -1) @ columns`` gives output block t' (bias aside).

    Example:
        >>> conv = nn.ConvTranspose1d(3, 2, kernel_size=4, stride=2, bias=False)
        >>> x = torch.randn(1, 3, 5)
        >>> blocks = polyphase_matrix(conv.weight, 2).reshape(4, -1) @ polyphase_columns(conv, x)[0]
        >>> y = blocks.reshape(2, 2, 6).permute(0, 2, 1).reshape(1, 2, 12)   # [B, C_out, (t', p)]
        >>> torch.allclose(y, conv(x), atol=1e-6)
        True
    """
    if x.dim() == 2:  # unbatched input [C_in, T]
        x = x.unsqueeze(0)
    (kernel,), (stride,) = conv.kernel_size, conv.stride
    taps = kernel // stride
    batch, channels, length = x.shape
    padded = F.pad(x, (taps - 1, taps - 1))
    blocks = length + taps - 1
    # lag m of block t' is padded[..., t' + taps - 1 - m]
    lagged = torch.stack([padded[..., taps - 1 - m : taps - 1 - m + blocks] for m in range(taps)], dim=2)
    return lagged.permute(1, 2, 0, 3).reshape(1, channels * taps, batch * blocks)  # [1, (i, m), (b, t')]
