"""One generation's measured speedup over `ar` next to the theory's prediction from the same run's measurements."""

from __future__ import annotations

from dataclasses import replace
from statistics import median

from ..decoding.stats import GenerationStats
from .theory import cost_per_proposed_token, expected_speedup, expected_tokens_per_iteration


def compare_with_ar(pair, prompt, config, result) -> dict:
    """Run `ar` on the same prompt and set the measured speedup beside the theory's prediction.

    The prediction uses this run's own measurements: alpha = accepted / proposed, c = a draft
    step's time over a target step's, and T(gamma+1)/T(1) from the target's passes. Prefill
    passes (the first of each model) are left out of the per-step costs.
    """
    baseline = pair.generate(prompt, replace(config, method="ar", tree=None, bild_thresholds=None))  # ar has neither
    comparison = {
        "ar_wall_time_s": baseline.stats.wall_time_s,
        "ar_tokens_per_s": baseline.stats.tokens_per_s,
        # Only greedy outputs must match; sampled ones draw from different random streams.
        "same_output": baseline.token_ids == result.token_ids if config.sampling.greedy else None,
        "measured_speedup": baseline.stats.wall_time_s / result.stats.wall_time_s,
        "predicted_speedup": None,
    }
    if config.method == "speculative" and config.gamma != "auto":  # auto varies gamma per round
        cross_tokenizer = getattr(pair, "bridge", None) is not None  # c per proposed token, not per draft step
        comparison.update(predict_speedup(result.stats, baseline.stats, config.gamma, cross_tokenizer))
    return comparison


def predict_speedup(
    stats: GenerationStats, ar_stats: GenerationStats, gamma: int, per_proposed_token: bool = False
) -> dict:
    """`per_proposed_token`: c is the draft's time per proposed token (its passes after the first, over the tokens
    proposed), for a draft whose steps are not one proposed token each (another tokenizer); else its median
    one-token step."""
    step = _median_step_time(ar_stats.target_call_log, 1)
    verify = _median_step_time(stats.target_call_log, gamma + 1)
    # A drafter without a model (n-gram lookup) costs nothing worth counting.
    draft = _median_step_time(stats.draft_call_log, 1) if stats.draft_call_log else 0.0
    alpha = stats.acceptance_rate
    if step is None or verify is None or draft is None or alpha is None:
        return {}
    c, verify_cost = draft / step, verify / step
    if per_proposed_token:
        c = cost_per_proposed_token(sum(seconds for _, seconds in stats.draft_call_log[1:]), stats.proposed, step)
    return {
        "alpha": alpha,
        "c": c,
        "verify_cost_ratio": verify_cost,
        "expected_tokens_per_iteration": expected_tokens_per_iteration(alpha, gamma),
        "predicted_speedup": expected_speedup(alpha, gamma, c, {gamma + 1: verify_cost}),
    }


def _median_step_time(call_log: list[tuple[int, float]], num_tokens: int) -> float | None:
    """Median time of the forwards (after the first, the prefill) that fed `num_tokens` tokens."""
    times = [seconds for fed, seconds in call_log[1:] if fed == num_tokens]
    return median(times) if times else None
