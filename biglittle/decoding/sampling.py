"""Logits -> next-token distribution, shared by both models so that p and q are warped alike.

Order as in Hugging Face transformers: temperature, then top-k, then top-p. The result is a
proper, renormalised distribution; the exact acceptance rule needs the very distribution a
draft token was sampled from.
"""

from __future__ import annotations

import torch

from ..config import SamplingConfig

__all__ = ["SamplingConfig", "next_token", "sample", "warp_probs"]


def warp_probs(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Distribution over the vocabulary for each row of `logits` [..., vocab] (float32)."""
    logits = logits.float()
    if sampling.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth_best = torch.topk(logits, sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the best token stays.
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        drop_sorted = mass_before >= sampling.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(-1)


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One token id drawn from `probs` [vocab]."""
    return int(torch.multinomial(probs, 1, generator=generator))


def next_token(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> int:
    """Token id chosen from `logits` [vocab]: argmax when greedy, else a draw from the warped distribution."""
    if sampling.greedy:
        return int(logits.argmax())
    return sample(warp_probs(logits, sampling), generator)
