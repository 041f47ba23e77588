"""Counters and timings of one generation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runtime.runner import Timings
    from .acceptance import Verdict
    from .proposal import Proposal


@dataclass
class GenerationStats:
    method: str = ""
    prompt_tokens: int = 0
    new_tokens: int = 0
    target_calls: int = 0  # big-model forward passes (prefill included)
    draft_calls: int = 0  # little-model forward passes
    proposed: int = 0  # draft tokens the target was asked to score
    accepted: int = 0  # of those, kept
    fallbacks: int = 0  # BiLD: hand-overs from the little to the big model
    rollbacks: int = 0  # BiLD: little tokens replaced by the big model
    unverified: int = 0  # BiLD: little tokens emitted without the big model (end of text reached)
    accepted_lengths: Counter = field(default_factory=Counter)  # accepted drafts per target call
    accepted_by_position: Counter = field(default_factory=Counter)  # draft position (depth - 1) -> times accepted
    proposed_by_position: Counter = field(default_factory=Counter)  # draft position (depth - 1) -> times proposed
    # Draft position -> times the target judged it: proposed with every position before it accepted. So
    # accepted / tried is the acceptance at a position given the one before (what --gamma auto's chooser needs);
    # accepted / proposed is the share of rounds that got that far.
    tried_by_position: Counter = field(default_factory=Counter)
    # Trees: (depth, rank among its siblings) of each accepted node; rank 0 is the drafter's first choice.
    accepted_by_depth_rank: Counter = field(default_factory=Counter)
    wall_time_s: float = 0.0
    draft_time_s: float = 0.0
    target_time_s: float = 0.0
    target_call_log: list = field(default_factory=list, repr=False)  # (tokens fed, seconds) per forward
    draft_call_log: list = field(default_factory=list, repr=False)

    def record_verdict(self, proposal: Proposal, verdict: Verdict) -> None:
        """One target pass over a proposal and what it decided. A tree counts as proposed at a depth when it has a
        node there, and as accepted there when the accepted path reaches it, as a chain does."""
        depth = max(proposal.depths(), default=0)
        self.record_round(len(proposal), verdict.num_accepted, depth)
        children = proposal.children_by_node()
        parent = -1
        for level, node in enumerate(verdict.path, start=1):
            self.accepted_by_depth_rank[level, children[parent].index(node)] += 1
            parent = node
        self.rollbacks += verdict.rolled_back
        self.fallbacks += verdict.fell_back

    def record_timings(self, target: Timings, draft: Timings) -> None:
        self.target_calls, self.target_time_s, self.target_call_log = target.calls, target.seconds, target.call_log
        self.draft_calls, self.draft_time_s, self.draft_call_log = draft.calls, draft.seconds, draft.call_log

    def record_round(self, num_proposed: int, num_accepted: int, depth: int | None = None) -> None:
        """`depth`: how deep the proposal reaches (a chain: its length, the default)."""
        self.proposed += num_proposed
        self.accepted += num_accepted
        self.accepted_lengths[num_accepted] += 1
        reach = num_proposed if depth is None else depth
        for position in range(reach):
            self.proposed_by_position[position] += 1
            if position < num_accepted:
                self.accepted_by_position[position] += 1
        self.tried_by_position.update(range(min(reach, num_accepted + 1)))

    @property
    def discarded(self) -> int:
        return self.proposed - self.accepted

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None

    @property
    def tokens_per_target_call(self) -> float | None:
        return self.new_tokens / self.target_calls if self.target_calls else None

    @property
    def other_time_s(self) -> float:
        return max(0.0, self.wall_time_s - self.draft_time_s - self.target_time_s)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_time_s if self.wall_time_s > 0 else 0.0

    def to_dict(self) -> dict:
        positions = sorted(self.proposed_by_position)
        return {
            "method": self.method,
            "new_tokens": self.new_tokens,
            "prompt_tokens": self.prompt_tokens,
            "target_calls": self.target_calls,
            "draft_calls": self.draft_calls,
            "proposed": self.proposed,
            "accepted": self.accepted,
            "discarded": self.discarded,
            "acceptance_rate": self.acceptance_rate,
            "acceptance_by_position": [self.accepted_by_position[p] / self.proposed_by_position[p] for p in positions],
            "accepted_by_depth_rank": [[d, r, n] for (d, r), n in sorted(self.accepted_by_depth_rank.items())],
            "tokens_per_target_call": self.tokens_per_target_call,
            "accepted_length_histogram": [
                self.accepted_lengths[n] for n in range(max(self.accepted_lengths, default=-1) + 1)
            ],
            "fallbacks": self.fallbacks,
            "rollbacks": self.rollbacks,
            "unverified": self.unverified,
            "wall_time_s": self.wall_time_s,
            "draft_time_s": self.draft_time_s,
            "target_time_s": self.target_time_s,
            "other_time_s": self.other_time_s,
            "tokens_per_s": self.tokens_per_s,
        }
