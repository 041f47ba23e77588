"""The decoding loop shared by every method: propose, score, decide, commit (methods.py has the policies)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..runtime.runner import Runner
from .drafters import Drafter
from .methods import Method
from .stats import GenerationStats

# Given the new tokens so far, how many to keep if a stop string has been written, else None.
StopCheck = Callable[[list[int]], "int | None"]

# Where a committed token came from.
DRAFTED = "draft"  # proposed by the drafter and accepted by the target
TARGET = "target"  # the target's own: a correction, a BiLD replacement or the bonus token
UNVERIFIED = "unverified"  # BiLD's little model writing alone, never scored by the big one


@dataclass(frozen=True)
class Commit:
    """What one round added to the text, final: the one place where streaming and progress hook in."""

    tokens: list[int]  # this round's new tokens, after end-of-sequence and stop-string cuts
    sources: list[str]  # DRAFTED, TARGET or UNVERIFIED, one per token
    discarded: list[int]  # drafted tokens the target turned down this round (rejected or rolled back)
    rolled_back: bool  # BiLD: the big model replaced a little token
    total: int  # new tokens written so far, these included


def decode(
    prompt_ids: list[int],
    target: Runner,
    drafter: Drafter,
    method: Method,
    *,
    max_new_tokens: int,
    max_length: int,
    eos_token_ids: set[int],
    generator: torch.Generator | None,
    stop_check: StopCheck | None = None,
    on_commit: Callable[[Commit], None] | None = None,
) -> tuple[list[int], GenerationStats]:
    """New token ids and statistics; `max_length` bounds prompt plus output (the model's context).

    `on_commit(commit)` is told after every round which tokens it made final.
    """
    stats = GenerationStats(method=method.name, prompt_tokens=len(prompt_ids))
    started = time.perf_counter()
    tokens = target.start(prompt_ids)
    drafter.start(prompt_ids)
    first_new = len(tokens)
    while True:
        remaining = min(max_new_tokens - (len(tokens) - first_new), max_length - len(tokens))
        if remaining <= 0:
            break
        proposal = drafter.propose(tokens, method.draft_budget(remaining, stats), generator)
        rolled_back = False
        if method.verifies(proposal):
            parents = None if proposal.is_chain else proposal.parents
            target_logits = target.score(tokens, proposal.tokens, parents)  # one pass over the whole proposal
            verdict = method.decide(proposal, target_logits, generator)
            stats.record_verdict(proposal, verdict)
            target.retain(len(tokens), verdict.path)  # the caches keep the accepted path (a tree: only that branch)
            drafter.retain(len(tokens), verdict.path)
            new_tokens = proposal.path_tokens(verdict.path) + [verdict.next_token]
            sources = [DRAFTED] * verdict.num_accepted + [TARGET]
            discarded = [token for node, token in enumerate(proposal.tokens) if node not in verdict.path]
            rolled_back = verdict.rolled_back
        else:
            new_tokens, sources, discarded = proposal.tokens, [UNVERIFIED] * len(proposal), []
            stats.unverified += len(new_tokens)
        keep = min(remaining, first_eos_end(new_tokens, eos_token_ids))
        tokens.extend(new_tokens[:keep])
        target.crop(len(tokens) - 1)
        drafter.crop(len(tokens) - 1)
        finished = tokens[-1] in eos_token_ids
        if stop_check is not None and not finished:
            stop = stop_check(tokens[first_new:])
            if stop is not None:
                keep -= len(tokens) - (first_new + stop)
                del tokens[first_new + stop :]
                finished = True
        if on_commit is not None:
            on_commit(Commit(new_tokens[:keep], sources[:keep], discarded, rolled_back, len(tokens) - first_new))
        if finished:
            break
    output = tokens[first_new:]
    stats.new_tokens = len(output)
    stats.wall_time_s = time.perf_counter() - started
    stats.record_timings(target.timings, drafter.timings)
    return output, stats


def first_eos_end(tokens: list[int], eos_token_ids: set[int]) -> int:
    """Length of the prefix of `tokens` up to and including the first end-of-sequence token."""
    for index, token in enumerate(tokens):
        if token in eos_token_ids:
            return index + 1
    return len(tokens)
