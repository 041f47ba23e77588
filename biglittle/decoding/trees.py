"""Trees of proposed tokens, fed by the little model (one pass per level, every sibling at once) and by lookups.

A round's tree is grown as candidates, each with the drafter's estimate of the chance that the target accepts
it (`score`: the product of the estimates along its path); the round then proposes the best-scoring nodes,
which are an ancestor-closed set because a child never scores above its parent. Every child is chosen without
randomness (the little model's top choices, the text's own continuations), so each node's draft distribution is
a point mass and the recursive rejection rule (acceptance.tree_rejection_sample) is exact at any temperature.

- The little model: level 1 is its pass over the committed text; each later level feeds the best nodes of the
  level before in one pass (tree attention) and takes each one's top `width` tokens as children.
- Lookups: the continuations that followed earlier occurrences of the text's last n tokens (prompt lookup, with
  several occurrences as several branches), scored by how often lookups have been right so far.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from ..runtime.runner import Runner, Timings
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

    def add(self, token: int, parent: int, estimate: float, source: str) -> int:
        """The node for `token` under `parent`: a new one, or the existing sibling holding the same token."""
        for node in self.children(parent):
            if self.tokens[node] == token:
                self.scores[node] = max(self.scores[node], self._score(parent) * estimate)
                return node
        self.tokens.append(token)
        self.parents.append(parent)
        self.scores.append(self._score(parent) * estimate)
        self.sources.append(source)
        self.depths.append(1 if parent == ROOT else self.depths[parent] + 1)
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


class LookupIndex:
    """Where each n-gram (n <= max_ngram) of a growing text ends, to find the text's continuations in O(1)."""

    def __init__(self, max_ngram: int):
        self.max_ngram = max_ngram
        self.ends: dict[tuple[int, ...], list[int]] = defaultdict(list)
        self.text: list[int] = []

    def extend(self, text: list[int]) -> None:
        """Index `text`, which extends (or, after a stop-string cut, shortens) what was indexed before."""
        if text[: len(self.text)] != self.text:
            self.__init__(self.max_ngram)  # type: ignore[misc]
        for end in range(len(self.text) + 1, len(text) + 1):
            for n in range(1, min(self.max_ngram, end) + 1):
                self.ends[tuple(text[end - n : end])].append(end)
        self.text = list(text)

    def continuations(self, max_length: int, max_branches: int) -> list[list[int]]:
        """Distinct continuations of the text's last n tokens (longest n first, then the latest occurrence first)."""
        found: list[list[int]] = []
        last = len(self.text)
        for n in range(min(self.max_ngram, last - 1), 0, -1):
            for end in reversed(self.ends.get(tuple(self.text[last - n :]), [])):
                continuation = self.text[end : end + max_length]
                if end < last and continuation and not any(c[: len(continuation)] == continuation for c in found):
                    found.append(continuation)
                    if len(found) == max_branches:
                        return found
        return found


class TreeDrafter:
    """Proposes a tree each round from the little model (if `runner`), lookups (if `lookup`), or both."""

    def __init__(
        self,
        runner: Runner | None,
        shape: TreeShape,
        eos_token_ids: set[int],
        *,
        lookup: bool = False,
        max_ngram: int = 3,
        lookup_branches: int = 2,
    ):
        self.runner, self.shape, self.eos_token_ids = runner, shape, eos_token_ids
        self.index = LookupIndex(max_ngram) if lookup else None
        self.lookup_branches = lookup_branches
        self.lookup_hits, self.lookup_tries = 1.0, 2.0  # a prior of one hit in two
        self._grown: list[int] = []  # proposal node -> candidate node (what the little model's cache calls it)
        self._last: Candidates | None = None

    def start(self, prompt_ids: list[int]) -> None:
        if self.runner is not None:
            self.runner.start(prompt_ids)
        if self.index is not None:
            self.index = LookupIndex(self.index.max_ngram)

    @property
    def timings(self) -> Timings:
        return self.runner.timings if self.runner is not None else Timings()

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        if max_tokens <= 0:
            self._grown, self._last = [], None
            return Proposal([])
        candidates = Candidates()
        depth = min(self.shape.depth, max_tokens)
        if self.index is not None:
            self.index.extend(tokens)
            for continuation in self.index.continuations(depth, self.lookup_branches):
                self._add_lookup(candidates, continuation)
        if self.runner is not None:
            self._grow_with_model(tokens, candidates, depth)
        chosen = candidates.best(self.shape.nodes)
        self._grown, self._last = chosen, candidates
        return candidates.proposal(chosen)

    def _add_lookup(self, candidates: Candidates, continuation: list[int]) -> None:
        parent = ROOT
        for token in continuation:
            parent = candidates.add(token, parent, self.lookup_hits / self.lookup_tries, LOOKUP)
            if token in self.eos_token_ids:
                break

    def _grow_with_model(self, tokens: list[int], candidates: Candidates, depth: int) -> None:
        """Level by level: the level's best nodes fed in one pass, each given its top `width` tokens as children."""
        assert self.runner is not None
        frontier = [ROOT]
        for level in range(1, depth + 1):
            feed = [node for node in frontier if node != ROOT]
            logits = self.runner.forward_tree(tokens, candidates.tokens, candidates.parents, feed)
            probs = logits.float().softmax(-1)  # [len(frontier), vocab]
            top = probs.topk(self.shape.width, dim=-1)
            children = []
            for row, parent in enumerate(frontier):
                for prob, token in zip(top.values[row].tolist(), top.indices[row].tolist()):
                    children.append(candidates.add(token, parent, prob, MODEL))
            if level == depth:
                break
            expandable = [node for node in dict.fromkeys(children) if candidates.tokens[node] not in self.eos_token_ids]
            frontier = sorted(expandable, key=lambda node: -candidates.scores[node])[: self.shape.width]
            if not frontier:
                break

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        grown = [self._grown[node] for node in path]
        if self._last is not None:
            self._learn(self._last, grown)
        if self.runner is not None:
            self.runner.retain(start, grown)

    def _learn(self, candidates: Candidates, path: list[int]) -> None:
        """How often the lookups reached by the accepted path (candidate nodes) were right."""
        reached = {ROOT, *path}
        for node in self._grown:
            if candidates.sources[node] == LOOKUP and candidates.parents[node] in reached:
                self.lookup_tries += 1
                self.lookup_hits += node in reached

    def crop(self, length: int) -> None:
        if self.runner is not None:
            self.runner.crop(length)
