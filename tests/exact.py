"""Exact output distributions by enumeration: every random draw of a run becomes a branch point.

A decoding run draws its randomness in two places only: `sample(probs)` (draft tokens, corrections,
bonus tokens, BiLD's sampled choices) and `rejected_drafts(p, q)` (Algorithm 1's coin flips).
`enumerate_runs` replaces both with a replaying oracle and runs the computation once per combination
of outcomes, weighing each by its probability, so the distribution of what the run returns is known
with no sampling noise. A tree verifier that draws through the same two functions is enumerated as is.

Branches whose probability falls below `min_weight` are not followed; their total mass is returned
with the distribution. `assert_exact` then proves, with certainty rather than with a stated power,
that the run's output is the target's distribution up to that mass: any bias of total-variation
distance above it fails.
"""

from __future__ import annotations

import contextlib
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence

import torch

from biglittle.decoding import acceptance, sampling
from biglittle.decoding.loop import decode
from biglittle.decoding.sampling import SamplingConfig, warp_probs


class _Pruned(Exception):
    pass


class _Replay:
    """One run: follows `prefix` (option indices) at the first choice points, then the heaviest option,
    noting the other options as branches still to run (or as pruned mass when too light)."""

    def __init__(self, prefix: tuple[int, ...], min_weight: float):
        self.prefix, self.min_weight = prefix, min_weight
        self.path: list[int] = []
        self.weight = 1.0
        self.branches: list[tuple[int, ...]] = []
        self.pruned = 0.0

    def choose(self, weights: list[float]) -> int:
        depth = len(self.path)
        if depth < len(self.prefix):
            choice = self.prefix[depth]
        else:
            choice = max(range(len(weights)), key=weights.__getitem__)
            for option, weight in enumerate(weights):
                if option != choice and weight > 0:
                    if self.weight * weight >= self.min_weight:
                        self.branches.append((*self.path, option))
                    else:
                        self.pruned += self.weight * weight
        self.path.append(choice)
        self.weight *= weights[choice]
        if self.weight < self.min_weight:
            self.pruned += self.weight
            raise _Pruned
        return choice

    def sample(self, probs: torch.Tensor, generator=None) -> int:
        return self.choose(probs.double().tolist())

    def rejected_drafts(self, target_p: torch.Tensor, draft_p: torch.Tensor, generator=None) -> Sequence[bool]:
        survive = (target_p.double() / draft_p.double()).clamp(max=1.0).tolist()  # min(1, p/q)
        return _Flips(self, survive)


class _Flips(Sequence):
    """Algorithm 1's rejection flags, each flipped only when the rule looks at it (it stops at the first)."""

    def __init__(self, replay: _Replay, survive: list[float]):
        self.replay, self.survive, self.flags = replay, survive, []

    def __len__(self) -> int:
        return len(self.survive)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        while len(self.flags) <= index:
            keep = self.survive[len(self.flags)]
            self.flags.append(self.replay.choose([keep, 1.0 - keep]) == 1)
        return self.flags[index]


def _seams() -> list[tuple[object, str, str, object]]:
    """(module, attribute, replay method, original) for every decoding module's `sample` and `rejected_drafts`."""
    names = {sampling.sample: "sample", acceptance.rejected_drafts: "rejected_drafts"}
    return [
        (module, attr, names[value], value)
        for name, module in list(sys.modules.items())
        if name.startswith("biglittle.decoding")
        for attr, value in list(vars(module).items())
        if callable(value) and value in names
    ]


def enumerate_runs(run: Callable[[], Hashable], min_weight: float = 0.0) -> tuple[dict, float]:
    """({outcome: probability}, pruned mass) of `run()` over all its random draws."""
    seams = _seams()
    distribution: dict = defaultdict(float)
    pruned, pending = 0.0, [()]
    try:
        while pending:
            replay = _Replay(pending.pop(), min_weight)
            for module, attr, method, _ in seams:
                setattr(module, attr, getattr(replay, method))
            with contextlib.suppress(_Pruned):
                distribution[run()] += replay.weight
            pruned += replay.pruned
            pending += replay.branches
    finally:
        for module, attr, _, original in seams:
            setattr(module, attr, original)
    return dict(distribution), pruned


def first_two(target, drafter, method, prompt_ids: list[int], eos_token_ids: set[int], min_weight: float = 0.0):
    """Exact distribution of a run's first two new tokens: {(x1, x2) or (x1, None) after an EOS: p}, pruned mass.

    The run may write three tokens, so that the first round can draft two (a budget leaves room for the
    target's own token) and both tokens can come out of one round; it stops as soon as two are final.
    """
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()

    def run():
        written: list[int] = []

        def stop_at_two(commit):
            written.extend(commit.tokens)
            if len(written) >= 2:
                raise _Done

        with contextlib.suppress(_Done):
            decode(
                prompt_ids,
                target,
                drafter,
                method,
                max_new_tokens=3,
                max_length=1 << 20,
                eos_token_ids=eos_token_ids,
                generator=generator,
                on_commit=stop_at_two,
            )
        if not torch.equal(generator.get_state(), state):
            raise AssertionError("the run drew randomness that the enumeration does not follow")
        return (written[0], written[1] if len(written) > 1 else None)

    return enumerate_runs(run, min_weight)


class _Done(Exception):
    pass


def target_first_two(next_logits: Callable[[tuple[int, ...]], torch.Tensor], prompt_ids, sampling: SamplingConfig, eos):
    """The target's own distribution of the first two tokens: p(x1) p(x2 | x1), warped as decoding warps."""
    prompt = tuple(prompt_ids)
    first = warp_probs(next_logits(prompt), sampling).double()
    distribution = {}
    for x1 in first.nonzero()[:, 0].tolist():
        if x1 in eos:
            distribution[(x1, None)] = float(first[x1])
            continue
        second = warp_probs(next_logits((*prompt, x1)), sampling).double()
        for x2 in second.nonzero()[:, 0].tolist():
            distribution[(x1, x2)] = float(first[x1] * second[x2])
    return distribution


def assert_exact(enumerated: dict, pruned: float, expected: dict, tolerance: float = 1e-5) -> None:
    """The enumerated distribution is `expected` up to the pruned mass. If the run is exact, the L1 gap is
    the pruned mass (mass missing, never added); a run biased by total variation t has a gap of at least
    2t minus the pruned mass, so every bias with t > pruned + tolerance / 2 fails (tolerance: float rounding)."""
    outcomes = set(enumerated) | set(expected)
    gap = sum(abs(enumerated.get(o, 0.0) - expected.get(o, 0.0)) for o in outcomes)
    assert gap <= pruned + tolerance, f"L1 gap {gap:.5f} with pruned mass {pruned:.5f}: not the target's outputs"
