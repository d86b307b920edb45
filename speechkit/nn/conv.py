"""1-D convolution blocks on [B, C, T] with exact length accounting and causal streaming.

Length and padding convention (shared by every block here):

* ``PaddedConv1d`` pads ``K_eff - 1`` zeros in total (``K_eff = (kernel_size - 1) * dilation + 1``),
  so a stride-``s`` conv maps T frames to exactly ``ceil(T / s)`` frames and stacked convs compose
  (``ceil(ceil(T / a) / b) == ceil(T / (a * b))``). Zero padding, not reflect, so that the offline
  forward and the chunked ``step`` see the same numbers at the edges.
* Causal convs put ``max(K_eff - s, 0)`` zeros on the left and the rest on the right: output frame i
  depends only on inputs ``< (i + 1) * s`` (its own stride block and the past); with s = 1 that is
  strict causality. The right zeros only complete a trailing partial block.
* Non-causal convs centre the window: ``max(K_eff - s, 0) // 2`` zeros on the left.
* ``PaddedConvTranspose1d`` maps T frames to exactly ``T * s`` samples by trimming the ``K - s``
  overlap: all on the right when causal, split when not.

Streaming: causal leaf convs offer ``initial_state(batch_size) -> Tensor`` and
``step(x, state) -> (y, state)``; composite blocks (``ResidualUnit``, ``ConvNeXtBlock``, the stacks)
flatten their children's states into a ``list[Tensor]`` (zero-width states are skipped) so an ONNX
step graph can take them as plain inputs/outputs. Chunks fed to a strided block must be a multiple
of its total stride; then chunked output equals the offline forward exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError, SpeechkitError
from speechkit.nn.activations import make_activation


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class PaddedConv1d(nn.Module):
    """Conv1d with built-in zero padding so that T frames map to ``ceil(T / stride)`` frames.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: kernel width K.
        stride: hop s between output frames.
        dilation: kernel dilation.
        groups: channel groups (``groups = C_in`` for a depthwise conv).
        causal: pad on the left only (see module docstring for the exact receptive field).
        bias: learn an additive bias.
        weight_norm: reparametrise the weight with weight normalisation (Salimans & Kingma 2016).

    Shapes:
        x: [B, C_in, T] -> [B, C_out, ceil(T / s)].

    Example:
        >>> conv = PaddedConv1d(2, 3, kernel_size=4, stride=2, causal=True)
        >>> conv(torch.randn(1, 2, 7)).shape
        torch.Size([1, 3, 4])
        >>> y, state = conv.step(torch.randn(1, 2, 4), conv.initial_state(1))
        >>> y.shape, state.shape
        (torch.Size([1, 3, 2]), torch.Size([1, 2, 2]))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        causal: bool = False,
        bias: bool = True,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(kernel_size=kernel_size, stride=stride, dilation=dilation, groups=groups)
        conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias
        )
        self.conv = nn.utils.parametrizations.weight_norm(conv) if weight_norm else conv
        self.in_channels = in_channels
        self.stride = stride
        self.causal = causal
        effective_kernel = (kernel_size - 1) * dilation + 1
        # Input frames of the past that a causal step must remember.
        self.state_size = max(effective_kernel - stride, 0)
        left = self.state_size if causal else self.state_size // 2
        self.padding = (left, effective_kernel - 1 - left)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.padding))

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero history [B, C_in, state_size] (what the offline left padding holds)."""
        _require_causal(self)
        weight = self.conv.weight
        return torch.zeros(
            batch_size,
            self.in_channels,
            self.state_size,
            device=device or weight.device,
            dtype=dtype or weight.dtype,
        )

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Process one chunk [B, C_in, n * stride]; returns ([B, C_out, n], new state)."""
        _require_causal(self)
        _check_chunk(x, self.stride)
        x = torch.cat([state, x], dim=-1)
        new_state = x[..., -self.state_size :] if self.state_size else x[..., :0]
        return self.conv(x), new_state


class PaddedConvTranspose1d(nn.Module):
    """ConvTranspose1d that upsamples T frames to exactly ``T * stride`` samples.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: kernel width K (must be >= stride; 2 * stride is the usual choice).
        stride: upsampling factor s.
        causal: trim the ``K - s`` overlap on the right, so output sample j depends only on input
            frames ``<= j // s``; otherwise trim it from both sides.
        bias: learn an additive bias.
        weight_norm: reparametrise the weight with weight normalisation.

    Shapes:
        x: [B, C_in, T] -> [B, C_out, T * s].

    Example:
        >>> up = PaddedConvTranspose1d(3, 2, kernel_size=4, stride=2, causal=True)
        >>> up(torch.randn(1, 3, 5)).shape
        torch.Size([1, 2, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        causal: bool = False,
        bias: bool = True,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(kernel_size=kernel_size, stride=stride)
        if kernel_size < stride:
            raise ConfigError(f"kernel_size ({kernel_size}) must be >= stride ({stride}) or output has holes")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv) if weight_norm else conv
        self.out_channels = out_channels
        self.stride = stride
        self.causal = causal
        # Output samples that overlap the next input frame's contribution (overlap-add tail).
        self.state_size = kernel_size - stride
        left = 0 if causal else self.state_size // 2
        self.trim = (left, self.state_size - left)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        left, right = self.trim
        y = y[..., left:]
        return y[..., :-right] if right else y

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero overlap-add tail [B, C_out, kernel_size - stride]."""
        _require_causal(self)
        weight = self.conv.weight
        return torch.zeros(
            batch_size,
            self.out_channels,
            self.state_size,
            device=device or weight.device,
            dtype=dtype or weight.dtype,
        )

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Process one chunk [B, C_in, n]; returns ([B, C_out, n * stride], new tail)."""
        _require_causal(self)
        # Overlap-add without bias, so the bias is added once per emitted sample.
        y = F.conv_transpose1d(x, self.conv.weight, None, self.stride)  # [B, C_out, n * s + overlap]
        overlap = self.state_size
        if overlap:
            y = torch.cat([y[..., :overlap] + state, y[..., overlap:]], dim=-1)
            out, new_state = y[..., :-overlap], y[..., -overlap:]
        else:
            out, new_state = y, state
        if self.conv.bias is not None:
            out = out + self.conv.bias[None, :, None]
        return out, new_state


def _require_causal(module: nn.Module) -> None:
    if not module.causal:
        raise ConfigError(f"{type(module).__name__} was built with causal=False and cannot stream")


def _check_chunk(x: Tensor, multiple: int) -> None:
    if multiple > 1 and not _exporting() and x.shape[-1] % multiple:
        raise SpeechkitError(f"chunk length {x.shape[-1]} is not a multiple of the total stride {multiple}")


_LEAVES = (PaddedConv1d, PaddedConvTranspose1d)


class StreamingConvBlock(nn.Module):
    """Base of composite causal conv blocks: children run in order, state is a flat ``list[Tensor]``.

    Subclasses set ``self.causal`` and implement ``stream_layers()`` (the ordered children); pointwise
    children (activations, norms over C) need no state. Override ``step`` to add residual paths.

    Example:
        >>> unit = ResidualUnit(2, kernel_size=3, causal=True)  # a StreamingConvBlock
        >>> state = unit.initial_state(batch_size=1)
        >>> [tuple(s.shape) for s in state], unit.num_states
        ([(1, 2, 2)], 1)
        >>> y, state = unit.step(torch.randn(1, 2, 5), state)
        >>> y.shape
        torch.Size([1, 2, 5])
    """

    causal: bool

    def stream_layers(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> list[Tensor]:
        """Zero state of every causal conv inside, in forward order (zero-width ones skipped)."""
        _require_causal(self)
        states: list[Tensor] = []
        for layer in self.stream_layers():
            if isinstance(layer, _LEAVES):
                if layer.state_size:
                    states.append(layer.initial_state(batch_size, device, dtype))
            elif isinstance(layer, StreamingConvBlock):
                states.extend(layer.initial_state(batch_size, device, dtype))
        return states

    @property
    def num_states(self) -> int:
        """Length of the state list."""
        count = 0
        for layer in self.stream_layers():
            if isinstance(layer, _LEAVES):
                count += 1 if layer.state_size else 0
            elif isinstance(layer, StreamingConvBlock):
                count += layer.num_states
        return count

    def step(self, x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Process one chunk; returns (output chunk, new state list)."""
        _require_causal(self)
        return _step_layers(self.stream_layers(), x, state)


def _step_layers(layers: Sequence[nn.Module], x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    new_state: list[Tensor] = []
    index = 0
    for layer in layers:
        if isinstance(layer, _LEAVES) and layer.state_size:
            x, layer_state = layer.step(x, state[index])
            new_state.append(layer_state)
            index += 1
        elif isinstance(layer, StreamingConvBlock):
            count = layer.num_states
            x, layer_states = layer.step(x, state[index : index + count])
            new_state.extend(layer_states)
            index += count
        else:
            # Stateless: pointwise ops, or a conv with no history (offline forward == step for it).
            x = layer(x)
    return x, new_state


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of [B, C, T] (per frame, so causal and padding-safe).

    Args:
        dim: channel count C.
        eps: variance floor.

    Example:
        >>> y = ChannelLayerNorm(4)(torch.randn(2, 4, 3))
        >>> torch.allclose(y.mean(dim=1), torch.zeros(2, 3), atol=1e-5)
        True
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.transpose(1, 2), self.weight.shape, self.weight, self.bias, self.eps)
        return y.transpose(1, 2)


class ResidualUnit(StreamingConvBlock):
    """SEANet/DAC residual unit: act, dilated K-conv, act, 1x1 conv, plus the input.

    ELU is the default activation (SEANet/EnCodec, Defossez et al. 2022 section 3.1); pass
    ``activation="snake"`` for the DAC variant (Kumar et al. 2023). No normalisation over time, so
    the causal variant is strictly causal in train and eval mode.

    Args:
        channels: channel count C (kept throughout).
        kernel_size: width of the dilated conv.
        dilation: dilation of the first conv.
        causal: causal padding (and ``step`` streaming).
        activation: ``"elu"``, ``"silu"``, ``"gelu"`` or ``"snake"``.
        weight_norm: weight-normalise both convs.

    Shapes:
        x: [B, C, T] -> [B, C, T].

    Example:
        >>> unit = ResidualUnit(4, kernel_size=3, dilation=3, causal=True)
        >>> unit(torch.randn(1, 4, 9)).shape
        torch.Size([1, 4, 9])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        dilation: int = 1,
        causal: bool = False,
        activation: str = "elu",
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.block = nn.Sequential(
            make_activation(activation, channels),
            PaddedConv1d(
                channels, channels, kernel_size, dilation=dilation, causal=causal, weight_norm=weight_norm
            ),
            make_activation(activation, channels),
            PaddedConv1d(channels, channels, 1, causal=causal, weight_norm=weight_norm),
        )

    def stream_layers(self) -> Sequence[nn.Module]:
        return list(self.block)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)

    def step(self, x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        y, new_state = super().step(x, state)
        return x + y, new_state


class ConvNeXtBlock(StreamingConvBlock):
    """Vocos ConvNeXt block: depthwise conv, LayerNorm over C, pointwise GELU MLP, layer scale, residual.

    Follows Siuzdak 2023 (Vocos) section 3 / Liu et al. 2022 (ConvNeXt) with 1-D convs.

    Args:
        dim: channel count C.
        kernel_size: depthwise kernel width.
        mlp_ratio: MLP hidden width as a multiple of C.
        causal: causal depthwise conv (LayerNorm is per frame, so the block stays causal).
        layer_scale_init: initial per-channel residual scale (ConvNeXt layer scale); 0 disables it.

    Shapes:
        x: [B, C, T] -> [B, C, T].

    Example:
        >>> block = ConvNeXtBlock(8, kernel_size=7)
        >>> block(torch.randn(2, 8, 11)).shape
        torch.Size([2, 8, 11])
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        causal: bool = False,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        self.causal = causal
        hidden = int(round(mlp_ratio * dim))
        self.dwconv = PaddedConv1d(dim, dim, kernel_size, groups=dim, causal=causal)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None

    def stream_layers(self) -> Sequence[nn.Module]:
        return [self.dwconv]

    def _pointwise(self, y: Tensor) -> Tensor:
        y = y.transpose(1, 2)  # [B, T, C]
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = y * self.gamma
        return y.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return x + self._pointwise(self.dwconv(x))

    def step(self, x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        y, new_state = super().step(x, state)
        return x + self._pointwise(y), new_state


class StreamingSequential(StreamingConvBlock):
    """Layers in ``self.layers`` (an ``nn.ModuleList``) run in order, offline or chunk by chunk.

    Subclasses build ``self.layers`` and set ``self.causal``; ``step`` comes from
    :class:`StreamingConvBlock`.

    Example:
        >>> stack = StreamingSequential([PaddedConv1d(2, 2, 3, causal=True)], causal=True)
        >>> x = torch.randn(1, 2, 6)
        >>> y, _ = stack.step(x, stack.initial_state(1))
        >>> bool(torch.allclose(y, stack(x)))
        True
    """

    def __init__(self, layers: Sequence[nn.Module] = (), causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.layers = nn.ModuleList(layers)

    def stream_layers(self) -> Sequence[nn.Module]:
        return list(self.layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ConvEncoderStack(StreamingSequential):
    """SEANet/DAC-style strided encoder: conv, then per stride residual units and a strided conv.

    Channels double at every downsampling stage (``channels * 2 ** i``); the downsampling conv has
    kernel ``2 * stride``. Total downsampling ``hop_length = prod(strides)``: T samples become
    ``ceil(T / hop_length)`` frames.

    Args:
        in_channels: input channels (1 for mono audio).
        channels: width after the first conv.
        strides: downsampling factors, in the order applied.
        causal: causal everywhere (and ``step`` streaming with chunks a multiple of hop_length).
        out_channels: output width D (default: the last stage width, ``channels * 2 ** len(strides)``).
        kernel_size: kernel of the first and last convs and of the residual units.
        dilations: dilations of the residual units in each stage.
        activation: ``"elu"`` (SEANet), ``"snake"`` (DAC), ``"silu"`` or ``"gelu"``.
        weight_norm: weight-normalise every conv.

    Shapes:
        x: [B, in_channels, T] -> [B, out_channels, ceil(T / hop_length)].

    Example:
        >>> enc = ConvEncoderStack(1, 4, strides=(2, 3), out_channels=8)
        >>> enc(torch.randn(1, 1, 13)).shape
        torch.Size([1, 8, 3])
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        strides: Sequence[int],
        causal: bool = False,
        out_channels: int | None = None,
        kernel_size: int = 7,
        dilations: Sequence[int] = (1, 3, 9),
        activation: str = "elu",
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.hop_length = math.prod(strides)
        width = channels
        layers: list[nn.Module] = [
            PaddedConv1d(in_channels, width, kernel_size, causal=causal, weight_norm=weight_norm)
        ]
        for stride in strides:
            for dilation in dilations:
                layers.append(ResidualUnit(width, kernel_size, dilation, causal, activation, weight_norm))
            layers.append(make_activation(activation, width))
            layers.append(
                PaddedConv1d(
                    width, 2 * width, 2 * stride, stride=stride, causal=causal, weight_norm=weight_norm
                )
            )
            width *= 2
        self.out_channels = out_channels or width
        layers.append(make_activation(activation, width))
        layers.append(
            PaddedConv1d(width, self.out_channels, kernel_size, causal=causal, weight_norm=weight_norm)
        )
        self.layers = nn.ModuleList(layers)

    def step(self, x: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        _check_chunk(x, self.hop_length)
        return super().step(x, state)


class ConvDecoderStack(StreamingSequential):
    """Mirror of :class:`ConvEncoderStack`: conv, then per stride a transposed conv and residual units.

    Channels halve at every upsampling stage, from ``channels * 2 ** len(strides)`` down to
    ``channels``; the transposed conv has kernel ``2 * stride``. T frames become
    ``T * hop_length`` samples. No output nonlinearity (a codec adds tanh if it wants one).

    Args:
        in_channels: input width D (latent dim).
        channels: width of the last stage (the encoder's ``channels``).
        strides: upsampling factors, in the order applied (reverse of the encoder's).
        causal: causal everywhere (and ``step`` streaming with any chunk length).
        out_channels: output channels (1 for mono audio).
        kernel_size: kernel of the first and last convs and of the residual units.
        dilations: dilations of the residual units in each stage.
        activation: ``"elu"``, ``"snake"``, ``"silu"`` or ``"gelu"``.
        weight_norm: weight-normalise every conv.

    Shapes:
        x: [B, in_channels, T] -> [B, out_channels, T * hop_length].

    Example:
        >>> dec = ConvDecoderStack(8, 4, strides=(3, 2))
        >>> dec(torch.randn(1, 8, 3)).shape
        torch.Size([1, 1, 18])
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        strides: Sequence[int],
        causal: bool = False,
        out_channels: int = 1,
        kernel_size: int = 7,
        dilations: Sequence[int] = (1, 3, 9),
        activation: str = "elu",
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.hop_length = math.prod(strides)
        self.out_channels = out_channels
        width = channels * 2 ** len(strides)
        layers: list[nn.Module] = [
            PaddedConv1d(in_channels, width, kernel_size, causal=causal, weight_norm=weight_norm)
        ]
        for stride in strides:
            layers.append(make_activation(activation, width))
            layers.append(
                PaddedConvTranspose1d(
                    width, width // 2, 2 * stride, stride, causal=causal, weight_norm=weight_norm
                )
            )
            width //= 2
            for dilation in dilations:
                layers.append(ResidualUnit(width, kernel_size, dilation, causal, activation, weight_norm))
        layers.append(make_activation(activation, width))
        layers.append(PaddedConv1d(width, out_channels, kernel_size, causal=causal, weight_norm=weight_norm))
        self.layers = nn.ModuleList(layers)
