"""Acceptance rules: how many proposed tokens survive the big model's scoring, and which token follows.

Every rule is a pure function of tensors. Each returns a `Verdict`: the proposal's nodes on the
accepted `path` are kept and `next_token` (a correction, a replacement or a bonus token) is
appended after them, so every round of scoring emits at least one token. The verdict also says
what happened (a BiLD rollback or hand-over), so the loop never asks which method it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampling import SamplingConfig, next_token, sample


@dataclass(frozen=True)
class Verdict:
    path: tuple[int, ...]  # the accepted proposal nodes, root first (a chain: 0, 1, ..., n - 1)
    next_token: int  # the target's token after them
    rolled_back: bool = False  # BiLD: the big model replaced a little token
    fell_back: bool = False  # BiLD: the little model handed over to the big one

    @property
    def num_accepted(self) -> int:
        return len(self.path)

    @classmethod
    def prefix(cls, num_accepted: int, next_token: int, **events: bool) -> Verdict:
        """The first `num_accepted` nodes of a chain, then `next_token`."""
        return cls(tuple(range(num_accepted)), next_token, **events)


def greedy_match(draft_tokens: list[int], target_logits: torch.Tensor) -> Verdict:
    """Temperature 0: keep drafts while they equal the target's argmax.

    target_logits: [num_draft + 1, vocab]; row i scores the position of draft_tokens[i], the last
    row the position after all drafts.
    """
    target_choice = target_logits.argmax(-1).tolist()  # [num_draft + 1]
    num_accepted = 0
    for draft, choice in zip(draft_tokens, target_choice):
        if draft != choice:
            break
        num_accepted += 1
    return Verdict.prefix(num_accepted, target_choice[num_accepted])


def residual_distribution(target_probs: torch.Tensor, draft_probs: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) [vocab]; falls back to p where p and q agree up to rounding."""
    residual = (target_probs - draft_probs).clamp_min(0.0)
    total = residual.sum()
    if total <= 1e-12:
        return target_probs
    return residual / total


def rejected_drafts(target_p: torch.Tensor, draft_p: torch.Tensor, generator: torch.Generator | None) -> list[bool]:
    """Algorithm 1's coin flips: draft i is rejected when u_i >= p_i / q_i for a fresh uniform u_i (written
    without dividing by q), so it survives with probability min(1, p_i / q_i). target_p, draft_p: [num_draft],
    p and q at each drafted token. The exact-enumeration tests (tests/exact.py) replace this function and
    `sample` to follow every branch of a run."""
    uniforms = torch.rand(len(target_p), generator=generator, device=target_p.device)
    return (uniforms * draft_p >= target_p).tolist()


def rejection_sample(
    draft_tokens: list[int],
    draft_probs: torch.Tensor | None,
    target_probs: torch.Tensor,
    generator: torch.Generator | None,
) -> Verdict:
    """Leviathan et al., Algorithm 1: the output is distributed exactly as the target's samples.

    draft_probs: [num_draft, vocab], the distributions the drafts were sampled from.
    target_probs: [num_draft + 1, vocab], warped the same way as draft_probs.
    """
    num_draft = len(draft_tokens)
    if num_draft:
        if draft_probs is None:
            raise ValueError("sampled drafts need the distributions they were drawn from")
        index = torch.tensor(draft_tokens, device=target_probs.device)[:, None]
        target_p = target_probs[:-1].gather(1, index)[:, 0]  # [num_draft]
        draft_p = draft_probs.gather(1, index)[:, 0]  # [num_draft]
        for position, is_rejected in enumerate(rejected_drafts(target_p, draft_p, generator)):
            if is_rejected:
                recovered = residual_distribution(target_probs[position], draft_probs[position])
                return Verdict.prefix(position, sample(recovered, generator))
    return Verdict.prefix(num_draft, sample(target_probs[num_draft], generator))  # the bonus token


def bild_rollback(
    little_tokens: list[int],
    big_logits: torch.Tensor,
    rollback_threshold: float,
    sampling: SamplingConfig,
    generator: torch.Generator | None,
) -> Verdict:
    """BiLD's rollback policy over the little model's tokens.

    big_logits: [num_little + 1, vocab], raw logits of the big model at each little token's
    position and one past the end. A little token y_i whose distance -log p_big(y_i) exceeds the
    threshold is checked against the big model's own choice there (argmax, or a draw at
    temperature > 0); the first one that differs is replaced by the big model's choice and
    everything after it is discarded. Unlike the reference code, every position above the
    threshold is examined, not only the earliest one.
    """
    num_little = len(little_tokens)
    if num_little:
        index = torch.tensor(little_tokens, device=big_logits.device)[:, None]
        log_probs = big_logits[:-1].float().log_softmax(-1)  # [num_little, vocab]
        distance = -log_probs.gather(1, index)[:, 0]  # [num_little]
        for position in (distance > rollback_threshold).nonzero()[:, 0].tolist():
            big_choice = next_token(big_logits[position], sampling, generator)
            if big_choice != little_tokens[position]:
                return Verdict.prefix(position, big_choice, rolled_back=True)
    return Verdict.prefix(num_little, next_token(big_logits[num_little], sampling, generator))
