"""Cost profiles of a pair on this machine, and the cost-aware choice of gamma.

On a CPU, scoring k tokens in one pass costs far more than one token with default kernels, and a
little model can cost a third of the big one: a fixed gamma can make speculation slower than
plain decoding. The chooser picks gamma before each round to maximise expected tokens per unit
of time, from the running acceptance by draft position and the measured costs, and decodes
plainly (gamma = 0) when nothing wins, probing now and then whether that changed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

import torch

from .lm import Runner


@dataclass
class CostProfile:
    """T(k)/T(1) of the target for k = 1..len(verify_cost), and c = draft step / target step."""

    target_step_s: float  # T(1)
    draft_step_s: float | None
    verify_cost: list[float]  # index k - 1 -> T(k) / T(1)
    draft_verify_cost: list[float] | None = None  # the draft's own T(k)/T(1)
    # Share of a generation's wall time spent outside model forwards, by method.
    overhead: dict[str, float] = field(default_factory=dict)
    # An early-exit draft sharing the target's cache: the target's T(k)/T(1) when the draft has already run
    # the first k - 1 tokens through the layers they share (a verification pass after that draft).
    reuse_verify_cost: list[float] | None = None

    @property
    def draft_cost(self) -> float:
        return self.draft_step_s / self.target_step_s if self.draft_step_s is not None else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "CostProfile":
        return cls(**json.loads(text))


def time_forward(runner: Runner, prompt: list[int], num_tokens: int, repeats: int,
                 drafted_by: Runner | None = None) -> float:
    """Median seconds to score `num_tokens` new tokens after a cache as long as `prompt`.

    `drafted_by`, an early exit sharing the runner's cache: it first runs the new tokens but the last,
    as in a verification of its proposals.
    """
    tokens = runner.start(prompt)
    if runner.is_encoder_decoder:
        tokens = tokens + prompt  # a decoder history as long as the prompt
    runner.forward(tokens, 1)
    times = []
    for _ in range(repeats):
        runner.crop(len(tokens))
        if drafted_by is not None and num_tokens > 1:
            drafted_by.forward(tokens + prompt[: num_tokens - 1], 1)
        started = time.perf_counter()
        runner.forward(tokens + prompt[:num_tokens], num_tokens)
        times.append(time.perf_counter() - started)
    return median(times)


def measure_profile(target: Runner, draft: Runner | None, max_k: int = 16, repeats: int = 3,
                    context_tokens: int = 64, progress=None, shared_cache: bool = False) -> CostProfile:
    """Measure T(k) for k = 1..max_k of each model after a `context_tokens`-long cache (random ids, fixed seed);
    with `shared_cache` (an early-exit draft sharing the target's cache) also the target's T(k) after the draft.

    `progress()` is called after each of the `profile_steps(max_k, draft is not None, shared_cache)` measurements.
    """
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, target.vocab_size, (max(context_tokens, max_k),), generator=generator).tolist()

    def curve(runner: Runner, drafted_by: Runner | None = None) -> list[float]:
        times = []
        for k in range(1, max_k + 1):
            times.append(time_forward(runner, prompt, k, repeats, drafted_by))
            if progress is not None:
                progress()
        return times

    target_times = curve(target)
    draft_times = curve(draft) if draft is not None else None
    reuse_times = curve(target, draft) if shared_cache else None
    return CostProfile(
        target_times[0],
        draft_times[0] if draft_times else None,
        [t / target_times[0] for t in target_times],
        [t / draft_times[0] for t in draft_times] if draft_times else None,
        reuse_verify_cost=[t / target_times[0] for t in reuse_times] if reuse_times else None,
    )


def profile_steps(max_k: int, has_draft: bool, shared_cache: bool = False) -> int:
    return max_k * (1 + has_draft + shared_cache)


def profile_path(cache: Path, *identity: str) -> Path:
    """Where the profile of these models on this machine is kept."""
    machine = f"{platform.machine()}-{platform.processor()}-{torch.get_num_threads()}threads-torch{torch.__version__}"
    key = hashlib.sha256("|".join((machine, *identity)).encode()).hexdigest()[:16]
    return cache / "profiles" / f"{key}.json"


class GammaChooser:
    """Picks gamma for the next round; gamma = 0 is a plain decoding step.

    Acceptance at draft position i (given that position i - 1 was accepted) is estimated from the
    generation's counts with a Beta prior of `prior_weight` pseudo-rounds at `prior_alpha`. The
    expected number of tokens of a round with gamma drafts is 1 + sum over i <= gamma of the
    product of the first i acceptance rates; its cost is gamma * c + T(gamma + 1) / T(1).
    """

    def __init__(self, profile: CostProfile, max_gamma: int = 8, prior_alpha: float = 0.6,
                 prior_weight: float = 2.0, probe_every: int = 16, probe_margin: float = 0.9):
        self.profile = profile
        self.max_gamma = min(max_gamma, len(profile.verify_cost) - 1)
        self.prior_alpha, self.prior_weight = prior_alpha, prior_weight
        self.probe_every = probe_every
        # A probe makes the little model catch up on every token it has not seen (a prefill), so it
        # is only worth it where speculation is expected to come within this share of plain decoding.
        self.probe_margin = probe_margin
        self._plain_rounds = 0

    def acceptance(self, position: int, accepted_by_position, proposed_by_position) -> float:
        accepted = accepted_by_position.get(position, 0) + self.prior_alpha * self.prior_weight
        return accepted / (proposed_by_position.get(position, 0) + self.prior_weight)

    def rates(self, accepted_by_position, proposed_by_position) -> list[float]:
        """Expected tokens per unit of target-step time for gamma = 0..max_gamma."""
        rates, expected_tokens, survive = [1.0], 1.0, 1.0
        for gamma in range(1, self.max_gamma + 1):
            survive *= self.acceptance(gamma - 1, accepted_by_position, proposed_by_position)
            expected_tokens += survive
            cost = gamma * self.profile.draft_cost + self.profile.verify_cost[gamma]
            rates.append(expected_tokens / cost)
        return rates

    def choose(self, accepted_by_position, proposed_by_position) -> int:
        rates = self.rates(accepted_by_position, proposed_by_position)
        gamma = max(range(len(rates)), key=rates.__getitem__)
        if gamma > 0:
            self._plain_rounds = 0
            return gamma
        self._plain_rounds += 1
        if self._plain_rounds % self.probe_every == 0 and max(rates[1:]) >= self.probe_margin:
            return 1  # a probe: acceptance may have risen since speculation stopped paying
        return 0
