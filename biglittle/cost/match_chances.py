"""How often a looked-up token is right, by the length of the match that found it.

After a 3-token match prompt lookup is usually right for many tokens (code repeating its own names, a summary
copying its article); after a 1-token match it is often wrong, and in a translation almost always (replayed over
the big model's greedy answers: docs/drafts.md). Chains (lookup_lengths.py) and trees (tree_policy.py) both size
their lookups by these chances.
"""

from __future__ import annotations

from collections import defaultdict

PRIOR_CHANCE = {1: 0.3, 2: 0.5, 3: 0.8}  # by match length; longer matches: the last
PRIOR_TRIES = 2.0


class MatchChances:
    """Per match length, the chance that a looked-up token is accepted given that its predecessor was: learned from
    the verdicts, from a prior of PRIOR_TRIES tries at PRIOR_CHANCE. Serves chains (LookupLengths) and trees."""

    def __init__(self) -> None:
        self._counts: defaultdict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])  # n -> [accepted, tried]

    def chance(self, match: int) -> float:
        accepted, tried = self._counts[match]
        prior = PRIOR_CHANCE[min(match, max(PRIOR_CHANCE))]
        return (accepted + prior * PRIOR_TRIES) / (tried + PRIOR_TRIES)

    def learn(self, match: int, accepted: int, tried: int) -> None:
        """`accepted` of `tried` tokens looked up after a `match`-token match, each tried after its predecessor."""
        counts = self._counts[match]
        counts[0] += accepted
        counts[1] += tried
