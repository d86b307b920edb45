"""Single-Codec's time-invariant global embedding: the reference encoder and the blocks it conditions.

Single-Codec (Li et al. 2024, section 2, "disentangled VQ-VAE") splits speech into one global
embedding per utterance (timbre, recording conditions: what does not change over time) and a
single-codebook token sequence for everything else. A reference encoder turns an utterance's mel
spectrogram into the embedding; every decoder block is conditioned on it. Because the decoder gets
the time-invariant part for free, the tokens need not spend bits on it.

Conditioning is adaptive LayerNorm inside ConvNeXt blocks, as Vocos conditions its ConvNeXt
backbone (Siuzdak 2023, section 3), zero-initialised so that it starts as a plain ConvNeXt block.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.nn.conditioning import AdaptiveLayerNorm
from speechkit.nn.conv import ConvNeXtBlock, PaddedConv1d
from speechkit.nn.res2net import AttentiveStatisticsPooling


class ReferenceEncoder(nn.Module):
    """Log-mel [B, n_mels, N] -> one global embedding [B, D] per utterance, for any N >= 1.

    A strided conv, ConvNeXt blocks for local context, attentive statistics pooling over all frames
    (ECAPA-TDNN, Desplanques et al. 2020, section 3.3) and a linear layer. Pooling makes the output
    independent of the length and, up to the blocks' short receptive field, of the order of frames;
    the stride halves the cost, as statistics over an utterance need no 10 ms resolution.

    Args:
        n_mels: mel bands of the input.
        channels: width C of the conv blocks.
        num_blocks: ConvNeXt blocks.
        out_dim: D, the embedding width.
        kernel_size: depthwise kernel of the blocks (receptive field of the frame features).
        attention_channels: hidden width of the pooling attention.
        stride: frame stride of the input conv.

    Example:
        >>> encoder = ReferenceEncoder(n_mels=8, channels=16, num_blocks=1, out_dim=4)
        >>> encoder(torch.randn(2, 8, 30)).shape, encoder(torch.randn(2, 8, 7)).shape
        (torch.Size([2, 4]), torch.Size([2, 4]))
    """

    def __init__(
        self,
        n_mels: int,
        channels: int,
        num_blocks: int,
        out_dim: int,
        kernel_size: int = 5,
        attention_channels: int = 64,
        stride: int = 2,
    ) -> None:
        super().__init__()
        self.input = PaddedConv1d(n_mels, channels, 2 * stride, stride=stride)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(channels, kernel_size) for _ in range(num_blocks)])
        self.pool = AttentiveStatisticsPooling(channels, attention_channels)
        self.norm = nn.LayerNorm(2 * channels)
        self.output = nn.Linear(2 * channels, out_dim)

    def forward(self, mel: Tensor) -> Tensor:
        return self.output(self.norm(self.pool(self.blocks(self.input(mel)))))


class ConditionedConvNeXtBlock(nn.Module):
    """ConvNeXt block whose LayerNorm takes its scale and shift from a global vector (Vocos AdaLN).

    Depthwise conv, adaptive LayerNorm over C, pointwise GELU MLP, layer scale, residual; equal to
    :class:`~speechkit.nn.conv.ConvNeXtBlock` (without the LayerNorm's affine) at initialisation.

    Args:
        dim: channel count C.
        cond_dim: width of the conditioning vector.
        kernel_size: depthwise kernel width.
        mlp_ratio: MLP hidden width as a multiple of C.
        layer_scale_init: initial per-channel residual scale.

    Shapes:
        x: [B, C, T], cond: [B, cond_dim] -> [B, C, T].

    Example:
        >>> block = ConditionedConvNeXtBlock(8, cond_dim=4)
        >>> block(torch.randn(2, 8, 11), torch.randn(2, 4)).shape
        torch.Size([2, 8, 11])
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        hidden = int(round(mlp_ratio * dim))
        self.dwconv = PaddedConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = AdaptiveLayerNorm(dim, cond_dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        y = self.dwconv(x).transpose(1, 2)  # [B, T, C]
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y, cond)))) * self.gamma
        return x + y.transpose(1, 2)


class ConditionedStack(nn.Module):
    """A sequence of :class:`ConditionedConvNeXtBlock` sharing one conditioning vector.

    Example:
        >>> stack = ConditionedStack(2, dim=8, cond_dim=4)
        >>> stack(torch.randn(1, 8, 5), torch.randn(1, 4)).shape
        torch.Size([1, 8, 5])
    """

    def __init__(
        self, num_blocks: int, dim: int, cond_dim: int, kernel_size: int = 7, mlp_ratio: float = 3.0
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ConditionedConvNeXtBlock(dim, cond_dim, kernel_size, mlp_ratio) for _ in range(num_blocks)
        )

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, cond)
        return x
