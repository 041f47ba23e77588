"""The methods' policies: how many tokens to draft, whether the target verifies them, and which rule decides.

- `ar`: no drafter; the target scores one position and the rule picks its token.
- `speculative`: a little model drafts up to gamma tokens; exact rejection sampling decides
  (Leviathan et al. 2023), greedy matching at temperature 0.
- `bild`: the little model drafts until it is unsure or has written `max_little_steps` tokens
  (fallback); the big model then scores them all at once and the rollback rule decides
  (Kim et al. 2023). The big model also checks the stretch in which the little model ends the
  text; with fallback disabled the little model writes alone. The paper's ablations are the same
  policy with one half switched off: fallback only (the big model writes the token after each
  hand-over and never replaces little tokens) and rollback only (no confidence test: the little
  model writes `max_little_steps` tokens, then the big model checks them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from ..cost.gamma import GammaChooser
from .acceptance import Verdict, bild_rollback, tree_greedy, tree_rejection_sample
from .proposal import Proposal
from .sampling import SamplingConfig, warp_probs
from .stats import GenerationStats


class Method(Protocol):
    @property
    def name(self) -> str:
        """What the statistics call this method."""

    def draft_budget(self, remaining: int, stats: GenerationStats) -> int:
        """How many tokens the drafter may propose when `remaining` may still be emitted."""

    def verifies(self, proposal: Proposal) -> bool:
        """False when the drafter's tokens are final as they are and the target does not score them."""

    def decide(self, proposal: Proposal, target_logits: torch.Tensor, generator) -> Verdict:
        """What survives, from the target's logits [len(proposal) + 1, vocab]."""


@dataclass(frozen=True)
class Speculative:
    gamma: int
    sampling: SamplingConfig
    name: str = "speculative"
    chooser: GammaChooser | None = None  # cost-aware gamma per round instead of a fixed one

    def draft_budget(self, remaining: int, stats: GenerationStats) -> int:
        gamma = self.gamma
        if self.chooser is not None:
            gamma = self.chooser.choose(stats.accepted_by_position, stats.tried_by_position)
        return min(gamma, remaining - 1)  # the target always adds one token of its own

    def verifies(self, proposal: Proposal) -> bool:
        return True

    def decide(self, proposal: Proposal, target_logits: torch.Tensor, generator) -> Verdict:
        if self.sampling.greedy:
            return tree_greedy(proposal, target_logits)
        return tree_rejection_sample(proposal, warp_probs(target_logits, self.sampling), generator)


def autoregressive(sampling: SamplingConfig) -> Speculative:
    """Plain decoding is speculation with nothing proposed: the rule emits the target's own token."""
    return Speculative(gamma=0, sampling=sampling, name="ar")


@dataclass(frozen=True)
class Bild:
    rollback_threshold: float
    max_little_steps: int
    sampling: SamplingConfig
    fallback_enabled: bool = True  # False: the little model writes alone (no threshold, no step limit)
    rollback_enabled: bool = True  # False: fallback only, the big model never replaces a little token
    name: str = "bild"

    def draft_budget(self, remaining: int, stats: GenerationStats) -> int:
        return min(self.max_little_steps, remaining)

    def verifies(self, proposal: Proposal) -> bool:
        # With fallback on, the big model also checks the last stretch once the little model has
        # finished the text, so every little token is checked as the step limit promises; without
        # rollback there is nothing to check there, and no token left to write.
        return self.fallback_enabled and (self.rollback_enabled or not proposal.ended)

    def decide(self, proposal: Proposal, target_logits: torch.Tensor, generator) -> Verdict:
        # The big model scores only after the little one handed over: every verification is a fallback.
        threshold = self.rollback_threshold if self.rollback_enabled else math.inf
        verdict = bild_rollback(proposal.tokens, target_logits, threshold, self.sampling, generator)
        return replace(verdict, fell_back=True)
