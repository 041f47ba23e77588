"""The decoding loop shared by every method: propose, score, decide, commit.

- `ar`: no drafter; the target scores one position and the rule picks its token.
- `speculative`: a little model drafts up to gamma tokens; exact rejection sampling decides
  (Leviathan et al. 2023), greedy matching at temperature 0.
- `bild`: the little model drafts until it is unsure or has written `max_little_steps` tokens
  (fallback); the big model then scores them all at once and the rollback rule decides
  (Kim et al. 2023). The big model also checks the stretch in which the little model ends the
  text; with fallback disabled the little model writes alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .acceptance import Verdict, bild_rollback, greedy_match, rejection_sample
from .drafters import Proposal
from .lm import ModelRunner
from .sampling import SamplingConfig, warp_probs
from .stats import GenerationStats
from .tuning import GammaChooser

# Given the new tokens so far, how many to keep if a stop string has been written, else None.
StopCheck = Callable[[list[int]], "int | None"]


class Method(Protocol):
    name: str

    def draft_budget(self, remaining: int, stats: GenerationStats) -> int:
        """How many tokens the drafter may propose when `remaining` may still be emitted."""

    @property
    def verifies(self) -> bool:
        """False when the drafter writes alone and the target never scores its tokens."""

    def decide(self, proposal: Proposal, target_logits: torch.Tensor, generator) -> tuple[Verdict, bool]:
        """(verdict, rolled_back) from the target's logits [len(proposal) + 1, vocab]."""


@dataclass(frozen=True)
class Speculative:
    gamma: int
    sampling: SamplingConfig
    name: str = "speculative"
    chooser: GammaChooser | None = None  # cost-aware gamma per round instead of a fixed one

    def draft_budget(self, remaining: int, stats: GenerationStats) -> int:
        gamma = self.gamma
        if self.chooser is not None:
            gamma = self.chooser.choose(stats.accepted_by_position, stats.proposed_by_position)
        return min(gamma, remaining - 1)  # the target always adds one token of its own

    verifies = True

    def decide(self, proposal: Proposal, target_logits: torch.Tensor, generator) -> tuple[Verdict, bool]:
        if self.sampling.greedy:
            return greedy_match(proposal.tokens, target_logits), False
        target_probs = warp_probs(target_logits, self.sampling)
        return rejection_sample(proposal.tokens, proposal.probs, target_probs, generator), False


def autoregressive(sampling: SamplingConfig) -> Speculative:
    """Plain decoding is speculation with nothing proposed: the rule emits the target's own token."""
    return Speculative(gamma=0, sampling=sampling, name="ar")


@dataclass(frozen=True)
class Bild:
    rollback_threshold: float
    max_little_steps: int
    sampling: SamplingConfig
    fallback_enabled: bool = True  # False: the little model writes alone (no threshold, no step limit)
    name: str = "bild"

    def draft_budget(self, remaining: int, stats: GenerationStats) -> int:
        return min(self.max_little_steps, remaining)

    @property
    def verifies(self) -> bool:
        # With fallback on, the big model also checks the last stretch once the little model has
        # finished the text, so every little token is checked as the step limit promises.
        return self.fallback_enabled

    def decide(self, proposal: Proposal, target_logits: torch.Tensor, generator) -> tuple[Verdict, bool]:
        return bild_rollback(proposal.tokens, target_logits, self.rollback_threshold, self.sampling, generator)


def decode(
    prompt_ids: list[int],
    target: ModelRunner,
    drafter,
    method: Method,
    *,
    max_new_tokens: int,
    max_length: int,
    eos_token_ids: set[int],
    generator: torch.Generator | None,
    stop_check: StopCheck | None = None,
    on_tokens: Callable[[int], None] | None = None,
) -> tuple[list[int], GenerationStats]:
    """New token ids and statistics; `max_length` bounds prompt plus output (the model's context).

    `on_tokens(n)` is told after every round that n tokens have been written so far (progress).
    """
    stats = GenerationStats(method=method.name, prompt_tokens=len(prompt_ids))
    started = time.perf_counter()
    tokens = target.start(prompt_ids)
    drafter.start(prompt_ids)
    first_new = len(tokens)
    while True:
        remaining = min(max_new_tokens - (len(tokens) - first_new), max_length - len(tokens))
        if remaining <= 0:
            break
        proposal = drafter.propose(tokens, method.draft_budget(remaining, stats), generator)
        if not method.verifies:
            new_tokens = proposal.tokens
            stats.unverified += len(new_tokens)
        else:
            target_logits = target.forward(tokens + proposal.tokens, len(proposal.tokens) + 1)
            verdict, rolled_back = method.decide(proposal, target_logits, generator)
            stats.record_round(len(proposal.tokens), verdict.num_accepted)
            stats.rollbacks += rolled_back
            stats.fallbacks += method.name == "bild"
            new_tokens = proposal.tokens[: verdict.num_accepted] + [verdict.next_token]
        new_tokens = new_tokens[: min(remaining, _first_eos_end(new_tokens, eos_token_ids))]
        tokens.extend(new_tokens)
        target.crop(len(tokens) - 1)
        drafter.crop(len(tokens) - 1)
        if on_tokens is not None:
            on_tokens(len(tokens) - first_new)
        if new_tokens[-1] in eos_token_ids:
            break
        if stop_check is not None:
            keep = stop_check(tokens[first_new:])
            if keep is not None:
                del tokens[first_new + keep :]
                break
    output = tokens[first_new:]
    stats.new_tokens = len(output)
    stats.wall_time_s = time.perf_counter() - started
    stats.target_calls, stats.target_time_s, stats.target_call_log = target.calls, target.seconds, target.call_log
    if drafter.runner is not None:
        runner = drafter.runner
        stats.draft_calls, stats.draft_time_s, stats.draft_call_log = runner.calls, runner.seconds, runner.call_log
    return output, stats


def _first_eos_end(tokens: list[int], eos_token_ids: set[int]) -> int:
    """Length of the prefix of `tokens` up to and including the first end-of-sequence token."""
    for index, token in enumerate(tokens):
        if token in eos_token_ids:
            return index + 1
    return len(tokens)
