"""Drafts that cost nothing: a unigram or bigram model of the target's tokens, estimated from text.

Leviathan et al. (2023, section 4) measure alpha for such drafts and show that even they pay when the
target is expensive and verification is cheap. Counts come from text tokenized with the target's
tokenizer (`NgramTable`); probabilities use add-k smoothing (`TokenFrequencies`). The drafter proposes
gamma tokens, each drawn from q warped like the target's p (temperature, top-k, top-p) and told to the
rejection rule as the distribution it was drawn from, so the output is exactly the target's at any
temperature; at temperature 0 it proposes q's argmax, verified by greedy matching.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy
import torch

from ..runtime.runner import Timings
from .proposal import Proposal
from .sampling import SamplingConfig, sample, warp_probs


@dataclass(frozen=True)
class NgramTable:
    """Token counts of a text: how often each token occurs, and each (previous token, token) pair.

    The pairs are kept sorted by previous token (compressed rows): the pairs after token y are
    `next_tokens[context_starts[y]:context_starts[y + 1]]`, counted `pair_counts[...]` times.
    """

    unigram_counts: torch.Tensor  # [vocab] float64
    context_starts: torch.Tensor  # [vocab + 1] int64
    next_tokens: torch.Tensor  # [pairs] int64
    pair_counts: torch.Tensor  # [pairs] float64

    @property
    def vocab_size(self) -> int:
        return self.unigram_counts.numel()

    @classmethod
    def count(cls, sequences: Iterable[list[int]], vocab_size: int) -> NgramTable:
        """Counts over token id sequences; ids outside the vocabulary are left out (with the pairs they are in)."""
        unigrams = numpy.zeros(vocab_size, dtype=numpy.float64)
        pair_keys: list[numpy.ndarray] = []
        for sequence in sequences:
            ids = numpy.asarray(sequence, dtype=numpy.int64)
            valid = (ids >= 0) & (ids < vocab_size)
            unigrams += numpy.bincount(ids[valid], minlength=vocab_size)
            both = valid[:-1] & valid[1:]
            pair_keys.append(ids[:-1][both] * vocab_size + ids[1:][both])
        keys, counts = numpy.unique(numpy.concatenate(pair_keys or [numpy.zeros(0, numpy.int64)]), return_counts=True)
        contexts, tokens = numpy.divmod(keys, vocab_size)
        starts = numpy.searchsorted(contexts, numpy.arange(vocab_size + 1))
        return cls(
            torch.from_numpy(unigrams),
            torch.from_numpy(starts.astype(numpy.int64)),
            torch.from_numpy(tokens.astype(numpy.int64)),
            torch.from_numpy(counts.astype(numpy.float64)),
        )

    def save(self, path: Path) -> None:
        """Written under a temporary name, then renamed: an interruption leaves no half file."""
        temporary = path.with_name(path.name + ".tmp")
        torch.save({name: getattr(self, name) for name in self.__dataclass_fields__}, temporary)  # tensors only
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> NgramTable:
        return cls(**torch.load(path, weights_only=True))


class TokenFrequencies:
    """q(token) of a unigram model, or q(token | previous token) of a bigram model, with add-k smoothing.

    unigram: (c(x) + k) / (N + kV). bigram: (c(y, x) + kV u(x)) / (c(y) + kV), u the unigram model: every
    context gets kV pseudo-counts, k per token on average, spread like the unigram model, so that a context
    seen rarely (or never) falls back to it rather than to a uniform guess.
    """

    def __init__(self, table: NgramTable, order: int, smoothing: float):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order}")
        self.table, self.order = table, order
        self.pseudo_counts = smoothing * table.vocab_size  # kV
        counts = table.unigram_counts
        self.unigram = (counts + smoothing) / (counts.sum() + self.pseudo_counts)  # [vocab] float64
        self._prior = self.pseudo_counts * self.unigram

    def probs(self, previous: int) -> torch.Tensor:
        """q [vocab] (float64) of the token after `previous`."""
        if self.order == 1:
            return self.unigram
        start, end = self.table.context_starts[previous : previous + 2].tolist()
        counts = self.table.pair_counts[start:end]
        row = self._prior.index_add(0, self.table.next_tokens[start:end], counts)
        return row / (float(counts.sum()) + self.pseudo_counts)


class TrivialDrafter:
    """Proposes up to `max_tokens` tokens from a unigram or bigram model: drawn from q, or its argmax when greedy.

    Each token's work (a row of q, warped, one draw) is timed as one draft step, so that c, its cost over a
    target step, is measured like a little model's.
    """

    def __init__(
        self, frequencies: TokenFrequencies, sampling: SamplingConfig, eos_token_ids: set[int], vocab_size: int
    ):
        self.frequencies, self.sampling, self.eos_token_ids = frequencies, sampling, eos_token_ids
        self.vocab_size = vocab_size  # the target's logit rows: q must be as long as p
        self.timings = Timings()
        self._warped: dict[int, torch.Tensor] = {}  # unigram: one q for every context

    def start(self, prompt_ids: list[int]) -> None:
        self.timings = Timings()

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        drafted: list[int] = []
        draft_probs: list[torch.Tensor] = []
        previous = tokens[-1]
        for _ in range(max_tokens):
            started = time.perf_counter()
            probs = self._draft_probs(previous)  # [vocab]
            token = int(probs.argmax()) if self.sampling.greedy else sample(probs, generator)
            if not self.sampling.greedy:
                draft_probs.append(probs)
            self.timings.record(1, time.perf_counter() - started)
            drafted.append(token)
            previous = token
            if token in self.eos_token_ids:
                break
        probs_rows = torch.stack(draft_probs) if draft_probs else None
        ended = bool(drafted) and drafted[-1] in self.eos_token_ids
        return Proposal(drafted, probs=probs_rows, ended=ended)

    def _draft_probs(self, previous: int) -> torch.Tensor:
        """What the next token is drawn from: q warped like the target's distribution (float32, [vocab])."""
        context = previous if self.frequencies.order == 2 else -1
        cached = self._warped.get(context)
        if cached is not None:
            return cached
        q = self.frequencies.probs(previous)[: self.vocab_size]
        if q.numel() < self.vocab_size:  # the table was counted over fewer ids than the target scores
            q = torch.nn.functional.pad(q, (0, self.vocab_size - q.numel()))
        warped = warp_probs(q.log(), self.sampling)
        if context == -1:
            self._warped[context] = warped
        return warped

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        pass

    def crop(self, length: int) -> None:
        pass
