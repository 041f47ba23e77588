"""Cost profiles of a pair on this machine: T(k)/T(1) of both models and c, measured once and kept on disk.

On a CPU, scoring k tokens in one pass can cost far more than one token, and a little model can
cost a third of the big one: whether speculation pays depends on these numbers (gamma.py uses them).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

import torch

from ..files import profiles_dir
from ..runtime.cpu import cpu_model
from ..runtime.hollow import hollow_copy
from ..runtime.quantize import onednn_exact, weight_bytes
from ..runtime.runner import ModelRunner, Runner


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
    # The memory floor of a step: bytes of weights each model reads per pass, and this machine's read bandwidth.
    target_weight_bytes: int | None = None
    draft_weight_bytes: int | None = None
    memory_bandwidth: float | None = None  # bytes per second
    measured_at: str | None = None  # when, UTC (ISO 8601); None in profiles kept before they carried a date
    # T(1) of each model's layers with tiny matrices (runtime/hollow.py): the part of a step its weights do not cost.
    target_fixed_s: float | None = None
    draft_fixed_s: float | None = None

    def floor_s(self, weight_bytes: int | None) -> float | None:
        """Seconds to read `weight_bytes` at the measured bandwidth: no pass can be faster."""
        return weight_bytes / self.memory_bandwidth if weight_bytes and self.memory_bandwidth else None

    @property
    def max_proposals(self) -> int:
        """The most proposed tokens a measured pass can verify (with the token after the last one accepted)."""
        return len(self.verify_cost) - 1

    @property
    def draft_cost(self) -> float:
        return self.draft_step_s / self.target_step_s if self.draft_step_s is not None else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> CostProfile:
        return cls(**json.loads(text))


PROFILE_REPEATS = 5  # timed sweeps of every k
PROFILE_MAX_K = 16  # T(k) is measured for k = 1..PROFILE_MAX_K


def measure_profile(
    target: Runner,
    draft: Runner | None,
    max_k: int = PROFILE_MAX_K,
    repeats: int = PROFILE_REPEATS,
    context_tokens: int = 192,
    progress=None,
    shared_cache: bool = False,
) -> CostProfile:
    """Measure T(k) for k = 1..max_k of each model after a `context_tokens`-long cache (random ids, fixed seed);
    with `shared_cache` (an early-exit draft sharing the target's cache) also the target's T(k) after the draft.

    `progress()` is called after each of the `profile_steps(max_k, draft is not None, shared_cache, repeats)` passes.
    """
    draft_times: list[float] | None = None
    reuse_times: list[float] | None = None
    if shared_cache and draft is not None:  # one cache for both models: one curve after the other
        target_times, draft_times, reuse_times = (
            _curves([plan], max_k, repeats, context_tokens, progress)[0]
            for plan in ((target, None), (draft, None), (target, draft))
        )
    else:
        plans: list[tuple[Runner, Runner | None]] = [(target, None)]
        if draft is not None:
            plans.append((draft, None))
        target_times, *rest = _curves(plans, max_k, repeats, context_tokens, progress)
        draft_times = rest[0] if rest else None
    return CostProfile(
        target_times[0],
        draft_times[0] if draft_times else None,
        [t / target_times[0] for t in target_times],
        [t / draft_times[0] for t in draft_times] if draft_times else None,
        reuse_verify_cost=[t / target_times[0] for t in reuse_times] if reuse_times else None,
        target_weight_bytes=weight_bytes(target.model),
        draft_weight_bytes=weight_bytes(draft.model) if draft is not None else None,
        memory_bandwidth=measure_bandwidth(),
        target_fixed_s=fixed_step_s(target, repeats, context_tokens),
        draft_fixed_s=fixed_step_s(draft, repeats, context_tokens) if draft is not None else None,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="minutes"),
    )


def _curves(
    plans: list[tuple[Runner, Runner | None]], max_k: int, repeats: int, context_tokens: int, progress
) -> list[list[float]]:
    """Median seconds of a pass over k = 1..max_k new tokens for each (runner, the early exit that ran the tokens
    first or None). Timed in sweeps, every k of every plan in turn, `repeats` times after an untimed warm-up sweep:
    these machines' speed drifts by up to 25% within minutes, and drift that touches every k and both models alike
    leaves their ratios alone, where timing one k (or one model) after another bent the curve. Each plan's turn
    starts with an untimed pass: the first pass of a model after the other model ran is slower (by 20% for the
    1.5B here), which would otherwise fall on k = 1 every time."""
    contexts = [_prefilled(runner, max(context_tokens, max_k)) for runner, _ in plans]
    times: list[list[list[float]]] = [[[] for _ in range(max_k)] for _ in plans]
    for sweep in range(repeats + 1):
        for (runner, drafted_by), (tokens, prompt), plan_times in zip(plans, contexts, times):
            _time_pass(runner, tokens, prompt, 1, drafted_by)  # untimed: back to this model
            for k in range(1, max_k + 1):
                seconds = _time_pass(runner, tokens, prompt, k, drafted_by)
                if sweep:
                    plan_times[k - 1].append(seconds)
                if progress is not None:
                    progress()
    return [[median(k_times) for k_times in plan_times] for plan_times in times]


def fixed_step_s(runner: Runner, repeats: int, context_tokens: int) -> float | None:
    """T(1) of the runner's model with tiny matrices (hollow_copy): what a step costs beyond reading and multiplying
    its weights, on a CPU. None on a GPU (heads 8 wide can take another attention kernel there: an H200's hollow
    1.5B stepped in 27 ms, its real one in 19), for a runner that shares another's cache (an early exit of a Llama
    or Qwen2 target) or a model it cannot shrink."""
    measurable = type(runner) is ModelRunner and runner.device.type == "cpu"
    hollow = hollow_copy(runner.model) if measurable else None
    if hollow is None:
        return None
    return _curves([(ModelRunner(hollow, hollow.config.vocab_size), None)], 1, repeats, context_tokens, None)[0][0]


def _prefilled(runner: Runner, length: int) -> tuple[list[int], list[int]]:
    """(the runner's cached tokens, random ids of its own vocabulary to score after them): a draft with another
    tokenizer may have fewer ids."""
    prompt = torch.randint(0, runner.vocab_size, (length,), generator=torch.Generator().manual_seed(0)).tolist()
    tokens = runner.start(prompt)
    if runner.is_encoder_decoder:
        tokens = tokens + prompt  # a decoder history as long as the prompt
    runner.forward(tokens, 1)
    return tokens, prompt


def _time_pass(runner: Runner, tokens: list[int], prompt: list[int], k: int, drafted_by: Runner | None) -> float:
    """Seconds to score k new tokens after `tokens`; `drafted_by`, an early exit sharing the runner's cache, first
    runs them but the last, as in a verification of its proposals."""
    runner.crop(len(tokens))
    if drafted_by is not None and k > 1:
        drafted_by.forward(tokens + prompt[: k - 1], 1)
    started = time.perf_counter()
    runner.forward(tokens + prompt[:k], k)
    return time.perf_counter() - started


def measure_bandwidth(size_bytes: int = 1 << 29, repeats: int = 5) -> float:
    """This machine's memory read bandwidth (bytes per second): the fastest of `repeats` sums over a buffer far
    larger than the caches, with torch's threads."""
    buffer = torch.ones(size_bytes // 4)
    buffer.sum()  # touched once: pages mapped
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        fastest = min(fastest, time.perf_counter() - started)
    return size_bytes / fastest


def profile_steps(max_k: int, has_draft: bool, shared_cache: bool = False, repeats: int = PROFILE_REPEATS) -> int:
    return max_k * (1 + has_draft + shared_cache) * (repeats + 1)


def profile_path(cache: Path, *identity: str) -> Path:
    """Where the profile of these models on this machine is kept, under the cache root `cache`."""
    machine = "|".join(
        (cpu_model(), f"{torch.get_num_threads()}threads", f"torch{torch.__version__}", f"onednn{int(onednn_exact())}")
    )
    key = hashlib.sha256("|".join((machine, *identity)).encode()).hexdigest()[:16]
    return profiles_dir(cache) / f"{key}.json"


def measure_overhead(generate, vocab_size: int, has_draft: bool, new_tokens: int = 24) -> dict[str, float]:
    """Share of wall time spent outside model forwards in a short generation, per method.

    `generate(prompt_ids, **settings)` is a pair's generate; the prompt is 32 random ids (fixed seed).
    """
    prompt = torch.randint(0, vocab_size, (32,), generator=torch.Generator().manual_seed(1)).tolist()
    overhead = {}
    for method in ["ar"] + (["speculative"] if has_draft else []):
        stats = generate(prompt, method=method, gamma=4, max_new_tokens=new_tokens, seed=0).stats
        overhead[method] = stats.other_time_s / stats.wall_time_s
    return overhead
