"""What a drafter proposes: a tree of tokens for the target to score in one pass.

A chain of drafted tokens is the tree in which every node has one child, so one type serves plain
speculation, trees of candidates, lookups and BiLD's little-model stretches. Nodes are listed
parents first; node i's parent is `parents[i]`, or ROOT when it follows the last committed token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROOT = -1  # the parent of a first-level node: the last committed token


@dataclass
class Proposal:
    tokens: list[int]  # one token per node
    parents: list[int] | None = None  # None: a chain, node i follows node i - 1
    probs: torch.Tensor | None = None  # [nodes, vocab]: what each node was drawn from (sampling only)
    ended: bool = False  # a chain whose last token ends the sequence

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def is_chain(self) -> bool:
        return self.parents is None or all(parent == node - 1 for node, parent in enumerate(self.parents))

    def parent(self, node: int) -> int:
        return node - 1 if self.parents is None else self.parents[node]

    def children(self, node: int) -> list[int]:
        """The nodes whose parent is `node` (ROOT: the first level), in proposal order."""
        return self.children_by_node()[node]

    def children_by_node(self) -> dict[int, list[int]]:
        """node (ROOT included) -> its children in proposal order; a leaf maps to []."""
        children: dict[int, list[int]] = {node: [] for node in range(ROOT, len(self.tokens))}
        for node in range(len(self.tokens)):
            children[self.parent(node)].append(node)
        return children

    def depths(self) -> list[int]:
        """Depth of every node: 1 for the first level."""
        depths: list[int] = []
        for node in range(len(self.tokens)):
            parent = self.parent(node)
            depths.append(1 if parent == ROOT else depths[parent] + 1)
        return depths

    def path_tokens(self, path: tuple[int, ...] | list[int]) -> list[int]:
        return [self.tokens[node] for node in path]
