"""The decoding loop shared by every method: propose, score, decide, commit (methods.py has the policies)."""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..runtime.runner import ModelRunner
from .methods import Method
from .stats import GenerationStats

# Given the new tokens so far, how many to keep if a stop string has been written, else None.
StopCheck = Callable[[list[int]], "int | None"]


def decode(
    prompt_ids: list[int],
    target: ModelRunner,
    drafter,
    method: Method,
    *,
    max_new_tokens: int,
    max_length: int,
    eos_token_ids: set[int],
    generator: torch.Generator | None,
    stop_check: StopCheck | None = None,
    on_tokens: Callable[[int], None] | None = None,
) -> tuple[list[int], GenerationStats]:
    """New token ids and statistics; `max_length` bounds prompt plus output (the model's context).

    `on_tokens(n)` is told after every round that n tokens have been written so far (progress).
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
        if not method.verifies:
            new_tokens = proposal.tokens
            stats.unverified += len(new_tokens)
        else:
            target_logits = target.forward(tokens + proposal.tokens, len(proposal.tokens) + 1)
            verdict, rolled_back = method.decide(proposal, target_logits, generator)
            stats.record_round(len(proposal.tokens), verdict.num_accepted)
            stats.rollbacks += rolled_back
            stats.fallbacks += method.name == "bild"
            new_tokens = proposal.tokens[: verdict.num_accepted] + [verdict.next_token]
        new_tokens = new_tokens[: min(remaining, first_eos_end(new_tokens, eos_token_ids))]
        tokens.extend(new_tokens)
        target.crop(len(tokens) - 1)
        drafter.crop(len(tokens) - 1)
        if on_tokens is not None:
            on_tokens(len(tokens) - first_new)
        if new_tokens[-1] in eos_token_ids:
            break
        if stop_check is not None:
            keep = stop_check(tokens[first_new:])
            if keep is not None:
                del tokens[first_new + keep :]
                break
    output = tokens[first_new:]
    stats.new_tokens = len(output)
    stats.wall_time_s = time.perf_counter() - started
    stats.target_calls, stats.target_time_s, stats.target_call_log = target.calls, target.seconds, target.call_log
    if drafter.runner is not None:
        runner = drafter.runner
        stats.draft_calls, stats.draft_time_s, stats.draft_call_log = runner.calls, runner.seconds, runner.call_log
    return output, stats


def first_eos_end(tokens: list[int], eos_token_ids: set[int]) -> int:
    """Length of the prefix of `tokens` up to and including the first end-of-sequence token."""
    for index, token in enumerate(tokens):
        if token in eos_token_ids:
            return index + 1
    return len(tokens)
