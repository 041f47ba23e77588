"""Acceptance rules: how many proposed tokens survive the big model's scoring, and which token follows.

Every rule is a pure function of tensors. Each returns a `Verdict`: the proposal's nodes on the
accepted `path` are kept and `next_token` (a correction, a replacement or a bonus token) is
appended after them, so every round of scoring emits at least one token. The verdict also says
what happened (a BiLD rollback or hand-over), so the loop never asks which method it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .proposal import ROOT, Proposal
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
    """Temperature 0: keep drafts while they equal the target's argmax (a chain: `tree_greedy`'s one-child case).

    target_logits: [num_draft + 1, vocab]; row i scores the position of draft_tokens[i], the last
    row the position after all drafts.
    """
    return tree_greedy(Proposal(draft_tokens), target_logits)


def tree_greedy(proposal: Proposal, target_logits: torch.Tensor) -> Verdict:
    """Temperature 0: from the root, follow the child that holds the target's argmax; stop where none does.

    target_logits: [1 + nodes, vocab]; row 0 scores the position after the last committed token, row i + 1 the
    position after node i.
    """
    target_choice = target_logits.argmax(-1).tolist()  # [1 + nodes]
    children = proposal.children_by_node()
    path: list[int] = []
    node = ROOT
    while True:
        choice = target_choice[node + 1]
        match = next((child for child in children[node] if proposal.tokens[child] == choice), None)
        if match is None:
            return Verdict(tuple(path), choice)
        path.append(match)
        node = match


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
    """Leviathan et al., Algorithm 1: the output is distributed exactly as the target's samples
    (a chain: `tree_rejection_sample`'s one-child case).

    draft_probs: [num_draft, vocab], the distributions the drafts were sampled from (None: point masses).
    target_probs: [num_draft + 1, vocab], warped the same way as draft_probs.
    """
    return tree_rejection_sample(Proposal(draft_tokens, probs=draft_probs), target_probs, generator)


def tree_rejection_sample(proposal: Proposal, target_probs: torch.Tensor, generator: torch.Generator | None) -> Verdict:
    """Recursive rejection sampling over a tree (SpecInfer's multi-step speculative sampling): exact for any tree.

    At a node, its children are tried in order: child x, drawn from q_x, is accepted with probability
    min(1, p(x) / q_x(x)); else p becomes norm(max(0, p - q_x)) and the next child is tried. When every child is
    rejected, the next token is drawn from what p has become; an accepted child's own children follow. Each step is
    Leviathan's rule with the distribution the child was really drawn from, given the siblings before it, so the
    output is distributed as the target's own samples for any such q_x: i.i.d. or without-replacement draws, or a
    child chosen without randomness (top-k, lookup), whose q_x is a point mass (`proposal.probs` None: every node).

    target_probs: [1 + nodes, vocab]; row 0 after the last committed token, row i + 1 after node i.
    """
    children = proposal.children_by_node()
    path: list[int] = []
    node = ROOT
    while True:
        probs = target_probs[node + 1]
        for child in children[node]:
            token = proposal.tokens[child]
            draft = proposal.probs[child] if proposal.probs is not None else None
            draft_p = 1.0 if draft is None else float(draft[token])
            if not rejected_drafts(probs[token : token + 1], probs.new_tensor([draft_p]), generator)[0]:
                path.append(child)
                node = child
                break
            probs = residual_distribution(probs, _point_mass(probs, token) if draft is None else draft)
        else:
            return Verdict(tuple(path), sample(probs, generator))


def _point_mass(like: torch.Tensor, token: int) -> torch.Tensor:
    mass = torch.zeros_like(like)
    mass[token] = 1.0
    return mass


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
