"""Prompt lookup's index: where each short n-gram of a growing text ends, so that the continuations of the text's
last n tokens are found without scanning it. The chain drafter (drafters.NgramDrafter) takes the first; trees
(trees.TreeDrafter) take several as branches."""

from __future__ import annotations

from collections import defaultdict


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

    def continuations(self, max_length: int, max_branches: int) -> list[tuple[int, list[int]]]:
        """Distinct continuations of the text's last n tokens, each with its n (longest n first, then the latest
        occurrence first)."""
        found: list[tuple[int, list[int]]] = []
        last = len(self.text)
        for n in range(min(self.max_ngram, last - 1), 0, -1):
            for end in reversed(self.ends.get(tuple(self.text[last - n :]), [])):
                continuation = self.text[end : end + max_length]
                if end < last and continuation and not any(c[: len(continuation)] == continuation for _, c in found):
                    found.append((n, continuation))
                    if len(found) == max_branches:
                        return found
        return found
