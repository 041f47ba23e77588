"""The cost-aware choice of gamma: before each round, the number of drafts that maximises expected
tokens per unit of time, from the running acceptance by draft position and the measured costs;
plain decoding (gamma = 0) when nothing wins, probing now and then whether that changed."""

from __future__ import annotations

from .profile import CostProfile


class GammaChooser:
    """Picks gamma for the next round; gamma = 0 is a plain decoding step.

    Acceptance at draft position i (given that position i - 1 was accepted) is estimated from the
    generation's counts with a Beta prior of `prior_weight` pseudo-rounds at `prior_alpha`. The
    expected number of tokens of a round with gamma drafts is 1 + sum over i <= gamma of the
    product of the first i acceptance rates; its cost is gamma * c + T(gamma + 1) / T(1).
    """

    def __init__(
        self,
        profile: CostProfile,
        max_gamma: int = 8,
        prior_alpha: float = 0.6,
        prior_weight: float = 2.0,
        probe_every: int = 16,
        probe_margin: float = 0.9,
    ):
        self.profile = profile
        self.max_gamma = min(max_gamma, profile.max_proposals)
        self.prior_alpha, self.prior_weight = prior_alpha, prior_weight
        self.probe_every = probe_every
        # A probe makes the little model catch up on every token it has not seen (a prefill), so it
        # is only worth it where speculation is expected to come within this share of plain decoding.
        self.probe_margin = probe_margin
        self._plain_rounds = 0

    def acceptance(self, position: int, accepted_by_position, proposed_by_position) -> float:
        accepted = accepted_by_position.get(position, 0) + self.prior_alpha * self.prior_weight
        return accepted / (proposed_by_position.get(position, 0) + self.prior_weight)

    def rates(self, accepted_by_position, proposed_by_position) -> list[float]:
        """Expected tokens per unit of target-step time for gamma = 0..max_gamma."""
        rates, expected_tokens, survive = [1.0], 1.0, 1.0
        for gamma in range(1, self.max_gamma + 1):
            survive *= self.acceptance(gamma - 1, accepted_by_position, proposed_by_position)
            expected_tokens += survive
            cost = gamma * self.profile.draft_cost + self.profile.verify_cost[gamma]
            rates.append(expected_tokens / cost)
        return rates

    def choose(self, accepted_by_position, proposed_by_position) -> int:
        rates = self.rates(accepted_by_position, proposed_by_position)
        gamma = max(range(len(rates)), key=rates.__getitem__)
        if gamma > 0:
            self._plain_rounds = 0
            return gamma
        self._plain_rounds += 1
        if self._plain_rounds % self.probe_every == 0 and max(rates[1:]) >= self.probe_margin:
            return 1  # a probe: acceptance may have risen since speculation stopped paying
        return 0
