"""How big a tree of proposals pays on this machine, decided every round from measured costs (`--tree auto`).

A round's value is the tokens it is expected to emit, 1 + the sum over proposed nodes of the chance that the target
accepts each (a node is accepted only with its whole path, so these chances are products along the path). Its cost,
in target steps, is what the little model's passes have cost so far plus one verification pass over the proposed
nodes and the last committed token, T(n + 1) / T(1), from the pair's measured cost profile. With r the tokens per
step achieved so far (at least 1, plain decoding's), a round gains value - r * cost over what r would give. The policy:

- proposes the number of the best-scoring nodes that maximises the gain (none: a plain decoding step);
- grows the tree by one more little-model level (feeding the best nodes of the last level in one pass) only where
  the best gain after it, with the new children's chances estimated from the acceptance measured so far at that
  depth and sibling rank, beats the best gain without it;
- runs the little model at all only while rounds that ran it have paid more, per unit of cost, than rounds that
  proposed lookups alone, trying the other kind now and then since either may change. Where lookups are offered the
  first rounds are theirs and the little model first runs at the first probe: its first pass reads the whole prompt,
  which a short answer never earns back (a translation of 10 tokens ran at 0.87x of plain decoding when the little
  model went first);
- learns the chances from the verdicts: the little model's probability of a node times a correction per depth (its
  calibration), the lookups' hit rate, and the mean chance of each depth and sibling rank.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .match_chances import MatchChances


@dataclass(frozen=True)
class TreeCosts:
    """Costs in target steps: T(k)/T(1) of the target for k = 1..len(verify); c, a little-model step; the little
    model's own T(k)/T(1)."""

    verify: Sequence[float]
    draft: float
    draft_curve: Sequence[float]

    def __post_init__(self) -> None:
        # A measured curve can dip (T(2) < T(1) by noise); a pass over more tokens never costs less than one over fewer.
        object.__setattr__(self, "verify", _monotone(self.verify))
        object.__setattr__(self, "draft_curve", _monotone(self.draft_curve))

    def verification(self, nodes: int) -> float:
        """One target pass over `nodes` proposed tokens and the last committed one."""
        return _curve(self.verify, nodes + 1)

    def level(self, fed: int) -> float:
        """One little-model pass over `fed` tokens."""
        return self.draft * _curve(self.draft_curve, fed)


def _monotone(curve: Sequence[float]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(curve, max))


def _curve(curve: Sequence[float], tokens: int) -> float:
    """T(k)/T(1); beyond the measured k, linear in k (a long pass is compute-bound)."""
    if tokens <= len(curve):
        return curve[tokens - 1]
    return curve[-1] * tokens / len(curve)


def best_count(
    scores: Sequence[float], spent: float, costs: TreeCosts, max_nodes: int, rate: float = 1.0
) -> tuple[int, float]:
    """(n, gain) for proposing the n best of `scores` after `spent` target steps of drafting, n = 0 being a plain step:
    the n that maximises gain = value - rate * cost, where `rate` is the tokens per step that decoding achieves
    anyway (at least plain decoding's 1). Maximising that, not value / cost, is what raises the long-run rate:
    a ratio would propose more to spread a cost already spent."""
    ranked = sorted(scores, reverse=True)[:max_nodes]
    best, value = 0, 1.0
    best_gain = value - rate * (spent + costs.verification(0))
    for n, score in enumerate(ranked, start=1):
        value += score
        gain = value - rate * (spent + costs.verification(n))
        if gain > best_gain:
            best, best_gain = n, gain
    return best, best_gain


class TreePolicy:
    """Decides, each round, whether to run the little model, how deep to grow, and how many nodes to propose."""

    def __init__(
        self,
        costs: TreeCosts,
        width: int,
        max_depth: int,
        max_nodes: int = 15,
        probe_every: int = 16,
        model_first: bool = True,
    ):
        self.costs, self.width, self.max_depth, self.max_nodes = costs, width, max_depth, max_nodes
        self.probe_every, self.model_first = probe_every, model_first
        # depth -> [accepted, sum of probabilities] (prior 1:1); (depth, rank) -> [sum of chances, count] (prior 0.5)
        self._calibration: defaultdict[int, list[float]] = defaultdict(lambda: [1.0, 1.0])
        self._rank_chance: defaultdict[tuple[int, int], list[float]] = defaultdict(lambda: [0.5, 1.0])
        self.lookups = MatchChances()  # looked-up nodes' chances, by the length of the match that found them
        self._rounds = {True: [0.0, 0.0], False: [0.0, 0.0]}  # ran the little model? -> [tokens, cost]
        self._round = 0
        self.used_model = True

    # The chances of acceptance.

    def chance(self, depth: int, probability: float) -> float:
        """The chance that the target accepts a little-model child given its parent: its probability, calibrated."""
        accepted, predicted = self._calibration[depth]
        return min(1.0, probability * accepted / predicted)

    def expected_child(self, depth: int, rank: int) -> float:
        total, count = self._rank_chance[depth, rank]
        return total / count

    # The round's decisions.

    def use_model(self) -> bool:
        """Run the little model this round? Whichever kind of round paid more so far, the other every few rounds;
        with `model_first` the little model runs first, else the first probe brings it in."""
        self._round += 1
        (model_tokens, model_cost), (free_tokens, free_cost) = self._rounds[True], self._rounds[False]
        if model_cost == 0 or free_cost == 0:
            prefer_model = self.model_first and model_cost == 0  # try each kind; lookups first: until the probe
        else:
            prefer_model = model_tokens / model_cost >= free_tokens / free_cost
        probe = self._round % self.probe_every == 0
        self.used_model = prefer_model != probe
        return self.used_model

    def expansion(self, scores: Sequence[float], frontier: Sequence[float], depth: int, spent: float) -> int:
        """How many of the last level's best nodes (chances `frontier`, best first) to feed to the little model for
        children at `depth`; 0: stop growing. `scores`: every candidate's chance so far."""
        if depth > self.max_depth or not frontier:
            return 0
        rate = self.rate()
        best_fed, best_gain = 0, best_count(scores, spent, self.costs, self.max_nodes, rate)[1]
        for fed in range(1, min(self.width, len(frontier)) + 1):
            children = [
                parent * self.expected_child(depth, rank) for parent in frontier[:fed] for rank in range(self.width)
            ]
            cost = spent + self.costs.level(fed)
            gain = best_count([*scores, *children], cost, self.costs, self.max_nodes, rate)[1]
            if gain > best_gain:
                best_fed, best_gain = fed, gain
        return best_fed

    def proposal_size(self, scores: Sequence[float], spent: float) -> int:
        return best_count(scores, spent, self.costs, self.max_nodes, self.rate())[0]

    def rate(self) -> float:
        """Tokens per target step achieved so far by every round, and at least plain decoding's 1."""
        tokens = self._rounds[True][0] + self._rounds[False][0]
        cost = self._rounds[True][1] + self._rounds[False][1]
        return max(1.0, tokens / cost) if cost else 1.0

    # Learning from the verdicts.

    def observe_child(self, depth: int, rank: int, probability: float) -> None:
        """A child the little model gave a node at `depth`, `rank`-th by its probability: what expanding yields."""
        chance = self._rank_chance[depth, rank]
        chance[0] += self.chance(depth, probability)
        chance[1] += 1

    def learn_model_node(self, depth: int, probability: float, accepted: bool) -> None:
        """A proposed little-model node whose parent the target accepted (so it was really tried)."""
        calibration = self._calibration[depth]
        calibration[0] += accepted
        calibration[1] += probability

    def learn_round(self, tokens: int, cost: float) -> None:
        """A round's emitted tokens and its cost in target steps, for the kind of round it was."""
        totals = self._rounds[self.used_model]
        totals[0] += tokens
        totals[1] += cost


@dataclass(frozen=True)
class TreePlan:
    """What --tree auto would do in one round where the little model's children are accepted with given chances."""

    levels: int  # little-model passes
    nodes: int  # proposed
    expected_tokens: float  # per round, the target's own token included
    cost: float  # in target steps
    speedup: float  # expected_tokens / cost: over plain decoding's one token per step


def plan(costs: TreeCosts, rank_chances: Sequence[float], max_depth: int, max_nodes: int = 15) -> TreePlan:
    """The policy's round on this machine's costs when a child of rank r (the little model's r-th choice) is accepted
    with chance rank_chances[r] at every depth, as measured acceptances would have it: the tree it grows level by
    level, the nodes it proposes, and what that is expected to yield."""
    width = len(rank_chances)
    policy = TreePolicy(costs, width, max_depth, max_nodes)
    for depth in range(1, max_depth + 1):
        for rank, chance in enumerate(rank_chances):
            policy._rank_chance[depth, rank] = [chance, 1.0]
    scores = list(rank_chances)  # level 1: the root's children
    frontier, spent, levels = sorted(rank_chances, reverse=True), costs.level(1), 1
    while (fed := policy.expansion(scores, frontier, levels + 1, spent)) > 0:
        children = [parent * chance for parent in frontier[:fed] for chance in rank_chances]
        scores += children
        frontier, spent, levels = sorted(children, reverse=True), spent + costs.level(fed), levels + 1
    nodes = best_count(scores, spent, costs, max_nodes)[0]
    expected = 1.0 + sum(sorted(scores, reverse=True)[:nodes])
    cost = spent + costs.verification(nodes)
    return TreePlan(levels, nodes, expected, cost, expected / cost)
