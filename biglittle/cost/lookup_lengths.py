"""How many looked-up tokens to propose each round (`--drafter ngram --gamma auto`), by the length of the match.

Prompt lookup finds a continuation after the text's last n tokens (n = 3, 2 or 1). After a 3-token match it is
usually right for many tokens (code repeating its own names, a summary copying its article); after a 1-token match
it is often wrong, and in a translation almost always: on this project's CPU each proposed token costs a share of
a target step (T(k) grows with k), so proposing 4 tokens whatever the match ran translations at 0.94x of plain
decoding (median) while code gained most from long proposals after long matches (replayed over the big model's
greedy answers: docs/drafts.md).

Per match length, the chance that a proposed token is accepted given the one before is learned from the verdicts
(match_chances.py); each round proposes the number of tokens that maximises the
expected gain at the rate achieved so far (tree_policy.best_count: a chain is a tree of one branch), none where no
count beats a plain step.
"""

from __future__ import annotations

import itertools
import operator

from .match_chances import MatchChances
from .tree_policy import TreeCosts, best_count


class LookupLengths:
    """The proposal length for each round's match, learned from the generation's verdicts."""

    def __init__(self, costs: TreeCosts, max_tokens: int):
        self.costs, self.max_tokens = costs, max_tokens
        self.chances = MatchChances()
        self._tokens, self._steps = 0, 0.0

    def length(self, match: int, available: int) -> int:
        """How many of `available` looked-up tokens to propose after a `match`-token match (0: a plain step)."""
        if match == 0 or available == 0:
            return 0
        chances = itertools.accumulate([self.chances.chance(match)] * min(available, self.max_tokens), operator.mul)
        return best_count(list(chances), 0.0, self.costs, self.max_tokens, self.rate())[0]

    def learn(self, match: int, proposed: int, accepted: int) -> None:
        """A round's verdict: `accepted` of the `proposed` tokens looked up after a `match`-token match."""
        if proposed:
            self.chances.learn(match, accepted, accepted + (accepted < proposed))  # the first rejected was tried too
        self._tokens += accepted + 1
        self._steps += self.costs.verification(proposed)

    def rate(self) -> float:
        """Tokens per target step so far, and at least plain decoding's 1."""
        return max(1.0, self._tokens / self._steps) if self._steps else 1.0
