"""Cross-scale residual VQ (ESC, Gu & Diao 2024, §3.2-3.3): one product VQ per bitstream, each
quantizing the residual between encoder and decoder features at one scale of a hierarchy.

A plain RVQ quantizes one latent over and over. Here the decoder itself is the accumulator: it
starts from nothing at the coarsest scale, and before each of its scales it adds the quantized
difference between what the encoder saw there and what the decoder has so far::

    decoder state x = 0 (coarsest scale)
    stream s at scale l(s):  x <- x + Q_s(enc_l - x)        (enc_l: encoder features at scale l)
    decoder blocks / upsampling move x to the next finer scale between streams

Streams are sent coarse to fine, so dropping the last ones lowers the bitrate and the decoder just
skips those refinements (step-wise decoding). Quantizer dropout over streams (SoundStream §3.3)
trains every operating point. Encoding needs the decoder's state, so the codec drives the loop and
calls :meth:`CrossScaleRVQ.quantize` / :meth:`~CrossScaleRVQ.encode` / :meth:`~CrossScaleRVQ.decode`
once per stream; this module owns the quantizers, the feature<->vector layout and the statistics.

Each stream flattens m_s frames of its [F, D] feature grid into one vector (one token frame) and
quantizes it with a product (group) VQ (ESC §3.3, after Jégou et al. 2011): G disjoint slices, one
l2-normalised factorised codebook each, so a stream emits G codes per token frame.

Quantizer pre-training (ESC §3.4): with :meth:`CrossScaleRVQ.set_enabled` ``(False)`` every stream is
bypassed through its factorised projections (``project_out(normalize(project_in(r)))``, no codebook
lookup), so encoder, decoder and projections train as an autoencoder first; enabling the
quantizers again re-arms the k-means initialisation, which then runs on the next training batch of
the (by now meaningful) residuals, lifting codebook use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.tokenizers.bitpacking import bitrate
from speechkit.tokenizers.residual_vq import ResidualQuantizerOutput
from speechkit.tokenizers.vector_quantizer import VectorQuantizer


def split_sizes(total: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous slices of ``total`` channels, the first ones one larger.

    Example:
        >>> split_sizes(10, 3)
        [4, 3, 3]
    """
    if not 1 <= parts <= total:
        raise ConfigError(f"cannot split {total} channels into {parts} groups")
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


class ProductVQ(nn.Module):
    """Product (group) vector quantizer: G channel slices of [B, D, T], one VectorQuantizer each.

    The G codes of a frame together address ``codebook_size ** G`` vectors while each codebook
    stays small enough to be used fully (ESC §3.3). Codes are l2-normalised and factorised (DAC
    §3.2), codebooks EMA-updated, k-means initialised and restarted when dead (see
    :class:`~speechkit.tokenizers.vector_quantizer.VectorQuantizer`).

    Args:
        dim: D, channels of the input.
        num_groups: G, slices (codebooks); G <= D.
        codebook_size: codes per codebook.
        codebook_dim: factorised code dimension (capped at each slice's width).
        ema_decay: EMA decay of the codebooks (``None``: learned by gradient).
        threshold_ema_dead_code: dead-code restart threshold (0 disables).
        commitment_weight: weight of each codebook's commitment loss.

    Example:
        >>> pvq = ProductVQ(dim=12, num_groups=3, codebook_size=16, codebook_dim=2)
        >>> out = pvq(torch.randn(2, 12, 5))  # training mode: k-means init on this batch
        >>> out.codes.shape, out.usage.shape
        (torch.Size([2, 3, 5]), torch.Size([3]))
        >>> pvq.decode(pvq.encode(torch.randn(2, 12, 5), num_groups=2)).shape  # group 3 adds 0
        torch.Size([2, 12, 5])
    """

    def __init__(
        self,
        dim: int,
        num_groups: int,
        codebook_size: int,
        codebook_dim: int = 8,
        ema_decay: float | None = 0.99,
        threshold_ema_dead_code: float = 2.0,
        commitment_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_groups = num_groups
        self.group_dims = split_sizes(dim, num_groups)
        self.layers = nn.ModuleList(
            VectorQuantizer(
                width,
                codebook_size,
                codebook_dim=min(codebook_dim, width),
                l2_normalize=True,
                ema_decay=ema_decay,
                kmeans_init=True,
                threshold_ema_dead_code=threshold_ema_dead_code,
                commitment_weight=commitment_weight,
            )
            for width in self.group_dims
        )

    def forward(self, x: Tensor, num_groups: Tensor | None = None) -> ResidualQuantizerOutput:
        """Quantize; groups at or beyond ``num_groups[b]`` add nothing for item b.

        Args:
            x: [B, D, T] features.
            num_groups: optional [B] int, active groups per item (default all G).

        Returns:
            ResidualQuantizerOutput with codes [B, G, T], perplexity and usage [G], losses summed
            over groups, ``num_stages`` = active groups per item.
        """
        batch, _, frames = x.shape
        if num_groups is None:
            num_groups = torch.full((batch,), self.num_groups, dtype=torch.long, device=x.device)
        parts, codes, perplexity, usage = [], [], [], []
        commitment_loss = codebook_loss = x.new_zeros((), dtype=torch.float32)
        for g, (layer, chunk) in enumerate(zip(self.layers, x.split(self.group_dims, dim=1), strict=True)):
            active = num_groups > g  # [B]
            out = layer(chunk, mask=active.unsqueeze(1).expand(batch, frames))
            parts.append(out.quantized * active.view(batch, 1, 1).to(out.quantized.dtype))
            codes.append(out.codes)
            perplexity.append(out.perplexity)
            usage.append(out.usage)
            commitment_loss = commitment_loss + out.commitment_loss
            codebook_loss = codebook_loss + out.codebook_loss
        return ResidualQuantizerOutput(
            quantized=torch.cat(parts, dim=1),
            codes=torch.stack(codes, dim=1),
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=torch.stack(perplexity),
            usage=torch.stack(usage),
            num_stages=num_groups,
        )

    @torch.no_grad()
    def encode(self, x: Tensor, num_groups: int | None = None) -> Tensor:
        """Codes of the first ``num_groups`` slices (default G) of x [B, D, T] -> [B, g, T]."""
        chunks = x.split(self.group_dims, dim=1)[: num_groups or self.num_groups]
        return torch.stack([layer.encode(c) for layer, c in zip(self.layers, chunks, strict=False)], dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes [B, g, T] of the first g <= G groups -> [B, D, T]; missing groups are zeros."""
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.num_groups:
            raise ValueError(
                f"decode expects codes [B, g, T] with 1 <= g <= {self.num_groups}, got {tuple(codes.shape)}"
            )
        parts = [layer.decode(codes[:, g]) for g, layer in enumerate(self.layers[: codes.shape[1]])]
        batch, frames = codes.shape[0], codes.shape[2]
        missing = self.group_dims[codes.shape[1] :]
        parts += [parts[0].new_zeros((batch, width, frames)) for width in missing]
        return torch.cat(parts, dim=1)

    def bypass(self, x: Tensor) -> Tensor:
        """The quantizer without its lookup: ``project_out(normalize(project_in(x)))`` per group."""
        parts = []
        for layer, chunk in zip(self.layers, x.split(self.group_dims, dim=1), strict=True):
            parts.append(layer.project_out(F.normalize(layer.project_in(chunk), dim=1)))
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def reinitialize(self) -> None:
        """Re-arm k-means initialisation: the next training forward re-seeds every codebook."""
        for layer in self.layers:
            layer.initialized.fill_(False)
            layer.usage_ema.fill_(-1.0)
            layer.perplexity_ema.fill_(-1.0)


class CrossScaleRVQ(nn.Module):
    """The bitstreams of a cross-scale residual VQ codec (see the module docstring).

    Feature grids are [B, F, T, D] (frequency patches, frames, channels); stream s quantizes
    ``m_s`` frames of its grid at a time, so its codes run at ``T_s / m_s`` frames, the same token
    rate for every stream. Codebook k of the token layout is group ``k % G`` of stream ``k // G``.

    Args:
        stream_shapes: (F_s, D_s, m_s) of each stream: patches and channels of the grid it
            quantizes and grid frames per token frame, in sending order (coarse first).
        num_groups: G, codebooks per stream.
        codebook_size: codes per codebook.
        codebook_dim: factorised code dimension.
        quantizer_dropout: probability that a training item keeps only n ~ U[1, S] streams.
        threshold_ema_dead_code: dead-code restart threshold (0 disables).
        commitment_weight: weight of each codebook's commitment loss.

    Example:
        >>> rvq = CrossScaleRVQ([(2, 4, 1), (4, 2, 2)], num_groups=2, codebook_size=8, codebook_dim=2)
        >>> coarse, fine = torch.randn(1, 2, 3, 4), torch.randn(1, 4, 6, 2)  # grids at 2 rates
        >>> x, codes0 = rvq.encode(0, coarse, torch.zeros_like(coarse), num_groups=2)
        >>> _, codes1 = rvq.encode(1, fine, torch.zeros_like(fine), num_groups=1)  # a partial stream
        >>> codes0.shape, codes1.shape, rvq.bitrate(frame_rate=50.0, num_codebooks=3)
        (torch.Size([1, 2, 3]), torch.Size([1, 1, 3]), 450.0)
        >>> bool(torch.equal(rvq.decode(0, codes0, torch.zeros_like(coarse)), x))
        True
    """

    def __init__(
        self,
        stream_shapes: Sequence[tuple[int, int, int]],
        num_groups: int = 3,
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        quantizer_dropout: float = 0.0,
        threshold_ema_dead_code: float = 2.0,
        commitment_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not stream_shapes:
            raise ConfigError("a cross-scale RVQ needs at least one stream")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ConfigError(f"quantizer_dropout is a probability in [0, 1], got {quantizer_dropout}")
        self.stream_shapes = [(int(f), int(d), int(m)) for f, d, m in stream_shapes]
        if min(min(shape) for shape in self.stream_shapes) < 1:
            raise ConfigError(f"stream shapes must be positive, got {self.stream_shapes}")
        self.num_groups = num_groups
        self.codebook_size = codebook_size
        self.quantizer_dropout = float(quantizer_dropout)
        self.streams = nn.ModuleList(
            ProductVQ(
                patches * dim * frames,
                num_groups,
                codebook_size,
                codebook_dim,
                threshold_ema_dead_code=threshold_ema_dead_code,
                commitment_weight=commitment_weight,
            )
            for patches, dim, frames in self.stream_shapes
        )
        self.register_buffer("enabled", torch.tensor(True))

    @property
    def num_streams(self) -> int:
        return len(self.streams)

    @property
    def num_codebooks(self) -> int:
        return self.num_streams * self.num_groups

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Sizes of all S * G codebooks in token order (slice it for fewer)."""
        return (self.codebook_size,) * self.num_codebooks

    def bitrate(self, frame_rate: float, num_codebooks: int | None = None) -> float:
        """Bits per second with the first ``num_codebooks`` codebooks (default all) at ``frame_rate``."""
        return bitrate(frame_rate, self.codebook_sizes[: num_codebooks or self.num_codebooks])

    def set_enabled(self, enabled: bool) -> None:
        """Switch quantization on or off (off: the pre-training bypass). Switching on re-arms the
        k-means initialisation of every codebook, which runs on the next training batch."""
        if enabled and not bool(self.enabled):
            for stream in self.streams:
                stream.reinitialize()
        self.enabled.fill_(bool(enabled))

    def sample_num_codebooks(
        self, batch_size: int, device: torch.device, num_codebooks: int | None = None
    ) -> Tensor:
        """[B] codebooks each item uses in a forward pass.

        ``num_codebooks`` fixes it for every item; otherwise all of them, except in training with
        quantizer dropout, where an item keeps n ~ U[1, S] whole streams with probability
        ``quantizer_dropout``. The pre-training bypass always uses every stream (ESC §3.4).
        """
        total = self.num_codebooks
        if num_codebooks is not None:
            if not 1 <= num_codebooks <= total:
                raise ValueError(f"num_codebooks must be in 1..{total}, got {num_codebooks}")
            return torch.full((batch_size,), int(num_codebooks), dtype=torch.long, device=device)
        full = torch.full((batch_size,), total, dtype=torch.long, device=device)
        if not (self.training and bool(self.enabled) and self.quantizer_dropout > 0):
            return full
        streams = torch.randint(1, self.num_streams + 1, (batch_size,), device=device)
        dropped = torch.rand(batch_size, device=device) < self.quantizer_dropout
        return torch.where(dropped, streams * self.num_groups, full)

    def quantize(
        self, stream: int, target: Tensor, decoded: Tensor, num_codebooks: Tensor
    ) -> tuple[Tensor, ResidualQuantizerOutput]:
        """Training pass of one stream: ``decoded + Q(target - decoded)``.

        Args:
            stream: s, the stream index.
            target: [B, F_s, T, D_s] encoder features at the stream's scale.
            decoded: [B, F_s, T, D_s] decoder state at that scale.
            num_codebooks: [B] codebooks per item (from :meth:`sample_num_codebooks`).

        Returns:
            (refined decoder state [B, F_s, T, D_s], this stream's ResidualQuantizerOutput with
            codes [B, G, T / m_s]; all-zero codes and statistics while bypassed).
        """
        residual = self._to_vectors(stream, target - decoded)  # [B, F*m*D, N]
        quantizer = self.streams[stream]
        groups = (num_codebooks - stream * self.num_groups).clamp(0, self.num_groups)
        if bool(self.enabled):
            out = quantizer(residual, groups)
        else:
            out = _bypass_output(quantizer.bypass(residual), self.num_groups, groups)
        return decoded + self._from_vectors(stream, out.quantized), out

    def combine(
        self, outputs: Sequence[ResidualQuantizerOutput], num_codebooks: Tensor
    ) -> ResidualQuantizerOutput:
        """One ResidualQuantizerOutput over all streams: codes [B, K, N], perplexity/usage [K],
        losses summed, ``num_stages`` = codebooks per item, ``quantized`` = the streams' quantized
        residual vectors stacked along channels [B, sum_s F_s * m * D_s, N]."""
        return ResidualQuantizerOutput(
            quantized=torch.cat([o.quantized for o in outputs], dim=1),
            codes=torch.cat([o.codes for o in outputs], dim=1),
            commitment_loss=sum((o.commitment_loss for o in outputs[1:]), outputs[0].commitment_loss),
            codebook_loss=sum((o.codebook_loss for o in outputs[1:]), outputs[0].codebook_loss),
            perplexity=torch.cat([o.perplexity for o in outputs]),
            usage=torch.cat([o.usage for o in outputs]),
            num_stages=num_codebooks,
        )

    @torch.no_grad()
    def encode(self, stream: int, target: Tensor, decoded: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
        """Codes of one stream and the refined state: (``[B, F_s, T, D_s]``, codes ``[B, g, N]``)."""
        codes = self.streams[stream].encode(self._to_vectors(stream, target - decoded), num_groups)
        return self.decode(stream, codes, decoded), codes

    def decode(self, stream: int, codes: Tensor, decoded: Tensor) -> Tensor:
        """Add stream ``stream``'s quantized residual (codes [B, g, N], g <= G) to ``decoded``."""
        return decoded + self._from_vectors(stream, self.streams[stream].decode(codes))

    def _to_vectors(self, stream: int, x: Tensor) -> Tensor:
        """[B, F, T, D] -> [B, F * m * D, T / m]; slices of it are frequency bands of m frames."""
        patches, dim, m = self.stream_shapes[stream]
        batch, _, frames, _ = x.shape
        if x.shape[1] != patches or x.shape[3] != dim or frames % m:
            raise ValueError(
                f"stream {stream} expects [B, {patches}, T, {dim}] with T a multiple of {m}, "
                f"got {tuple(x.shape)}"
            )
        x = x.reshape(batch, patches, frames // m, m, dim).permute(0, 1, 3, 4, 2)  # [B, F, m, D, N]
        return x.reshape(batch, patches * m * dim, frames // m)

    def _from_vectors(self, stream: int, v: Tensor) -> Tensor:
        """Inverse of :meth:`_to_vectors`: [B, F * m * D, N] -> [B, F, N * m, D]."""
        patches, dim, m = self.stream_shapes[stream]
        batch, _, codes = v.shape
        v = v.reshape(batch, patches, m, dim, codes).permute(0, 1, 4, 2, 3)  # [B, F, N, m, D]
        return v.reshape(batch, patches, codes * m, dim)


def _bypass_output(quantized: Tensor, num_groups: int, active: Tensor) -> ResidualQuantizerOutput:
    """Output of a bypassed stream: its projections' value, zero codes, losses and statistics."""
    batch, _, frames = quantized.shape
    zero = quantized.new_zeros((), dtype=torch.float32)
    return ResidualQuantizerOutput(
        quantized=quantized,
        codes=torch.zeros(batch, num_groups, frames, dtype=torch.long, device=quantized.device),
        commitment_loss=zero,
        codebook_loss=zero,
        perplexity=quantized.new_zeros(num_groups, dtype=torch.float32),
        usage=quantized.new_zeros(num_groups, dtype=torch.float32),
        num_stages=active,
    )
