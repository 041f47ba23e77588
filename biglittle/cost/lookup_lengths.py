"""How many looked-up tokens to propose each round (`--drafter ngram --gamma auto`), by the length of the match.

Prompt lookup finds a continuation after the text's last n tokens (n = 3, 2 or 1). After a 3-token match it is
usually right for many tokens (code repeating its own names, a summary copying its article); after a 1-token match
it is often wrong, and in a translation almost always: on this project's CPU each proposed token costs a share of
a target step (T(k) grows with k), so proposing 4 tokens whatever the match ran translations at 0.94x of plain
decoding (median) while code gained most from long proposals after long matches (replayed over the big model's
greedy answers: docs/drafts.md).

Per match length, the chance that a proposed token is accepted given the one before is learned from the verdicts,
from a prior of PRIOR_TRIES tries at PRIOR_CHANCE; each round proposes the number of tokens that maximises the
expected gain at the rate achieved so far (tree_policy.best_count: a chain is a tree of one branch), none where no
count beats a plain step.
"""

from __future__ import annotations

import itertools
import operator
from collections import defaultdict

from .tree_policy import TreeCosts, best_count

PRIOR_CHANCE = {1: 0.3, 2: 0.5, 3: 0.8}  # by match length; longer matches: the last
PRIOR_TRIES = 2.0


class LookupLengths:
    """The proposal length for each round's match, learned from the generation's verdicts."""

    def __init__(self, costs: TreeCosts, max_tokens: int):
        self.costs, self.max_tokens = costs, max_tokens
        self._counts: defaultdict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])  # n -> [accepted, tried]
        self._tokens, self._steps = 0, 0.0

    def chance(self, match: int) -> float:
        """The chance that a token looked up after a `match`-token match is accepted, its predecessor having been."""
        accepted, tried = self._counts[match]
        prior = PRIOR_CHANCE[min(match, max(PRIOR_CHANCE))]
        return (accepted + prior * PRIOR_TRIES) / (tried + PRIOR_TRIES)

    def length(self, match: int, available: int) -> int:
        """How many of `available` looked-up tokens to propose after a `match`-token match (0: a plain step)."""
        if match == 0 or available == 0:
            return 0
        chances = itertools.accumulate([self.chance(match)] * min(available, self.max_tokens), operator.mul)
        return best_count(list(chances), 0.0, self.costs, self.max_tokens, self.rate())[0]

    def learn(self, match: int, proposed: int, accepted: int) -> None:
        """A round's verdict: `accepted` of the `proposed` tokens looked up after a `match`-token match."""
        if proposed:
            counts = self._counts[match]
            counts[0] += accepted
            counts[1] += accepted + (accepted < proposed)  # the first rejected token was tried too
        self._tokens += accepted + 1
        self._steps += self.costs.verification(proposed)

    def rate(self) -> float:
        """Tokens per target step so far, and at least plain decoding's 1."""
        return max(1.0, self._tokens / self._steps) if self._steps else 1.0
