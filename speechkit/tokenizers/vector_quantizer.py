"""Vector quantizer for [B, D, T] features: EMA or learned codebook, k-means init, dead-code restart.

How the codebook learns (one rule, chosen by ``ema_decay``):

============================  =====================================================================
``ema_decay=0.99`` (default)  The codebook is a buffer updated by exponential moving averages of
                              cluster sizes and assigned-vector sums (VQ-VAE, van den Oord et al.
                              2017, appendix A.1; as in EnCodec/audiocraft). No gradient reaches
                              it; ``codebook_loss`` is 0. Works with or without factorised codes.
``ema_decay=None``            The codebook is an ``nn.Parameter`` learned by gradient through
                              ``codebook_loss = |sg(z) - q|^2`` (VQ-VAE eq. 3), the DAC recipe;
                              add ``codebook_loss`` to the training loss.
============================  =====================================================================

Factorised codes (``codebook_dim < dim``, DAC, Kumar et al. 2023, §3.2, after ViT-VQGAN, Yu et al.
2022, §3.2): a 1x1 conv projects D -> codebook_dim, lookup happens there, and another 1x1 conv
projects back. ``l2_normalize=True`` puts both the projected vectors and the codes on the unit
sphere, so the nearest code is the one of highest cosine similarity; the quantized value is the
normalised code (ViT-VQGAN's choice; DAC looks up with normalised vectors but emits raw ones).

Both paths share: k-means initialisation from the first training batch (``initialized`` buffer),
dead-code restart, the EMA cluster-size buffer it relies on, and usage statistics. All state
changes happen in ``forward`` in training mode only, under ``torch.no_grad``; ``encode``/``decode``
never change state. Randomness comes from torch's default generator: runs are deterministic given
the seed (on CUDA, bitwise only under ``torch.use_deterministic_algorithms(True)``, which makes the
``index_add_`` of the EMA sums deterministic).

Distributed training: this module never calls ``torch.distributed``. Under DDP the EMA path stays
consistent because DDP broadcasts buffers (codebook, EMA sums, cluster sizes, ``initialized``) from
rank 0 before every forward (``broadcast_buffers=True``, the default): every rank quantizes with
rank 0's codebook, and only rank 0's EMA statistics survive (the other ranks' batches still shape
the encoder through gradients). The learned path (``ema_decay=None``) keeps the codebook in a
parameter, which DDP does not re-broadcast: k-means init and dead-code restart would then diverge
across ranks. Call ``initialize`` on the same batch on every rank before wrapping (or use
``kmeans_init=False``), and use ``threshold_ema_dead_code=0`` or have the trainer broadcast the
codebook after each step. (A restart in the learned path also leaves the optimizer's moments of
that row stale; they wash out within a few hundred steps.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ConfigError
from speechkit.tokenizers.kmeans import kmeans, nearest_code, sample_vectors

logger = logging.getLogger(__name__)

_STATS_DECAY = 0.99  # decay of the usage statistics when the codebook itself is learned by gradient


@dataclass
class QuantizerOutput:
    """What ``VectorQuantizer.forward`` returns.

    Attributes:
        quantized: [B, D, T] quantized features; gradients pass straight through to the input.
        codes: [B, T] int64 code indices.
        commitment_loss: scalar ``commitment_weight * |z - sg(q)|^2`` (mean over active positions).
        codebook_loss: scalar ``|sg(z) - q|^2`` for a learned codebook; 0 on the EMA path.
        perplexity: scalar ``exp(entropy)`` of the batch code distribution (1 = one code used).
        usage: scalar fraction of the codebook used at least once in the batch.
    """

    quantized: Tensor
    codes: Tensor
    commitment_loss: Tensor
    codebook_loss: Tensor
    perplexity: Tensor
    usage: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantizer with straight-through gradients (VQ-VAE).

    Args:
        dim: D, channels of the input [B, D, T].
        codebook_size: number of codes.
        codebook_dim: dimension of the codes; ``None`` or ``dim`` for no factorisation, smaller for
            DAC-style factorised codes (1x1 conv projections in and out).
        l2_normalize: look up with l2-normalised vectors and codes (cosine similarity).
        ema_decay: decay of the EMA codebook updates; ``None`` learns the codebook by gradient
            through ``codebook_loss`` instead (see the module docstring).
        kmeans_init: initialise the codebook with k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that k-means.
        threshold_ema_dead_code: a code whose EMA cluster size (assignments per batch, smoothed)
            falls below this is replaced by a random vector of the current batch; 0 disables. Keep
            it below the mean count per code, ``B * T / codebook_size``. Cluster sizes start at 1,
            so with ``kmeans_init=False`` and a threshold above 1 the first training batch seeds
            every code with a random batch vector.
        commitment_weight: weight of the commitment loss (beta in VQ-VAE eq. 3).
        epsilon: Laplace smoothing of the EMA cluster sizes (avoids division by zero).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> vq = VectorQuantizer(dim=8, codebook_size=16)
        >>> out = vq(torch.randn(2, 8, 5))  # training mode: k-means init on this batch
        >>> out.quantized.shape, out.codes.shape
        (torch.Size([2, 8, 5]), torch.Size([2, 5]))
        >>> codes = vq.encode(torch.randn(2, 8, 5))
        >>> vq.decode(codes).shape
        torch.Size([2, 8, 5])
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
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
        _check_arguments(dim, codebook_size, codebook_dim, ema_decay, kmeans_iters, threshold_ema_dead_code)
        self.dim = dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim if codebook_dim is not None else dim
        self.l2_normalize = l2_normalize
        self.ema_decay = ema_decay
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = float(threshold_ema_dead_code)
        self.commitment_weight = float(commitment_weight)
        self.epsilon = float(epsilon)
        self._warned_small_batch = False

        factorised = self.codebook_dim != dim
        self.project_in = nn.Conv1d(dim, self.codebook_dim, 1) if factorised else nn.Identity()
        self.project_out = nn.Conv1d(self.codebook_dim, dim, 1) if factorised else nn.Identity()

        codebook = torch.randn(codebook_size, self.codebook_dim)
        if l2_normalize:
            codebook = F.normalize(codebook, dim=1)
        if self.uses_ema:
            self.register_buffer("codebook", codebook)  # [K, codebook_dim]
            # EMA state starts as one virtual assignment per code, consistent with the random codebook.
            self.register_buffer("embed_sum", codebook.clone())  # [K, codebook_dim]
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("cluster_size", torch.ones(codebook_size))  # [K] EMA assignments per batch
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        # Negative means "no training batch seen yet"; the first batch sets them directly.
        self.register_buffer("usage_ema", torch.tensor(-1.0))
        self.register_buffer("perplexity_ema", torch.tensor(-1.0))

    @property
    def uses_ema(self) -> bool:
        """True when the codebook is updated by EMA, False when it is learned by gradient."""
        return self.ema_decay is not None

    @property
    def codebook_vectors(self) -> Tensor:
        """[K, codebook_dim] the codes as used for lookup and output (unit norm if l2_normalize)."""
        return F.normalize(self.codebook, dim=1) if self.l2_normalize else self.codebook

    def forward(self, x: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize; in training mode also initialise, restart dead codes and update the EMA state.

        Args:
            x: [B, D, T] features.
            mask: optional [B, T] bool, True where a position is real. Masked-out positions are
                still quantized but take no part in losses, statistics or codebook updates
                (padding, or a residual stage dropped by quantizer dropout).

        Returns:
            QuantizerOutput (see its fields).
        """
        self._check_input(x, mask)
        batch, _, frames = x.shape
        # Distances and EMA sums in float32 even under autocast: bf16 argmins and running sums are
        # visibly wrong (vector-quantize-pytorch disables autocast in its codebooks too).
        with torch.autocast(device_type=x.device.type, enabled=False):
            latent = self._to_latent(x.float())  # [B, Dc, T]
            flat = latent.transpose(1, 2).reshape(batch * frames, self.codebook_dim)  # [N, Dc]
            keep = None if mask is None else mask.reshape(-1)
            active = flat if keep is None else flat[keep]  # [N_active, Dc]
            if self.training and active.shape[0] > 0:
                self._prepare_codebook(active.detach())
            codebook = self.codebook_vectors
            codes = nearest_code(flat.detach(), codebook.detach())  # [N]
            quantized = F.embedding(codes, codebook)  # [N, Dc]; carries gradient to a learned codebook
            q_active = quantized if keep is None else quantized[keep]
            commitment_loss, codebook_loss = self._losses(active, q_active)
            codes_active = codes if keep is None else codes[keep]
            counts = torch.bincount(codes_active, minlength=self.codebook_size).float()  # [K]
            perplexity, usage = _perplexity_and_usage(counts)
            if self.training and active.shape[0] > 0:
                self._update_state(active.detach(), codes_active, counts, perplexity, usage)
            # Straight-through estimator (VQ-VAE §3.2): the forward value is q, the gradient is identity.
            quantized = flat + (quantized - flat).detach()
            quantized = quantized.reshape(batch, frames, self.codebook_dim).transpose(1, 2)  # [B, Dc, T]
            quantized = self.project_out(quantized).to(x.dtype)
        return QuantizerOutput(
            quantized=quantized,
            codes=codes.reshape(batch, frames),
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=perplexity,
            usage=usage,
        )

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Codes of the nearest codebook entries; never changes state.

        Args:
            x: [B, D, T] features.

        Returns:
            [B, T] int64 codes.
        """
        self._check_input(x, None)
        batch, _, frames = x.shape
        latent = self._to_latent(x.float())
        flat = latent.transpose(1, 2).reshape(batch * frames, self.codebook_dim)  # [N, Dc]
        return nearest_code(flat, self.codebook_vectors).reshape(batch, frames)

    def decode(self, codes: Tensor) -> Tensor:
        """Features of given codes (the forward value of ``quantized`` for those codes).

        Args:
            codes: [B, T] integer codes in [0, codebook_size) (not range-checked here).

        Returns:
            [B, D, T] float features.
        """
        if codes.ndim != 2 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"decode expects integer codes [B, T], got {codes.dtype} {tuple(codes.shape)}")
        # No data-dependent range check here: it would break ONNX export and sync the device.
        # ``Tokens`` validates ranges at the boundary; on CPU an out-of-range code raises IndexError.
        quantized = F.embedding(codes.long(), self.codebook_vectors)  # [B, T, Dc]
        return self.project_out(quantized.transpose(1, 2))

    @torch.no_grad()
    def initialize(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Run the k-means initialisation now on ``x`` [B, D, T] (``mask`` [B, T] as in forward).

        ``forward`` does this itself on the first training batch; call it to initialise from a
        bigger or chosen batch, or identically on every rank before wrapping a learned codebook in
        DDP. Sets ``initialized``.
        """
        self._check_input(x, mask)
        flat = self._to_latent(x.float()).transpose(1, 2).reshape(-1, self.codebook_dim)  # [N, Dc]
        self._kmeans_init(flat if mask is None else flat[mask.reshape(-1)])

    def extra_repr(self) -> str:
        path = f"ema_decay={self.ema_decay}" if self.uses_ema else "learned codebook"
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}, "
            f"l2_normalize={self.l2_normalize}, {path}"
        )

    def _to_latent(self, x: Tensor) -> Tensor:
        latent = self.project_in(x)
        return F.normalize(latent, dim=1) if self.l2_normalize else latent

    def _check_input(self, x: Tensor, mask: Tensor | None) -> None:
        if x.ndim != 3 or x.shape[1] != self.dim:
            raise ValueError(f"expected features [B, D={self.dim}, T], got shape {tuple(x.shape)}")
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (x.shape[0], x.shape[2])):
            raise ValueError(
                f"mask must be bool [B, T] = {(x.shape[0], x.shape[2])}, got {mask.dtype} {tuple(mask.shape)}"
            )

    def _losses(self, latent: Tensor, quantized: Tensor) -> tuple[Tensor, Tensor]:
        """Commitment and codebook losses (VQ-VAE eq. 3) over the active [N_active, Dc] rows."""
        zero = latent.new_zeros(())
        if latent.shape[0] == 0:
            return zero, zero
        commitment = F.mse_loss(latent, quantized.detach()) * self.commitment_weight
        codebook = zero if self.uses_ema else F.mse_loss(quantized, latent.detach())
        return commitment, codebook

    @torch.no_grad()
    def _prepare_codebook(self, samples: Tensor) -> None:
        """Before lookup: k-means on the first batch, then restart codes that went dead."""
        if self.kmeans_init and not bool(self.initialized):
            # k-means counts are exact, not smoothed: a small cluster is real, so no restart this step.
            self._kmeans_init(samples)
        else:
            self._restart_dead_codes(samples)

    @torch.no_grad()
    def _kmeans_init(self, samples: Tensor) -> None:
        if samples.shape[0] == 0:
            raise ValueError("cannot initialise a codebook from zero active vectors")
        centroids, counts = kmeans(
            samples, self.codebook_size, self.kmeans_iters, spherical=self.l2_normalize
        )
        self.codebook.copy_(centroids)
        self.cluster_size.copy_(counts)  # counts are per batch: the same unit as the EMA counts
        if self.uses_ema:
            self.embed_sum.copy_(centroids * counts.unsqueeze(1))  # keeps codebook == embed_sum / size
        self.initialized.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, samples: Tensor) -> None:
        """Replace codes used less than the threshold by random vectors of the batch.

        The "random restarts" of Jukebox (Dhariwal et al. 2020), as audiocraft's ``expire_codes_``.

        Done before the lookup, so a restarted code wins at least the vector it was copied from and
        its fresh statistics are real. K candidates are drawn every step and selected with
        ``where``: no host sync on the number of dead codes, and the same random stream every step.
        """
        if self.threshold_ema_dead_code <= 0:
            return
        too_small = samples.shape[0] < self.threshold_ema_dead_code * self.codebook_size
        if too_small and not self._warned_small_batch:
            self._warned_small_batch = True
            logger.warning(
                "batch of %d vectors is too small for threshold_ema_dead_code=%g with %d codes: codes "
                "will be restarted over and over; lower the threshold or enlarge the batch",
                samples.shape[0],
                self.threshold_ema_dead_code,
                self.codebook_size,
            )
        dead = self.cluster_size < self.threshold_ema_dead_code  # [K]
        candidates = sample_vectors(samples, self.codebook_size)  # [K, Dc]
        self.codebook.copy_(torch.where(dead.unsqueeze(1), candidates, self.codebook))
        # Restarted codes get the threshold as their count so they are not restarted again at once
        # (vector-quantize-pytorch ``replace``); EMA sums stay consistent with the new vectors.
        self.cluster_size.copy_(torch.where(dead, self.threshold_ema_dead_code, self.cluster_size))
        if self.uses_ema:
            restarted_sum = candidates * self.threshold_ema_dead_code
            self.embed_sum.copy_(torch.where(dead.unsqueeze(1), restarted_sum, self.embed_sum))

    @torch.no_grad()
    def _update_state(
        self, samples: Tensor, codes: Tensor, counts: Tensor, perplexity: Tensor, usage: Tensor
    ) -> None:
        """After lookup: EMA cluster sizes, EMA codebook (EMA path), usage statistics."""
        decay = self.ema_decay if self.uses_ema else _STATS_DECAY
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        for buffer, value in ((self.usage_ema, usage), (self.perplexity_ema, perplexity)):
            buffer.copy_(torch.where(buffer < 0, value, buffer * decay + value * (1 - decay)))
        if not self.uses_ema:
            return
        batch_sum = torch.zeros_like(self.embed_sum).index_add_(0, codes, samples)  # [K, Dc]
        self.embed_sum.mul_(decay).add_(batch_sum, alpha=1 - decay)
        # Laplace smoothing keeps never-used codes finite (audiocraft ``laplace_smoothing``).
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        codebook = self.embed_sum / smoothed.unsqueeze(1)
        self.codebook.copy_(F.normalize(codebook, dim=1) if self.l2_normalize else codebook)


def _perplexity_and_usage(counts: Tensor) -> tuple[Tensor, Tensor]:
    """exp(entropy) of the code distribution and the fraction of codes used, from [K] counts."""
    probs = counts / counts.sum().clamp(min=1)
    entropy = -(probs * probs.clamp(min=1e-10).log()).sum()
    return entropy.exp(), (counts > 0).float().mean()


def _check_arguments(
    dim: int,
    codebook_size: int,
    codebook_dim: int | None,
    ema_decay: float | None,
    kmeans_iters: int,
    threshold_ema_dead_code: float,
) -> None:
    if dim < 1 or codebook_size < 1:
        raise ConfigError(f"dim and codebook_size must be >= 1, got {dim} and {codebook_size}")
    if codebook_dim is not None and not 1 <= codebook_dim <= dim:
        raise ConfigError(f"codebook_dim must be in [1, dim={dim}] or None, got {codebook_dim}")
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in (0, 1) or None (learned codebook), got {ema_decay}")
    if kmeans_iters < 0 or threshold_ema_dead_code < 0:
        raise ConfigError(
            "kmeans_iters and threshold_ema_dead_code must be >= 0, "
            f"got {kmeans_iters} and {threshold_ema_dead_code}"
        )
