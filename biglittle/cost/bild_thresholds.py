"""BiLD's thresholds chosen from measurement: expected cost, the selection rule, the stored choice.

BiLD is not exact: lower fallback and higher rollback thresholds let the little model write more
(faster) and keep more of its mistakes (worse). `biglittle tune-bild` (bench/threshold_search.py) runs the big
model alone and a grid of threshold pairs on a task's dev examples; this module turns those runs
into a choice, the fastest pair whose quality is within a tolerance of the big model's, and keeps
it per machine, pair, precision and task next to the cost profile, where
`generate --bild-thresholds auto` finds it. Speed is the expected cost from the generations'
forward passes and the measured cost profile: deterministic, so a few examples are not drowned
in timing noise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import BigLittleError
from ..files import read_json, write_text_atomically
from .profile import CostProfile, profile_path


@dataclass(frozen=True)
class Candidate:
    """One measured threshold pair: its quality (the task's metric) and its speed over the big model alone."""

    fallback_threshold: float
    rollback_threshold: float
    quality: float
    expected_speedup: float | None  # the big model alone's expected cost over this pair's, summed over examples
    measured_speedup: float | None = None  # the same ratio of wall times
    fallbacks_per_token: float | None = None
    rollbacks_per_token: float | None = None


def pass_cost(curve: Sequence[float], tokens: int) -> float:
    """T(k)/T(1) for a pass over k tokens; beyond the measured k, linear in k (a long pass is compute-bound)."""
    if tokens <= len(curve):
        return curve[tokens - 1]
    return curve[-1] * tokens / len(curve)


def expected_cost(target_passes: Sequence[int], draft_passes: Sequence[int], profile: CostProfile) -> float:
    """A generation's cost in big-model steps from the tokens fed to each forward pass, in order.

    Σ over the big model's passes of T(k)/T(1), plus c times Σ over the little model's passes of its
    own T(k)/T(1). The prefills count too: with short outputs the little model's reading of the
    prompt is a large share of what BiLD costs over the big model alone, and leaving it out would
    promise speedups that the wall clock does not show.
    """
    big = sum(pass_cost(profile.verify_cost, k) for k in target_passes)
    little_curve = profile.draft_verify_cost or profile.verify_cost
    little = sum(pass_cost(little_curve, k) for k in draft_passes)
    return big + profile.draft_cost * little


def choose(candidates: Sequence[Candidate], baseline_quality: float, tolerance: float) -> tuple[Candidate, bool]:
    """(choice, within_tolerance): the fastest candidate whose quality is at least baseline − tolerance.

    When none is, the one of highest quality, and within_tolerance is False. Ties go to the more
    cautious pair: higher quality, then the lower rollback threshold, then the higher fallback threshold.
    """
    if not candidates:
        raise BigLittleError("no BiLD threshold pairs to choose from")

    def caution(c: Candidate) -> tuple[float, float]:
        return -c.rollback_threshold, c.fallback_threshold

    def speed(c: Candidate) -> float:
        return c.expected_speedup if c.expected_speedup is not None else 0.0

    qualifying = [c for c in candidates if c.quality >= baseline_quality - tolerance]
    if qualifying:
        return max(qualifying, key=lambda c: (speed(c), c.quality, *caution(c))), True
    return max(candidates, key=lambda c: (c.quality, speed(c), *caution(c))), False


def thresholds_path(cache: Path, pair_identity: Sequence[str]) -> Path:
    """The file of a pair's tuned thresholds (one entry per task), beside its cost profile."""
    return profile_path(cache, "bild-thresholds-v1", *pair_identity)


def store_choice(path: Path, task: str, entry: dict) -> None:
    """Keep `entry` (fallback_threshold, rollback_threshold and how they were chosen) as `task`'s choice."""
    choices = read_json(path, "delete it and run `biglittle tune-bild` again") or {}
    choices[task] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(choices, indent=1))


def tuned_thresholds(path: Path, task: str | None = None) -> tuple[float, float]:
    """(fallback, rollback) stored for `task`, or for the only task tuned when `task` is None."""
    choices = read_json(path, "delete it and run `biglittle tune-bild` again")
    run = f"run `biglittle tune-bild --task {task or 'TASK'}` with the same models, --precision and --device first"
    if not choices:
        raise BigLittleError(f"no tuned BiLD thresholds for this pair on this machine; {run}")
    if task is None:
        if len(choices) > 1:
            raise BigLittleError(
                f"BiLD thresholds are tuned for {' and '.join(sorted(choices))}: say which, "
                f"e.g. --bild-thresholds auto:{sorted(choices)[0]}"
            )
        task = next(iter(choices))
    if task not in choices:
        raise BigLittleError(
            f"no tuned BiLD thresholds for {task} with this pair (tuned: {', '.join(sorted(choices))}); {run}"
        )
    return choices[task]["fallback_threshold"], choices[task]["rollback_threshold"]
