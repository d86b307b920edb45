"""ECAPA-TDNN building blocks on [B, C, T]: TDNN, Res2Net, squeeze-excitation, attentive pooling.

Follows Desplanques et al. 2020 (ECAPA-TDNN, section 3) as implemented in SpeechBrain: every
TDNN layer is conv, ReLU, BatchNorm (in that order). BatchNorm makes these blocks non-causal and
batch-dependent in training; speaker models are utterance-level, so that is fine. Optional masks
[B, T] (True = valid) keep padded frames out of the time averages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.nn.conv import PaddedConv1d


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over T of [B, C, T] -> [B, C, 1], counting only valid frames."""
    if mask is None:
        return x.mean(dim=-1, keepdim=True)
    weight = mask[:, None, :].to(x.dtype)
    return (x * weight).sum(dim=-1, keepdim=True) / weight.sum(dim=-1, keepdim=True).clamp(min=1.0)


def _weighted_statistics(x: Tensor, weight: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """Mean and std over T of [B, C, T] under weights [B, C or 1, T] summing to 1 over T."""
    mean = (x * weight).sum(dim=-1)
    var = ((x - mean.unsqueeze(-1)).pow(2) * weight).sum(dim=-1)
    return mean, var.clamp(min=eps).sqrt()


class TDNNBlock(nn.Module):
    """Time-delay layer: 'same'-padded dilated conv, ReLU, BatchNorm.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: conv width.
        dilation: conv dilation.
        groups: channel groups.

    Shapes:
        x: [B, C_in, T] -> [B, C_out, T].

    Example:
        >>> TDNNBlock(4, 6, kernel_size=3, dilation=2)(torch.randn(2, 4, 9)).shape
        torch.Size([2, 6, 9])
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.conv = PaddedConv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(F.relu(self.conv(x)))


class SqueezeExcitation(nn.Module):
    """Squeeze-excitation (Hu et al. 2018): rescale channels by a gate from the time average.

    Args:
        channels: channel count C.
        bottleneck: width of the gate's hidden layer.

    Shapes:
        x: [B, C, T], mask: [B, T] bool or None -> [B, C, T].

    Example:
        >>> SqueezeExcitation(8, bottleneck=4)(torch.randn(2, 8, 5)).shape
        torch.Size([2, 8, 5])
    """

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv1d(channels, bottleneck, 1)
        self.excite = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(_masked_mean(x, mask)))))  # [B, C, 1]
        return x * gate


class Res2NetConv(nn.Module):
    """Res2Net multi-scale conv (Gao et al. 2019): channel groups convolved in a residual cascade.

    The input is split into ``scale`` groups; group 0 passes through, group i > 0 is convolved after
    adding the previous group's output, growing the receptive field within one layer.

    Args:
        channels: channel count C (divisible by scale).
        kernel_size: conv width of each group's TDNN layer.
        dilation: conv dilation.
        scale: number of groups.

    Shapes:
        x: [B, C, T] -> [B, C, T].

    Example:
        >>> Res2NetConv(8, kernel_size=3, dilation=2, scale=4)(torch.randn(2, 8, 7)).shape
        torch.Size([2, 8, 7])
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 1, scale: int = 8) -> None:
        super().__init__()
        if scale < 2 or channels % scale:
            raise ConfigError(f"channels ({channels}) must be divisible by scale ({scale}) and scale >= 2")
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        groups = x.chunk(self.scale, dim=1)
        outputs = [groups[0]]
        previous = None
        valid = None if mask is None else mask[:, None, :].to(x.dtype)
        for group, block in zip(groups[1:], self.blocks, strict=True):
            previous = block(group if previous is None else group + previous)
            if valid is not None:  # padding stays zero, as an unpadded item's conv padding is
                previous = previous * valid
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SERes2NetBlock(nn.Module):
    """ECAPA-TDNN block: 1x1 TDNN, Res2Net dilated conv, 1x1 TDNN, squeeze-excitation, residual.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out (a 1x1 conv shortcut is added when they differ).
        res2net_scale: Res2Net groups.
        se_channels: squeeze-excitation bottleneck width.
        kernel_size: Res2Net conv width.
        dilation: Res2Net conv dilation.

    Shapes:
        x: [B, C_in, T], mask: [B, T] bool or None -> [B, C_out, T].

    Example:
        >>> block = SERes2NetBlock(8, 16, res2net_scale=4, se_channels=4, dilation=2)
        >>> block(torch.randn(2, 8, 10)).shape
        torch.Size([2, 16, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        res2net_scale: int = 8,
        se_channels: int = 128,
        kernel_size: int = 3,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.tdnn1 = TDNNBlock(in_channels, out_channels, 1)
        self.res2net = Res2NetConv(out_channels, kernel_size, dilation, res2net_scale)
        self.tdnn2 = TDNNBlock(out_channels, out_channels, 1)
        self.se = SqueezeExcitation(out_channels, se_channels)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        if mask is None:
            y = self.tdnn2(self.res2net(self.tdnn1(x)))
        else:  # padded frames are zeroed between layers, so they never reach valid ones
            valid = mask[:, None, :].to(x.dtype)
            y = self.tdnn2(self.res2net(self.tdnn1(x) * valid, mask)) * valid
        return self.se(y, mask) + residual


class AttentiveStatisticsPooling(nn.Module):
    """Channel-dependent attentive statistics pooling (ECAPA-TDNN section 3.3): [B, C, T] -> [B, 2C].

    Each channel gets its own softmax attention over frames; the pooled vector is the attention-
    weighted mean and standard deviation. With ``global_context`` the attention also sees the
    utterance mean and std of every channel.

    Args:
        channels: channel count C.
        attention_channels: hidden width of the attention network.
        global_context: append utterance-level mean/std to the attention input.

    Shapes:
        x: [B, C, T], mask: [B, T] bool (True = valid) or None -> [B, 2C] (mean then std).

    Example:
        >>> pool = AttentiveStatisticsPooling(6, attention_channels=4)
        >>> pool(torch.randn(2, 6, 9)).shape
        torch.Size([2, 12])
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True) -> None:
        super().__init__()
        self.global_context = global_context
        self.tdnn = TDNNBlock(channels * 3 if global_context else channels, attention_channels, 1)
        self.attention = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            mask = torch.ones(x.shape[0], x.shape[-1], dtype=torch.bool, device=x.device)
        valid = mask[:, None, :]  # [B, 1, T]
        attn_in = x
        if self.global_context:
            uniform = valid.to(x.dtype) / valid.sum(dim=-1, keepdim=True).clamp(min=1).to(x.dtype)
            mean, std = _weighted_statistics(x, uniform)
            context = torch.cat([mean, std], dim=1).unsqueeze(-1).expand(-1, -1, x.shape[-1])
            attn_in = torch.cat([x, context], dim=1)  # [B, 3C, T]
        logits = self.attention(torch.tanh(self.tdnn(attn_in)))  # [B, C, T]
        weight = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=-1)
        mean, std = _weighted_statistics(x, weight)
        return torch.cat([mean, std], dim=1)
