"""Single-Codec's hybrid sampling and resampling modules (Li et al. 2024, "Single-Codec", section 2).

Hybrid sampling: a learned strided path and a fixed path are added, so a change of frame rate
never depends on the learned kernel alone. Downsampling adds a strided convolution and average
pooling; upsampling adds a transposed convolution and plain repetition of every frame. The paper
introduces it to reduce the distortion that sampling alone causes.

Resampling: inside the encoder the features are downsampled further, modelled at that coarser rate,
upsampled back and added to their input. The detour through a lower rate gives every token-rate
unit a longer view, which the paper finds makes the discrete units carry more phonetic (and less
frame-local acoustic) information.

All blocks work on [B, C, T] and are not causal.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.nn.conv import ConvNeXtBlock, PaddedConv1d, PaddedConvTranspose1d


def _check_factor(factor: int) -> None:
    if factor < 1:
        raise ConfigError(f"a sampling factor must be >= 1, got {factor}")


class HybridDownsample(nn.Module):
    """Strided conv + average pooling, added: [B, C_in, T] -> [B, C_out, ceil(T / factor)].

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out (a 1x1 conv maps the pooled path when they differ).
        factor: downsampling factor s; the conv has kernel 2s.

    Example:
        >>> import torch
        >>> HybridDownsample(8, 8, factor=4)(torch.randn(2, 8, 10)).shape
        torch.Size([2, 8, 3])
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        _check_factor(factor)
        self.factor = factor
        self.conv = PaddedConv1d(in_channels, out_channels, 2 * factor, stride=factor)
        self.pool_proj = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        remainder = x.shape[-1] % self.factor
        # Pad a partial last block by repeating the last frame, so its mean is not pulled to zero.
        padded = F.pad(x, (0, self.factor - remainder), mode="replicate") if remainder else x
        pooled = F.avg_pool1d(padded, self.factor)
        if self.pool_proj is not None:
            pooled = self.pool_proj(pooled)
        return self.conv(x) + pooled


class HybridUpsample(nn.Module):
    """Transposed conv + frame repetition, added: [B, C_in, T] -> [B, C_out, T * factor].

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out (a 1x1 conv maps the repeated path when they differ).
        factor: upsampling factor s; the transposed conv has kernel 2s.

    Example:
        >>> import torch
        >>> HybridUpsample(8, 4, factor=4)(torch.randn(2, 8, 3)).shape
        torch.Size([2, 4, 12])
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        _check_factor(factor)
        self.factor = factor
        self.conv = PaddedConvTranspose1d(in_channels, out_channels, 2 * factor, stride=factor)
        self.repeat_proj = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        repeated = x if self.repeat_proj is None else self.repeat_proj(x)
        return self.conv(x) + repeated.repeat_interleave(self.factor, dim=-1)


class ResamplingModule(nn.Module):
    """Down by ``factor``, ConvNeXt blocks at the coarse rate, back up, plus the input.

    Args:
        dim: channel count C.
        factor: how much coarser the inner rate is.
        num_blocks: ConvNeXt blocks at the coarse rate.
        kernel_size: their depthwise kernel.
        mlp_ratio: their MLP width as a multiple of C.

    Shapes:
        x: [B, C, T] -> [B, C, T] (any T; the coarse sequence is ceil(T / factor) long).

    Example:
        >>> import torch
        >>> ResamplingModule(8, factor=2, num_blocks=1)(torch.randn(2, 8, 7)).shape
        torch.Size([2, 8, 7])
    """

    def __init__(
        self, dim: int, factor: int, num_blocks: int, kernel_size: int = 7, mlp_ratio: float = 3.0
    ) -> None:
        super().__init__()
        self.down = HybridDownsample(dim, dim, factor)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, kernel_size, mlp_ratio) for _ in range(num_blocks)])
        self.up = HybridUpsample(dim, dim, factor)

    def forward(self, x: Tensor) -> Tensor:
        y = self.up(self.blocks(self.down(x)))
        return x + y[..., : x.shape[-1]]
