"""VectorQuantizer: codebook usage, straight-through gradients, EMA vs learned paths, state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechkit.errors import ConfigError
from speechkit.tokenizers import VectorQuantizer


def gaussian_mixture(centers: torch.Tensor, batch: int, frames: int, noise: float = 0.05) -> torch.Tensor:
    """[batch, D, frames] samples around random ``centers`` [C, D]."""
    pick = torch.randint(0, centers.shape[0], (batch, frames))
    x = centers[pick] + noise * torch.randn(batch, frames, centers.shape[1])
    return x.transpose(1, 2)


def fit(vq: VectorQuantizer, centers: torch.Tensor, steps: int, batch: int = 16, frames: int = 64):
    vq.train()
    for _ in range(steps):
        out = vq(gaussian_mixture(centers, batch, frames))
    return out


@pytest.mark.slow
def test_codebook_usage_after_short_fit():
    centers = torch.randn(256, 8)  # more clusters than codes
    vq = VectorQuantizer(dim=8, codebook_size=64, kmeans_init=True, threshold_ema_dead_code=2.0)
    out = fit(vq, centers, steps=300)
    assert out.usage >= 0.9
    assert vq.usage_ema >= 0.9
    assert 0.7 * 64 < out.perplexity <= 64  # reported, and close to uniform
    assert 0.7 * 64 < vq.perplexity_ema <= 64


def test_dead_code_restart_rescues_a_badly_placed_codebook():
    centers = torch.randn(128, 8) + 10.0  # data far from the N(0, 1) initial codebook
    usage = {}
    for threshold in (0.0, 2.0):
        torch.manual_seed(0)
        vq = VectorQuantizer(8, 64, kmeans_init=False, threshold_ema_dead_code=threshold)
        usage[threshold] = fit(vq, centers, steps=30).usage.item()
    assert usage[0.0] < 0.3, usage  # without restarts a few codes take everything
    assert usage[2.0] >= 0.9, usage


def test_straight_through_gradient_reaches_input():
    vq = VectorQuantizer(dim=6, codebook_size=8)
    x = torch.randn(2, 6, 10, requires_grad=True)
    out = vq(x)
    out.quantized.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # identity gradient: straight-through
    # the commitment loss pulls the input towards its code
    x.grad = None
    vq(x).commitment_loss.backward()
    assert x.grad.abs().sum() > 0


def test_ema_updates_in_train_mode_only():
    vq = VectorQuantizer(dim=4, codebook_size=8)
    vq(torch.randn(4, 4, 32))  # k-means init
    assert bool(vq.initialized)
    before = vq.codebook.clone()
    vq(torch.randn(4, 4, 32) + 1.0)
    assert not torch.equal(vq.codebook, before)
    assert not vq.codebook.requires_grad  # EMA path: a buffer, no gradients
    vq.eval()
    before = vq.codebook.clone()
    out = vq(torch.randn(4, 4, 32) + 1.0)
    assert torch.equal(vq.codebook, before)
    assert out.codebook_loss == 0


def test_encode_and_decode_never_change_state_and_match_forward():
    vq = VectorQuantizer(dim=4, codebook_size=8)
    vq(torch.randn(4, 4, 32))
    state = {name: t.clone() for name, t in vq.state_dict().items()}
    x = torch.randn(3, 4, 7)
    codes = vq.encode(x)  # still in training mode
    assert all(torch.equal(t, state[name]) for name, t in vq.state_dict().items())
    vq.eval()
    out = vq(x)
    assert torch.equal(out.codes, codes) and out.codes.dtype == torch.int64
    assert torch.allclose(out.quantized, vq.decode(codes), atol=1e-6)


def test_kmeans_init_happens_once_on_first_training_batch():
    vq = VectorQuantizer(dim=2, codebook_size=4, threshold_ema_dead_code=0.0)
    assert not bool(vq.initialized)
    vq.eval()
    vq(torch.randn(1, 2, 16))
    assert not bool(vq.initialized)  # eval never initialises
    vq.train()
    corners = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])
    vq(corners[torch.arange(64) % 4].T.unsqueeze(0))
    assert bool(vq.initialized)
    assert torch.cdist(corners, vq.codebook).min(dim=1).values.max() < 1e-4


@pytest.mark.slow
def test_factorised_l2_normalised_learned_codebook_trains():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=16, codebook_size=32, codebook_dim=4, l2_normalize=True, ema_decay=None)
    assert isinstance(vq.codebook, torch.nn.Parameter)
    # 32 directions of a 4-D sphere mapped linearly into 16-D: what a 4-D l2 code + 1x1 conv can represent
    centers = torch.nn.functional.normalize(torch.randn(32, 4), dim=1) @ torch.randn(4, 16)
    optimizer = torch.optim.Adam(vq.parameters(), lr=2e-2)
    codebook_before = vq.codebook.detach().clone()
    losses = []
    for _ in range(100):
        x = gaussian_mixture(centers, 8, 32)
        out = vq(x)
        reconstruction = (out.quantized - x).pow(2).mean()
        loss = reconstruction + out.commitment_loss + out.codebook_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(reconstruction.item())
    assert out.codebook_loss > 0  # the learned path reports a real codebook loss
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10]), (losses[:10], losses[-10:])
    assert not torch.equal(vq.codebook.detach(), codebook_before)
    assert torch.allclose(vq.codebook_vectors.norm(dim=1), torch.ones(32), atol=1e-5)
    assert out.usage >= 0.5


def test_factorised_ema_path_runs():
    vq = VectorQuantizer(dim=16, codebook_size=8, codebook_dim=4, l2_normalize=True)
    x = torch.randn(2, 16, 20, requires_grad=True)
    out = vq(x)
    assert out.quantized.shape == x.shape and out.codebook_loss == 0
    (out.quantized.sum() + out.commitment_loss).backward()
    assert x.grad.abs().sum() > 0 and vq.project_in.weight.grad is not None
    assert torch.allclose(vq.codebook.norm(dim=1), torch.ones(8), atol=1e-5)


def test_masked_positions_do_not_touch_the_codebook():
    x = torch.randn(2, 4, 40)
    garbage = x.clone()
    garbage[:, :, 20:] = 1e3  # padding that must not leak into statistics
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[:, :20] = True
    torch.manual_seed(1)
    masked = VectorQuantizer(4, 8)
    masked(garbage, mask=mask)
    masked(garbage, mask=mask)
    torch.manual_seed(1)
    plain = VectorQuantizer(4, 8)
    plain(x[:, :, :20])
    plain(x[:, :, :20])
    assert torch.allclose(masked.codebook, plain.codebook)
    assert torch.allclose(masked.cluster_size, plain.cluster_size)


def test_same_seed_same_codebook():
    def run() -> torch.Tensor:
        torch.manual_seed(3)
        vq = VectorQuantizer(4, 16)
        for _ in range(5):
            vq(torch.randn(2, 4, 30))
        return vq.codebook

    assert torch.equal(run(), run())


def test_state_round_trips_through_safetensors(tmp_path):
    vq = VectorQuantizer(dim=8, codebook_size=16, codebook_dim=4)
    vq(torch.randn(2, 8, 40))
    save_file(vq.state_dict(), tmp_path / "vq.safetensors")
    fresh = VectorQuantizer(dim=8, codebook_size=16, codebook_dim=4)
    fresh.load_state_dict(load_file(tmp_path / "vq.safetensors"))
    x = torch.randn(2, 8, 9)
    assert bool(fresh.initialized)
    assert torch.equal(fresh.encode(x), vq.encode(x))


def test_autocast_does_not_change_codes():
    vq = VectorQuantizer(dim=16, codebook_size=32, codebook_dim=8).eval()
    x = torch.randn(2, 16, 50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(x)
    assert torch.equal(out.codes, vq.encode(x))


def test_invalid_arguments_and_inputs_raise():
    with pytest.raises(ConfigError, match="ema_decay"):
        VectorQuantizer(4, 8, ema_decay=1.0)
    with pytest.raises(ConfigError, match="codebook_dim"):
        VectorQuantizer(4, 8, codebook_dim=5)
    with pytest.raises(ConfigError):
        VectorQuantizer(4, 0)
    vq = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match="D=4"):
        vq(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="mask"):
        vq(torch.randn(2, 4, 3), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="integer codes"):
        vq.decode(torch.zeros(2, 3))
