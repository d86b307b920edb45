"""Residual vector quantization (RVQ) with quantizer dropout, as in SoundStream, EnCodec and DAC.

Stage 1 quantizes the features, stage i quantizes what stages 1..i-1 left over, and the output is
the sum of the stage outputs, so the first n of K codebooks give a coarser reconstruction at
n/K of the bitrate::

    x ──► VQ_1 ──► q_1          r_1 = x
          r_2 = r_1 - q_1 ──► VQ_2 ──► q_2
          ...                                   quantized = q_1 + q_2 + ... + q_n

Quantizer dropout (SoundStream, Zeghidour et al. 2021, §3.3; DAC, Kumar et al. 2023, §3.3): in
training, each batch item is, with probability ``quantizer_dropout``, quantized with only its
first n ~ U[1, K] stages, so one model serves every bitrate from 1 to K codebooks.

Each stage keeps the straight-through estimator and the residual is not detached (DAC), so the
gradient of ``quantized`` w.r.t. the input is the identity and factorised projections learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.tokenizers.bitpacking import bitrate
from speechkit.tokenizers.vector_quantizer import VectorQuantizer


@dataclass
class ResidualQuantizerOutput:
    """What ``ResidualVQ.forward`` returns (n = stages run).

    Attributes:
        quantized: [B, D, T] sum of the used stages' outputs (straight-through to the input).
        codes: [B, n, T] int64 codes. For an item that dropout cut to ``num_stages[b]`` stages,
            the codes of later stages are what those stages would emit; they add nothing to
            ``quantized``.
        commitment_loss: scalar, sum over stages of each stage's commitment loss.
        codebook_loss: scalar, sum over stages of each stage's codebook loss (0 on the EMA path).
        perplexity: [n] batch perplexity of each stage's codes.
        usage: [n] fraction of each stage's codebook used in the batch.
        num_stages: [B] int64, how many stages each item used (n unless dropout cut it).
    """

    quantized: Tensor
    codes: Tensor
    commitment_loss: Tensor
    codebook_loss: Tensor
    perplexity: Tensor
    usage: Tensor
    num_stages: Tensor


class ResidualVQ(nn.Module):
    """Residual stack of ``VectorQuantizer`` stages on [B, D, T] features.

    Args:
        dim: D, channels of the input.
        num_quantizers: K, the number of stages (codebooks).
        codebook_size: codes per stage.
        quantizer_dropout: probability that a training item uses n ~ U[1, K] stages instead of K.
        codebook_dim: per-stage code dimension for factorised codes (``None``: no factorisation).
        l2_normalize: l2-normalised lookup in each stage.
        ema_decay: EMA decay of the codebooks; ``None`` learns them by gradient (add
            ``codebook_loss`` to the training loss).
        kmeans_init: k-means initialisation of each stage on its first training batch.
        kmeans_iters: Lloyd iterations of that k-means.
        threshold_ema_dead_code: dead-code restart threshold (EMA assignments per batch; 0 disables).
        commitment_weight: weight of each stage's commitment loss.
        epsilon: Laplace smoothing of the EMA cluster sizes.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> rvq = ResidualVQ(dim=8, num_quantizers=4, codebook_size=16, quantizer_dropout=0.5)
        >>> out = rvq(torch.randn(2, 8, 10))
        >>> out.codes.shape, out.perplexity.shape
        (torch.Size([2, 4, 10]), torch.Size([4]))
        >>> codes = rvq.encode(torch.randn(2, 8, 10), num_quantizers=2)  # [B, 2, T]
        >>> rvq.decode(codes).shape
        torch.Size([2, 8, 10])
        >>> rvq.bitrate(frame_rate=50.0, num_quantizers=2)  # 50 Hz x 2 codebooks x 4 bits
        400.0
    """

    def __init__(
        self,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        quantizer_dropout: float = 0.0,
        codebook_dim: int | None = None,
        l2_normalize: bool = False,
        ema_decay: float | None = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 2.0,
        commitment_weight: float = 1.0,
        epsilon: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_quantizers < 1:
            raise ConfigError(f"num_quantizers must be >= 1, got {num_quantizers}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ConfigError(f"quantizer_dropout is a probability in [0, 1], got {quantizer_dropout}")
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.quantizer_dropout = float(quantizer_dropout)
        self.layers = nn.ModuleList(
            VectorQuantizer(
                dim,
                codebook_size,
                codebook_dim=codebook_dim,
                l2_normalize=l2_normalize,
                ema_decay=ema_decay,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                threshold_ema_dead_code=threshold_ema_dead_code,
                commitment_weight=commitment_weight,
                epsilon=epsilon,
            )
            for _ in range(num_quantizers)
        )

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """The size of each of the K codebooks (for ``Tokens``; slice it for fewer stages)."""
        return (self.codebook_size,) * self.num_quantizers

    def bitrate(self, frame_rate: float, num_quantizers: int | None = None) -> float:
        """Bits per second with ``num_quantizers`` stages (default K) at ``frame_rate`` frames/s.

        Args:
            frame_rate: token frames per second.
            num_quantizers: stages used, 1..K (default K).

        Returns:
            ``frame_rate * n * ceil(log2(codebook_size))``.
        """
        return bitrate(frame_rate, self.codebook_sizes[: self._resolve(num_quantizers)])

    def forward(
        self, x: Tensor, num_quantizers: int | None = None, mask: Tensor | None = None
    ) -> ResidualQuantizerOutput:
        """Quantize with n stages; in training mode, with quantizer dropout when n is not given.

        Args:
            x: [B, D, T] features.
            num_quantizers: run the first n stages for every item (no dropout); default K with
                dropout in training mode.
            mask: optional [B, T] bool, True at real (non-padding) positions; see
                ``VectorQuantizer.forward``.

        Returns:
            ResidualQuantizerOutput (see its fields).
        """
        n = self._resolve(num_quantizers)
        batch = x.shape[0]
        dropout = self.training and num_quantizers is None and self.quantizer_dropout > 0
        if dropout:
            num_stages = self._sample_num_stages(batch, n, x.device)
        else:
            num_stages = torch.full((batch,), n, dtype=torch.long, device=x.device)
        use_mask = dropout or mask is not None
        residual, quantized = x, torch.zeros_like(x)
        codes, perplexity, usage = [], [], []
        commitment_loss = codebook_loss = x.new_zeros((), dtype=torch.float32)
        for i, layer in enumerate(self.layers[:n]):
            active = num_stages > i  # [B]
            stage_mask = None
            if use_mask:
                stage_mask = active.unsqueeze(1).expand(batch, x.shape[2])  # [B, T]
                stage_mask = stage_mask if mask is None else stage_mask & mask
            out = layer(residual, mask=stage_mask)
            stage = out.quantized * active.view(batch, 1, 1).to(out.quantized.dtype)  # dropped: adds 0
            quantized = quantized + stage
            residual = residual - stage  # not detached (DAC): gradients reach earlier projections
            codes.append(out.codes)
            perplexity.append(out.perplexity)
            usage.append(out.usage)
            commitment_loss = commitment_loss + out.commitment_loss
            codebook_loss = codebook_loss + out.codebook_loss
        return ResidualQuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=torch.stack(perplexity),
            usage=torch.stack(usage),
            num_stages=num_stages,
        )

    @torch.no_grad()
    def encode(self, x: Tensor, num_quantizers: int | None = None) -> Tensor:
        """Codes of the first n stages; never changes state.

        Args:
            x: [B, D, T] features.
            num_quantizers: n, 1..K (default K).

        Returns:
            [B, n, T] int64 codes.
        """
        residual, codes = x, []
        for layer in self.layers[: self._resolve(num_quantizers)]:
            stage_codes = layer.encode(residual)
            residual = residual - layer.decode(stage_codes)
            codes.append(stage_codes)
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        """Sum of the stage outputs for codes of the first n <= K stages.

        Args:
            codes: [B, n, T] integer codes, 1 <= n <= K.

        Returns:
            [B, D, T] features.
        """
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.num_quantizers:
            raise ValueError(
                f"decode expects codes [B, n, T] with 1 <= n <= {self.num_quantizers}, "
                f"got {tuple(codes.shape)}"
            )
        quantized = self.layers[0].decode(codes[:, 0])
        for i in range(1, codes.shape[1]):
            quantized = quantized + self.layers[i].decode(codes[:, i])
        return quantized

    def _resolve(self, num_quantizers: int | None) -> int:
        if num_quantizers is None:
            return self.num_quantizers
        if not 1 <= num_quantizers <= self.num_quantizers:
            raise ValueError(f"num_quantizers must be in [1, {self.num_quantizers}], got {num_quantizers}")
        return int(num_quantizers)

    def _sample_num_stages(self, batch: int, n: int, device: torch.device) -> Tensor:
        """[B] stages per item: n ~ U[1, n] with probability ``quantizer_dropout``, else n."""
        random_stages = torch.randint(1, n + 1, (batch,), device=device)
        dropped = torch.rand(batch, device=device) < self.quantizer_dropout
        return torch.where(dropped, random_stages, torch.full_like(random_stages, n))
