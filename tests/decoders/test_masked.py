"""Masked parallel decoding: the training mask and the iterative decoder."""

from __future__ import annotations

import torch

from speechkit.decoders import iterative_decode, random_mask, sample_tokens


def test_random_mask_stays_inside_valid_and_masks_at_least_one():
    valid = torch.zeros(64, 10, dtype=torch.bool)
    for b in range(64):
        valid[b, : 1 + b % 10] = True
    mask = random_mask(valid, torch.Generator().manual_seed(0))
    assert not (mask & ~valid).any()
    assert (mask.sum(1) >= 1).all()
    ratios = mask.sum(1).float() / valid.sum(1).float()
    assert 0.4 < ratios.mean() < 0.9  # E[cos(pi u / 2)] = 2 / pi ~ 0.64, plus ceil


def test_iterative_decode_fills_every_mask_and_keeps_known_tokens():
    target = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    calls = []

    def logits_fn(tokens, masked):
        calls.append(int(masked.sum()))
        return torch.nn.functional.one_hot(target, 10).float() * 5

    known = torch.tensor([[True, False, False, True, False, False, False, True]])
    tokens = torch.where(known, torch.full_like(target, 7), torch.zeros_like(target))
    out = iterative_decode(logits_fn, tokens, ~known, num_steps=3, temperature=0.0)
    assert out[known].tolist() == [7, 7, 7]  # known positions are never re-predicted
    assert out[~known].tolist() == target[~known].tolist()
    assert calls[0] == 5 and calls == sorted(calls, reverse=True) and len(calls) == 3


def test_iterative_decode_unmasks_most_confident_first():
    confident = torch.tensor([[0.1, 9.0, 0.2, 8.0]])  # positions 1 and 3 are sure

    def logits_fn(tokens, masked):
        logits = torch.zeros(1, 4, 2)
        logits[..., 1] = confident
        return logits

    seen = []

    def recording(tokens, masked):
        seen.append(masked.clone())
        return logits_fn(tokens, masked)

    iterative_decode(recording, torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool), 2, 0.0)
    assert seen[1][0].tolist() == [True, False, True, False]


def test_top_k_one_is_greedy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(100, 30)
    assert torch.equal(sample_tokens(logits, 1.0, top_k=1, generator=g), logits.argmax(-1))


def test_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = sample_tokens(logits.expand(2000, -1), 1.0, top_p=0.7, generator=g)
    assert set(draws.tolist()) == {0, 1}
