"""ESC: a speech codec of window-attention transformers with cross-scale residual VQ.

After Gu & Diao 2024, "ESC: Efficient Speech Coding with Cross-Scale Residual Vector Quantized
Transformers" (arXiv 2404.19441), sized for one CPU thread. The complex STFT (power-law
compressed; Nyquist bin dropped) is cut into frequency patches; a hierarchy of Swin-style stages
(window attention over frequency x time, every other block shifted by half a window) halves the
number of frequency patches at each scale; a mirrored decoder doubles it back and predicts the
compressed complex spectrum, which an inverse STFT turns into samples (§3.1)::

    audio ─STFT─► |X|^c e^{j∠X} [B, 320 bins, T] ─patch─► [B, F0, T, D0] ─stage 0─► enc_0
        ─merge─► stage 1 ─► enc_1 ─► ... ─► enc_L  (F_l = F0 / 2^l patches, D_l channels)

    decoder: x = 0 at scale L;  at each scale l, coarse to fine:
        x += Q_s(enc_l - x) for the streams s of scale l   (cross-scale residual VQ, §3.2)
        x = stage_l(x);  x = split(x) to scale l - 1
    x at scale 0 ─► compressed complex spectrum ─ISTFT─► audio

Default sizes (0.9 M parameters): 16 patches of 20 bins at 100 Hz, then 8, 4 and 2 patches at
50 Hz with 48, 80 and 128 channels and 2 blocks each. Two departures from the paper buy a ~4x
smaller compute budget: the finest scale has no blocks (``depths[0] = 0``: its patch tokens go
straight into the merge), and the first merge also pairs frames (``time_strides``, Swin's 2x2
merging), where ESC keeps every scale at its STFT frame rate.

Streams follow ESC: the first two quantize the coarsest scale, each further stream the next finer
one; every stream is a product VQ of ``num_groups`` codebooks per 50 Hz token frame, so the first
n streams give ``n * num_groups`` codebooks: 4 x 3 x 1024 codes make 1.5 kbps per stream, 6 kbps
in all. Decoding is step-wise: missing (fine) streams are simply not added, and a partial stream
adds only the groups it has. Encoding runs the decoder up to the last stream, since each residual
depends on the coarser streams' codes.

Quantizer pre-training (§3.4): :meth:`ESCCodec.begin_quantizer_pretraining` bypasses the quantizers
for the next N training passes (an autoencoder through the factorised projections), then switches
them on; the switch re-arms k-means so codebooks start from the trained features.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.codec.api import Codec
from speechkit.codec.rvq_codec import CodecForwardOutput
from speechkit.config import ModelConfig
from speechkit.errors import ConfigError
from speechkit.features import ISTFT, STFT
from speechkit.nn.transformer import TransformerBlock
from speechkit.tokenizers.cross_scale_rvq import CrossScaleRVQ

logger = logging.getLogger(__name__)

MAGNITUDE_FLOOR = 1e-5
COMPRESSED_CEILING = 8.0  # |X|^0.3 of full-scale audio with n_fft <= 2048 stays far below


@dataclass(frozen=True, kw_only=True)
class ESCCodecConfig(ModelConfig):
    """Config of :class:`ESCCodec`. Scale l has ``(n_fft // 2) / (patch_bins * 2**l)`` patches of
    ``dims[l]`` channels at ``sample_rate / (hop_length * prod(time_strides[:l + 1]))`` frames per
    second; tokens run at ``sample_rate / (hop_length * frames_per_code)``."""

    KIND = "esc_codec"
    sample_rate: int = 16000
    n_fft: int = 640
    hop_length: int = 160
    frames_per_code: int = 2
    patch_bins: int = 20
    dims: tuple[int, ...] = (40, 48, 80, 128)
    depths: tuple[int, ...] = (0, 2, 2, 2)
    time_strides: tuple[int, ...] = (1, 2, 1, 1)
    head_dim: int = 16
    mlp_ratio: float = 2.0
    window_freq: int = 4
    window_time: int = 4
    compression: float = 0.3
    num_streams: int = 4
    num_groups: int = 3
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5
    dead_code_threshold: float = 0.2


def stream_scales(num_streams: int, num_scales: int) -> tuple[int, ...]:
    """The scale each stream quantizes: two at the coarsest, then one per finer scale (ESC §3.2).

    Example:
        >>> stream_scales(4, num_scales=4)
        (3, 3, 2, 1)
    """
    coarsest = num_scales - 1
    scales = tuple(coarsest - max(0, s - 1) for s in range(num_streams))
    if num_streams < 1 or scales[-1] < 0:
        raise ConfigError(f"{num_streams} streams need 1 <= streams <= scales + 1 = {num_scales + 1}")
    return scales


def window_attention(block: TransformerBlock, x: Tensor, window: tuple[int, int], shifted: bool) -> Tensor:
    """Run ``block`` inside non-overlapping (frequency x time) windows of a [B, F, T, D] grid.

    Windows are capped at the grid size; a shifted pass offsets them by half a window (Swin, Liu et
    al. 2021, §3.2) by zero padding in front. Padding (for the shift or a ragged edge) is masked
    out of the keys, so results never depend on it.

    Example:
        >>> block = TransformerBlock(8, num_heads=2, rope=False)
        >>> window_attention(block, torch.randn(2, 6, 10, 8), (4, 4), shifted=True).shape
        torch.Size([2, 6, 10, 8])
    """
    batch, freq, frames, dim = x.shape
    wf, wt = min(window[0], freq), min(window[1], frames)
    sf = wf // 2 if shifted and freq > wf else 0
    st = wt // 2 if shifted and frames > wt else 0
    pad_f, pad_t = (-(freq + sf)) % wf, (-(frames + st)) % wt
    padded = sf or st or pad_f or pad_t
    if padded:
        x = F.pad(x, (0, 0, st, pad_t, sf, pad_f))
    nf, nt = x.shape[1] // wf, x.shape[2] // wt
    windows = x.reshape(batch, nf, wf, nt, wt, dim).transpose(2, 3).reshape(batch * nf * nt, wf * wt, dim)
    mask = None
    if padded:
        valid = torch.zeros(x.shape[1], x.shape[2], dtype=torch.bool, device=x.device)
        valid[sf : sf + freq, st : st + frames] = True
        mask = valid.reshape(nf, wf, nt, wt).transpose(1, 2).reshape(nf * nt, wf * wt).repeat(batch, 1)
    y = block(windows, padding_mask=mask)
    y = y.reshape(batch, nf, nt, wf, wt, dim).transpose(2, 3).reshape(batch, nf * wf, nt * wt, dim)
    return y[:, sf : sf + freq, st : st + frames] if padded else y


class WindowAttentionStage(nn.Module):
    """One scale of ESC on [B, F, T, D]: a depthwise-conv position encoding, then ``depth``
    pre-norm transformer blocks in (frequency x time) windows, every other one shifted.

    The 3x3 depthwise conv (conditional position encoding, Chu et al. 2021) stands in for Swin's
    relative position bias: it tells attention where a patch sits while the blocks stay plain
    :class:`~speechkit.nn.transformer.TransformerBlock` (no RoPE: windows are 2-D).

    Args:
        dim: D.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width as a multiple of D.
        window: (frequency patches, frames) of a window.

    Example:
        >>> stage = WindowAttentionStage(8, depth=2, num_heads=2, mlp_ratio=2.0, window=(2, 4))
        >>> stage(torch.randn(1, 4, 6, 8)).shape
        torch.Size([1, 4, 6, 8])
    """

    def __init__(
        self, dim: int, depth: int, num_heads: int, mlp_ratio: float, window: tuple[int, int]
    ) -> None:
        super().__init__()
        self.window = window
        # No blocks, no position encoding: a stage of depth 0 is the identity.
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if depth else None
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, rope=False) for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.position is None:
            return x
        x = x + self.position(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        for i, block in enumerate(self.blocks):
            x = window_attention(block, x, self.window, shifted=i % 2 == 1)
        return x


class PatchMerge(nn.Module):
    """Patch merging: [B, F, T, D_in] -> [B, F / 2, T / s, D_out], 2 patches x s frames per token.

    ESC merges along frequency only (s = 1); s = 2 is Swin's 2x2 merging (Liu et al. 2021, §3.1),
    used here at the coarse scales to halve their cost.

    Example:
        >>> PatchMerge(4, 8, time_stride=2)(torch.randn(1, 6, 10, 4)).shape
        torch.Size([1, 3, 5, 8])
    """

    def __init__(self, in_dim: int, out_dim: int, time_stride: int = 1) -> None:
        super().__init__()
        self.time_stride = time_stride
        self.norm = nn.LayerNorm(2 * time_stride * in_dim)
        self.proj = nn.Linear(2 * time_stride * in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, freq, frames, dim = x.shape
        s = self.time_stride
        x = x.reshape(batch, freq // 2, 2, frames // s, s * dim).transpose(2, 3)  # [B, F/2, T/s, 2, s*D]
        return self.proj(self.norm(x.reshape(batch, freq // 2, frames // s, 2 * s * dim)))


class PatchSplit(nn.Module):
    """Patch expanding, the inverse layout of :class:`PatchMerge`: [B, F, T, D_in] -> [B, 2F, s*T, D_out].

    Example:
        >>> PatchSplit(8, 4, time_stride=2)(torch.randn(1, 3, 5, 8)).shape
        torch.Size([1, 6, 10, 4])
    """

    def __init__(self, in_dim: int, out_dim: int, time_stride: int = 1) -> None:
        super().__init__()
        self.out_dim, self.time_stride = out_dim, time_stride
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, 2 * time_stride * out_dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, freq, frames, _ = x.shape
        s = self.time_stride
        x = self.proj(self.norm(x)).reshape(batch, freq, frames, 2, s * self.out_dim).transpose(2, 3)
        return x.reshape(batch, 2 * freq, s * frames, self.out_dim)


class ESCCodec(nn.Module):
    """ESC speech codec: STFT patches, window-attention hierarchy, cross-scale residual VQ.

    Shapes: ``encode_codes`` audio [B, T] (T a multiple of ``hop_length``) -> codes [B, K, T / hop];
    ``decode_codes`` codes [B, K', N] (K' <= K: the first K' codebooks, coarse to fine) -> audio
    [B, N * hop_length]; ``hop_length`` is the token hop (STFT hop x ``frames_per_code``).

    Example:
        >>> config = ESCCodecConfig(patch_bins=40, dims=(8, 16), depths=(1, 1), time_strides=(1, 2),
        ...                         head_dim=8, num_streams=2, num_groups=2, codebook_size=16)
        >>> model = ESCCodec(config).eval()
        >>> codes = model.encode_codes(torch.randn(1, 3200), num_codebooks=3)
        >>> codes.shape, model.decode_codes(codes).shape, model.codebook_sizes
        (torch.Size([1, 3, 10]), torch.Size([1, 3200]), (16, 16, 16, 16))
    """

    config_class = ESCCodecConfig

    def __init__(self, config: ESCCodecConfig) -> None:
        super().__init__()
        self.num_patches = _check_config(config)  # patches per scale, finest first
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length * config.frames_per_code
        self.frame_rate = config.sample_rate / self.hop_length
        self.stft = STFT(config.n_fft, config.hop_length, padding="same", double_precision=False)
        self.istft = ISTFT(config.n_fft, config.hop_length, padding="same")
        dims, window = config.dims, (config.window_freq, config.window_time)
        self.embed = nn.Linear(2 * config.patch_bins, dims[0])
        self.frequency_embedding = nn.Parameter(0.02 * torch.randn(self.num_patches[0], dims[0]))

        def stage(level: int) -> WindowAttentionStage:
            heads = max(1, dims[level] // config.head_dim)
            return WindowAttentionStage(dims[level], config.depths[level], heads, config.mlp_ratio, window)

        self.encoder = nn.ModuleList(stage(level) for level in range(len(dims)))
        strides = config.time_strides[1:]
        self.merge = nn.ModuleList(
            PatchMerge(a, b, s) for a, b, s in zip(dims, dims[1:], strides, strict=False)
        )
        self.decoder = nn.ModuleList(stage(level) for level in range(len(dims)))
        self.split = nn.ModuleList(
            PatchSplit(b, a, s) for a, b, s in zip(dims, dims[1:], strides, strict=False)
        )
        self.head_norm = nn.LayerNorm(dims[0])
        self.head = nn.Linear(dims[0], 2 * config.patch_bins)
        self.stream_scales = stream_scales(config.num_streams, len(dims))
        # Grid frames of each scale per token frame: frames_per_code / (time merging so far).
        self.frames_per_token = [
            config.frames_per_code // math.prod(config.time_strides[: level + 1])
            for level in range(len(dims))
        ]
        self.quantizer = CrossScaleRVQ(
            [
                (self.num_patches[level], dims[level], self.frames_per_token[level])
                for level in self.stream_scales
            ],
            num_groups=config.num_groups,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            quantizer_dropout=config.quantizer_dropout,
            # As in the RVQ codec: batches hold fewer token frames than codes, so restart only codes
            # used several times less than average.
            threshold_ema_dead_code=config.dead_code_threshold,
        )
        self.codebook_sizes = self.quantizer.codebook_sizes
        self.register_buffer("pretraining_steps_left", torch.tensor(0, dtype=torch.long))

    # ---- spectra ---------------------------------------------------------------------------------

    def analyse(self, wav: Tensor) -> Tensor:
        """Audio [B, T] -> compressed complex patches [B, F0, T / stft_hop, 2 * patch_bins].

        Power-law compression ``|X|^c e^{j angle X}`` keeps the input range small at every level
        while phase stays explicit (ESC feeds the complex STFT; the compression is ours).
        """
        if wav.ndim != 2 or wav.shape[1] % self.hop_length:
            raise ValueError(
                f"expected audio [B, T] with T a multiple of {self.hop_length}, got {tuple(wav.shape)}"
            )
        real, imag = self.stft(wav)  # [B, n_fft/2 + 1, N]
        real, imag = real[:, :-1], imag[:, :-1]  # drop the Nyquist bin: bins = F0 * patch_bins
        magnitude = torch.sqrt(real**2 + imag**2).clamp_min(MAGNITUDE_FLOOR)
        gain = magnitude ** (self.config.compression - 1.0)
        spec = torch.stack([real * gain, imag * gain], dim=-1)  # [B, bins, N, 2]
        batch, _, frames, _ = spec.shape
        spec = spec.reshape(batch, self.num_patches[0], self.config.patch_bins, frames, 2).transpose(2, 3)
        return spec.reshape(batch, self.num_patches[0], frames, 2 * self.config.patch_bins)

    def synthesise(self, grid: Tensor) -> Tensor:
        """Decoder output [B, F0, N, D0] -> audio [B, N * stft_hop] (decompress, then ISTFT)."""
        batch, patches, frames, _ = grid.shape
        out = self.head(self.head_norm(grid)).float()  # [B, F0, N, 2 * patch_bins]
        out = out.reshape(batch, patches, frames, self.config.patch_bins, 2).transpose(2, 3)
        out = out.reshape(batch, patches * self.config.patch_bins, frames, 2)
        real, imag = out[..., 0], out[..., 1]
        compressed = torch.sqrt(real**2 + imag**2 + 1e-12).clamp(max=COMPRESSED_CEILING)
        gain = compressed ** (1.0 / self.config.compression - 1.0)
        nyquist = real.new_zeros(batch, 1, frames)
        return self.istft(torch.cat([real * gain, nyquist], 1), torch.cat([imag * gain, nyquist], 1))

    # ---- encoder / decoder -----------------------------------------------------------------------

    def encode_features(self, wav: Tensor) -> list[Tensor]:
        """Encoder features of every scale, finest first: [B, F_l, T_l, D_l] (T_l frames at scale l)."""
        x = self.embed(self.analyse(wav)) + self.frequency_embedding[:, None, :]
        features = []
        for level, stage in enumerate(self.encoder):
            if level:
                x = self.merge[level - 1](x)
            x = stage(x)
            features.append(x)
        return features

    def _run_decoder(
        self, refine: Callable[[int, Tensor], Tensor], batch: int, tokens: int, last_stream: int | None = None
    ) -> Tensor:
        """Step-wise decoding from the coarsest scale; ``refine(stream, x)`` adds a stream's residual.

        Returns the decoder state right after ``last_stream`` (encoding stops there), else the
        finest-scale output [B, F0, tokens * frames_per_token[0], D0].
        """
        coarsest = len(self.decoder) - 1
        frames = tokens * self.frames_per_token[coarsest]
        shape = (batch, self.num_patches[coarsest], frames, self.config.dims[coarsest])
        x = self.head.weight.new_zeros(shape)
        for level in range(coarsest, -1, -1):
            for stream, scale in enumerate(self.stream_scales):
                if scale == level:
                    x = refine(stream, x)
                    if stream == last_stream:
                        return x
            x = self.decoder[level](x)
            if level:
                x = self.split[level - 1](x)
        return x

    # ---- codec contract --------------------------------------------------------------------------

    def forward(self, wav: Tensor, num_codebooks: int | None = None) -> CodecForwardOutput:
        """Training pass: encode, quantize every stream (quantizer dropout in training), decode.

        In training mode it also counts down a quantizer pre-training started with
        :meth:`begin_quantizer_pretraining` (bypassed streams report zero losses and statistics).
        """
        features = self.encode_features(wav)
        counts = self.quantizer.sample_num_codebooks(wav.shape[0], wav.device, num_codebooks)
        outputs = []

        def refine(stream: int, x: Tensor) -> Tensor:
            x, out = self.quantizer.quantize(stream, features[self.stream_scales[stream]], x, counts)
            outputs.append(out)
            return x

        grid = self._run_decoder(refine, wav.shape[0], wav.shape[1] // self.hop_length)
        result = CodecForwardOutput(self.synthesise(grid), self.quantizer.combine(outputs, counts))
        if self.training:
            self._count_pretraining_step()
        return result

    @torch.no_grad()
    def encode_codes(self, wav: Tensor, num_codebooks: int | None = None) -> Tensor:
        """Audio [B, T] -> codes [B, n, T / hop_length] of the first n codebooks (default all)."""
        n = self._check_num_codebooks(num_codebooks or len(self.codebook_sizes))
        groups = self.config.num_groups
        features = self.encode_features(wav)
        codes = []

        def refine(stream: int, x: Tensor) -> Tensor:
            target = features[self.stream_scales[stream]]
            x, stream_codes = self.quantizer.encode(stream, target, x, min(groups, n - stream * groups))
            codes.append(stream_codes)
            return x

        self._run_decoder(
            refine, wav.shape[0], wav.shape[1] // self.hop_length, last_stream=(n - 1) // groups
        )
        return torch.cat(codes, dim=1)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Codes [B, n, N] of the first n codebooks -> audio [B, N * hop_length]."""
        if codes.ndim != 3:
            raise ValueError(f"decode_codes expects codes [B, K, N], got shape {tuple(codes.shape)}")
        n, groups = self._check_num_codebooks(codes.shape[1]), self.config.num_groups

        def refine(stream: int, x: Tensor) -> Tensor:
            if stream * groups >= n:
                return x
            return self.quantizer.decode(stream, codes[:, stream * groups : (stream + 1) * groups], x)

        grid = self._run_decoder(refine, codes.shape[0], codes.shape[2])
        return self.synthesise(grid)

    def task_api(self) -> Codec:
        return Codec(self)

    # ---- quantizer pre-training (ESC §3.4) -------------------------------------------------------

    @property
    def quantizers_enabled(self) -> bool:
        return bool(self.quantizer.enabled)

    def set_quantizers_enabled(self, enabled: bool) -> None:
        """Switch the quantizers off (bypass) or on (re-arming k-means init if they were off);
        cancels a pre-training countdown."""
        self.pretraining_steps_left.fill_(0)
        self.quantizer.set_enabled(enabled)

    def begin_quantizer_pretraining(self, num_steps: int) -> None:
        """Bypass the quantizers for the next ``num_steps`` training forward passes, then enable
        them; their codebooks are k-means initialised on the pass after that. The countdown is a
        buffer, so it is saved and resumed with the weights."""
        if num_steps < 0:
            raise ConfigError(f"num_steps must be >= 0, got {num_steps}")
        self.set_quantizers_enabled(num_steps == 0)
        self.pretraining_steps_left.fill_(num_steps)

    def _count_pretraining_step(self) -> None:
        left = int(self.pretraining_steps_left)
        if left <= 0:
            return
        self.pretraining_steps_left.fill_(left - 1)
        if left == 1:
            logger.info("quantizer pre-training done: enabling the quantizers (k-means init next step)")
            self.quantizer.set_enabled(True)

    def _check_num_codebooks(self, n: int) -> int:
        if not 1 <= n <= len(self.codebook_sizes):
            raise ValueError(f"num_codebooks must be in 1..{len(self.codebook_sizes)}, got {n}")
        return int(n)


def _check_config(config: ESCCodecConfig) -> list[int]:
    """Validate sizes; returns the number of frequency patches at each scale, finest first."""
    bins = config.n_fft // 2
    if len(config.dims) < 1 or len(config.dims) != len(config.depths):
        raise ConfigError(f"dims {config.dims} and depths {config.depths} need one entry per scale")
    if config.hop_length < 1 or config.frames_per_code < 1 or config.patch_bins < 1:
        raise ConfigError("hop_length, frames_per_code and patch_bins must be >= 1")
    patches = bins // config.patch_bins
    if bins % config.patch_bins or patches % 2 ** (len(config.dims) - 1):
        raise ConfigError(
            f"n_fft // 2 = {bins} bins must split into patches of {config.patch_bins} bins whose count "
            f"halves evenly {len(config.dims) - 1} times"
        )
    if min(config.dims) < 1 or min(config.depths) < 0 or not 0.0 < config.compression <= 1.0:
        raise ConfigError("dims must be >= 1, depths >= 0 and compression in (0, 1]")
    if any(d % max(1, d // config.head_dim) for d in config.dims):
        raise ConfigError(f"every dim in {config.dims} must split into heads of about {config.head_dim}")
    strides = config.time_strides
    if len(strides) != len(config.dims) or strides[0] != 1 or config.frames_per_code % math.prod(strides):
        raise ConfigError(
            f"time_strides {strides} need one entry per scale, the first 1, and a product dividing "
            f"frames_per_code = {config.frames_per_code}"
        )
    stream_scales(config.num_streams, len(config.dims))
    return [patches >> level for level in range(len(config.dims))]
