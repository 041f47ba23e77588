"""Trees of proposed tokens, fed by the little model (one pass per level, every sibling at once) and by lookups.

A round's tree is grown as candidates, each with the drafter's estimate of the chance that the target accepts
it (`score`: the product of the estimates along its path); the round then proposes the best-scoring nodes,
which are an ancestor-closed set because a child never scores above its parent. Every child is chosen without
randomness (the little model's top choices, the text's own continuations), so each node's draft distribution is
a point mass and the recursive rejection rule (acceptance.tree_rejection_sample) is exact at any temperature.

- The little model: level 1 is its pass over the committed text; each later level feeds the best nodes of the
  level before in one pass (tree attention) and takes each one's top `width` tokens as children.
- Lookups: the continuations that followed earlier occurrences of the text's last n tokens (prompt lookup, with
  several occurrences as several branches), scored by how often lookups after an n-token match have been right so
  far (cost/match_chances.py: a 3-token match is far more often right than a 1-token one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..cost.match_chances import MatchChances
from ..cost.tree_policy import TreePolicy
from ..runtime.runner import Runner, Timings
from .lookup_index import LookupIndex
from .proposal import ROOT, Proposal

MODEL, LOOKUP = "model", "lookup"


@dataclass(frozen=True)
class TreeShape:
    """How a round's tree may grow: at most `nodes` proposed, `depth` levels, `width` children per expanded node
    and nodes expanded per level."""

    nodes: int
    depth: int = 4
    width: int = 4


@dataclass
class Candidates:
    """The nodes grown in one round, in the order grown (parents first)."""

    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # estimated chance that the target accepts the node
    sources: list[str] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)  # the little model's for its node (lookups: 0)
    matches: list[int] = field(default_factory=list)  # the length of the match that looked the node up (model: 0)

    def add(
        self, token: int, parent: int, estimate: float, source: str, probability: float = 0.0, match: int = 0
    ) -> int:
        """The node for `token` under `parent`: a new one, or the existing sibling holding the same token (which
        keeps the better score, and the little model's probability where it has one)."""
        for node in self.children(parent):
            if self.tokens[node] == token:
                self.scores[node] = max(self.scores[node], self._score(parent) * estimate)
                if source == MODEL:
                    self.sources[node], self.probabilities[node] = MODEL, probability
                return node
        self.tokens.append(token)
        self.parents.append(parent)
        self.scores.append(self._score(parent) * estimate)
        self.sources.append(source)
        self.depths.append(1 if parent == ROOT else self.depths[parent] + 1)
        self.probabilities.append(probability)
        self.matches.append(match)
        return len(self.tokens) - 1

    def children(self, parent: int) -> list[int]:
        return [node for node, of in enumerate(self.parents) if of == parent]

    def _score(self, node: int) -> float:
        return 1.0 if node == ROOT else self.scores[node]

    def best(self, count: int) -> list[int]:
        """The `count` best-scoring nodes, parents before children: ties go to the shallower, then the earlier
        node, so a parent (never below its child's score) is always chosen before the child."""
        ranked = sorted(range(len(self.tokens)), key=lambda node: (-self.scores[node], self.depths[node], node))
        return sorted(ranked[:count], key=lambda node: (self.depths[node], -self.scores[node], node))

    def proposal(self, chosen: list[int]) -> Proposal:
        """The chosen nodes as a proposal: siblings best first, each node's parent re-indexed."""
        index = {node: position for position, node in enumerate(chosen)}
        parents = [ROOT if self.parents[node] == ROOT else index[self.parents[node]] for node in chosen]
        return Proposal([self.tokens[node] for node in chosen], parents=parents)


class TreeDrafter:
    """Proposes a tree each round from the little model (if `runner`), lookups (if `lookup`), or both.

    With a `policy` (cost/tree_policy.py, `--tree auto`) the policy decides each round whether to run the little
    model, how deep to grow and how many nodes to propose, within `shape`; without one, the shape is fixed: `width`
    nodes expanded per level, `depth` levels, the `nodes` best proposed.
    """

    def __init__(
        self,
        runner: Runner | None,
        shape: TreeShape,
        eos_token_ids: set[int],
        *,
        lookup: bool = False,
        max_ngram: int = 3,
        lookup_branches: int = 2,
        policy: TreePolicy | None = None,
    ):
        self.runner, self.shape, self.eos_token_ids, self.policy = runner, shape, eos_token_ids, policy
        self.index = LookupIndex(max_ngram) if lookup else None
        self.lookup_branches = lookup_branches
        self.lookup_chances = policy.lookups if policy is not None else MatchChances()
        self._round: _Round | None = None

    def start(self, prompt_ids: list[int]) -> None:
        if self.runner is not None:
            self.runner.start(prompt_ids)
        if self.index is not None:
            self.index = LookupIndex(self.index.max_ngram)

    @property
    def timings(self) -> Timings:
        return self.runner.timings if self.runner is not None else Timings()

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        self._round = None
        if max_tokens <= 0:
            return Proposal([])
        candidates = Candidates()
        depth = min(self.shape.depth, max_tokens)
        if self.index is not None:
            self.index.extend(tokens)
            for match, continuation in self.index.continuations(depth, self.lookup_branches):
                self._add_lookup(candidates, continuation, match)
        spent = 0.0
        if self.runner is not None and (self.policy is None or self.policy.use_model()):
            spent = self._grow_with_model(tokens, candidates, depth)
        count = self.shape.nodes if self.policy is None else self.policy.proposal_size(candidates.scores, spent)
        chosen = candidates.best(min(count, self.shape.nodes))
        self._round = _Round(candidates, chosen, spent)
        return candidates.proposal(chosen)

    def _add_lookup(self, candidates: Candidates, continuation: list[int], match: int) -> None:
        chance = self.lookup_chances.chance(match)
        parent = ROOT
        for token in continuation:
            parent = candidates.add(token, parent, chance, LOOKUP, match=match)
            if token in self.eos_token_ids:
                break

    def _grow_with_model(self, tokens: list[int], candidates: Candidates, depth: int) -> float:
        """Level by level: the best nodes of the level before fed in one pass, each given its top `width` tokens as
        children. Returns the passes' cost in target steps (policy only)."""
        assert self.runner is not None
        frontier, spent = [ROOT], 0.0
        for level in range(1, depth + 1):
            feed = [node for node in frontier if node != ROOT]
            fed = len(feed) or len(tokens) - self.runner.cache_len
            logits = self.runner.forward_tree(tokens, candidates.tokens, candidates.parents, feed)
            spent += self.policy.costs.level(fed) if self.policy is not None else 0.0
            top = logits.float().softmax(-1).topk(self.shape.width, dim=-1)  # [len(frontier), width]
            children = []
            for row, parent in enumerate(frontier):
                for rank, (prob, token) in enumerate(zip(top.values[row].tolist(), top.indices[row].tolist())):
                    children.append(candidates.add(token, parent, self._chance(level, rank, prob), MODEL, prob))
            expandable = sorted(
                (node for node in dict.fromkeys(children) if candidates.tokens[node] not in self.eos_token_ids),
                key=lambda node: -candidates.scores[node],
            )
            frontier = expandable[: self._expansion(candidates, expandable, level + 1, depth, spent)]
            if not frontier:
                break
        return spent

    def _chance(self, depth: int, rank: int, probability: float) -> float:
        if self.policy is None:
            return probability
        self.policy.observe_child(depth, rank, probability)
        return self.policy.chance(depth, probability)

    def _expansion(self, candidates: Candidates, expandable: list[int], depth: int, limit: int, spent: float) -> int:
        """How many of the best expandable nodes to feed for children at `depth`."""
        if depth > limit:
            return 0
        if self.policy is None:
            return self.shape.width
        frontier = [candidates.scores[node] for node in expandable]
        return self.policy.expansion(candidates.scores, frontier, depth, spent)

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        if self._round is None:
            return
        grown = [self._round.chosen[node] for node in path]
        self._learn(self._round, grown)
        if self.runner is not None:
            self.runner.retain(start, grown)

    def _learn(self, round_: _Round, path: list[int]) -> None:
        """What the verdict says of the proposed nodes the target really tried (their parent accepted)."""
        candidates, reached = round_.candidates, {ROOT, *path}
        for node in round_.chosen:
            if candidates.parents[node] not in reached:
                continue
            accepted = node in reached
            if candidates.sources[node] == LOOKUP:
                self.lookup_chances.learn(candidates.matches[node], accepted, 1)
            elif self.policy is not None:
                self.policy.learn_model_node(candidates.depths[node], candidates.probabilities[node], accepted)
        if self.policy is not None:
            self.policy.learn_round(len(path) + 1, round_.spent + self.policy.costs.verification(len(round_.chosen)))

    def crop(self, length: int) -> None:
        if self.runner is not None:
            self.runner.crop(length)


@dataclass
class _Round:
    candidates: Candidates
    chosen: list[int]  # proposal node -> candidate node (what the little model's cache calls it)
    spent: float  # the little model's passes, in target steps (policy only)
