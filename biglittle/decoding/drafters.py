"""What proposes tokens for the big model to score: nothing (plain decoding), a little model,
n-gram lookup in the text so far (no model cost), or n-gram lookup with the little model as a fallback."""

from __future__ import annotations

from typing import Protocol

import torch

from ..cost.gamma import GammaChooser
from ..cost.lookup_lengths import LookupLengths
from ..runtime.runner import Runner, Timings
from .lookup_index import LookupIndex
from .proposal import Proposal
from .sampling import SamplingConfig, sample, warp_probs
from .stats import GenerationStats


class Drafter(Protocol):
    """Anything that proposes tokens: the loop starts it on a prompt, asks for a proposal before every target
    pass, tells it which path of its proposal was accepted (`retain`, as runners are told), and crops it to the
    committed length; `timings` are its models' forward passes (none: empty)."""

    def start(self, prompt_ids: list[int]) -> None: ...

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal: ...

    def retain(self, start: int, path: tuple[int, ...]) -> None: ...

    def crop(self, length: int) -> None: ...

    @property
    def timings(self) -> Timings: ...


class _ModelFree:
    """A drafter that runs no model: nothing to time and no cache to crop."""

    @property
    def timings(self) -> Timings:
        return Timings()

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        pass

    def crop(self, length: int) -> None:
        pass


class NoDrafter(_ModelFree):
    """Plain autoregressive decoding: the target alone, one token per forward pass."""

    def start(self, prompt_ids: list[int]) -> None:
        pass

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        return Proposal([])


class ModelDrafter:
    """A little model proposing up to `max_tokens` tokens autoregressively.

    With a fallback threshold (BiLD) it stops as soon as its highest next-token probability
    falls below the threshold, leaving that token to the big model.
    """

    def __init__(
        self,
        runner: Runner,
        sampling: SamplingConfig,
        eos_token_ids: set[int],
        fallback_threshold: float = 0.0,
    ):
        self.runner = runner
        self.sampling = sampling
        self.eos_token_ids = eos_token_ids
        self.fallback_threshold = fallback_threshold

    def start(self, prompt_ids: list[int]) -> None:
        self.runner.start(prompt_ids)

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        context = list(tokens)
        drafted: list[int] = []
        draft_probs: list[torch.Tensor] = []
        for _ in range(max_tokens):
            logits = self.runner.forward(context, 1)[0]  # [vocab]
            if self._unsure(logits):
                return Proposal(drafted, probs=_stack(draft_probs))
            if self.sampling.greedy:
                token = int(logits.argmax())
            else:
                probs = warp_probs(logits, self.sampling)
                token = sample(probs, generator)
                draft_probs.append(probs)
            drafted.append(token)
            context.append(token)
            if token in self.eos_token_ids:
                return Proposal(drafted, probs=_stack(draft_probs), ended=True)
        return Proposal(drafted, probs=_stack(draft_probs))

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        self.runner.retain(start, path)

    def crop(self, length: int) -> None:
        self.runner.crop(length)

    @property
    def timings(self) -> Timings:
        return self.runner.timings

    def _unsure(self, logits: torch.Tensor) -> bool:
        """BiLD's fallback test on the raw distribution; a threshold of 1 always hands over."""
        if self.fallback_threshold <= 0:
            return False
        return self.fallback_threshold >= 1 or bool(logits.float().softmax(-1).max() < self.fallback_threshold)


class NgramDrafter(_ModelFree):
    """Prompt lookup: propose the tokens that followed the latest earlier occurrence of the text's
    last n tokens (n from `max_ngram` down to 1). Deterministic, so each proposal's distribution
    is a point mass, which keeps the rejection rule exact at any temperature.

    With `lengths` (--gamma auto), as many of them as pays for a match of that length (cost/lookup_lengths.py).
    """

    def __init__(
        self,
        vocab_size: int,
        eos_token_ids: set[int],
        max_ngram: int = 3,
        search_prompt: bool = False,
        lengths: LookupLengths | None = None,
    ):
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_token_ids
        self.max_ngram = max_ngram
        self.search_prompt = search_prompt  # encoder-decoder: the prompt is not among the decoder's tokens
        self.lengths = lengths
        self._index = LookupIndex(max_ngram)  # extended as the text grows
        self._prompt: list[int] = []
        self._last = (0, 0)  # the last round's (match length, tokens proposed)

    def start(self, prompt_ids: list[int]) -> None:
        self._prompt = list(prompt_ids) if self.search_prompt else []

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        found, match = self.lookup(self._prompt + tokens, max_tokens) if max_tokens > 0 else ([], 0)
        if self.lengths is not None:
            found = found[: self.lengths.length(match, len(found))]
        ended = False
        for index, token in enumerate(found):
            if token in self.eos_token_ids:
                found, ended = found[: index + 1], True
                break
        self._last = (match, len(found))
        probs = torch.nn.functional.one_hot(torch.tensor(found), self.vocab_size).float() if found else None
        return Proposal(found, probs=probs, ended=ended)

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        if self.lengths is not None:
            self.lengths.learn(*self._last, accepted=len(path))

    def lookup(self, history: list[int], max_tokens: int) -> tuple[list[int], int]:
        """(the continuation, at most `max_tokens` long, and the length of the match that found it; 0: none)."""
        self._index.extend(history)
        found = self._index.continuations(max_tokens, max_branches=1)
        return (found[0][1], found[0][0]) if found else ([], 0)


class HybridDrafter:
    """N-gram proposals where the text offers them, the little model's otherwise.

    With a `chooser` (--gamma auto) the lookups size themselves (NgramDrafter.lengths) and the chooser sizes the
    little model's rounds from their own acceptance alone (none: a plain step); without one, both propose up to the
    round's budget.
    """

    def __init__(self, ngram: NgramDrafter, model: Drafter, chooser: GammaChooser | None = None):
        self.ngram, self.model, self.chooser = ngram, model, chooser
        self.model_rounds = GenerationStats()  # the little model's rounds: what the chooser learns from
        self._model_proposed: int | None = None  # this round's little-model tokens; None: a lookup round

    def start(self, prompt_ids: list[int]) -> None:
        self.ngram.start(prompt_ids)
        self.model.start(prompt_ids)

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        proposal = self.ngram.propose(tokens, max_tokens, generator)
        if proposal.tokens:
            self._model_proposed = None
            return proposal
        if self.chooser is not None:
            rounds = self.model_rounds
            max_tokens = min(max_tokens, self.chooser.choose(rounds.accepted_by_position, rounds.tried_by_position))
        proposal = self.model.propose(tokens, max_tokens, generator) if max_tokens > 0 else Proposal([])
        self._model_proposed = len(proposal)
        return proposal

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        if self._model_proposed is None:
            self.ngram.retain(start, path)
        elif self._model_proposed:
            self.model_rounds.record_round(self._model_proposed, len(path))
        self.model.retain(start, path)

    def crop(self, length: int) -> None:
        self.model.crop(length)

    @property
    def timings(self) -> Timings:
        return self.model.timings


def _stack(probs: list[torch.Tensor]) -> torch.Tensor | None:
    return torch.stack(probs) if probs else None
