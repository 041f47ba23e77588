"""From generation records to one summary per (task, setting): quality, agreement, speed, mechanism, lengths.

Speedups compare each setting with `ar` on the target ("Vanilla (large)") over the same examples
and repeats; agreement compares its tokens with that baseline's greedy tokens (an --also-precision pair's, with
its own big model's); bootstrap intervals
(bootstrap.py) pair each setting with that baseline on the same resampled examples. The predicted
speedup is report.predict_speedup's, fed with the pooled counts and call logs of the setting.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from statistics import mean, median

import numpy

from ..config import TRIVIAL_DRAFTERS
from ..cost.prediction import predict_speedup
from ..data.metrics import METRIC_OF_TASK, from_statistics, statistics
from ..decoding.stats import GenerationStats
from ..sandbox import VERDICTS
from .bootstrap import Sample, paired_intervals
from .settings import BASELINE, LLAMACPP_PLAIN, Setting

NO_INTERVALS = {
    "examples": 0,
    "quality": None,
    "difference": None,
    "difference_interval": None,
    "speedup": None,
    "distinguishable": None,
}


def aggregate(records: list[dict], settings: list[Setting]) -> list[dict]:
    """One summary per task and setting that has records, in the settings' order."""
    groups = defaultdict(list)
    for record in records:
        groups[record["task"], record["setting"]["label"]].append(record)
    summaries = []
    for task in dict.fromkeys(record["task"] for record in records):
        baseline = {_example_key(r): r for r in groups.get((task, BASELINE), [])}
        llamacpp_plain = {_example_key(r): r for r in groups.get((task, LLAMACPP_PLAIN), [])}
        ar_stats = pooled_stats(list(baseline.values()))
        for setting in settings:
            group = groups.get((task, setting.label))
            if group:
                own = {_example_key(r): r for r in groups.get((task, own_baseline(setting)), [])}
                summary = summarize(task, setting, group, baseline, ar_stats, own or baseline)
                if setting.family == "llamacpp":
                    summary["llamacpp"] = llamacpp_summary(group, llamacpp_plain)
                summaries.append(summary)
    return summaries


def own_baseline(setting: Setting) -> str:
    """The label of the big model whose tokens `setting`'s are compared with: its own precision's (an
    --also-precision pair, bench/settings.py), otherwise the baseline."""
    own = f"{setting.model}: {BASELINE}"
    return own if setting.family == "precision" and setting.label != own else BASELINE


def summarize(
    task: str, setting: Setting, group: list[dict], baseline: dict, ar_stats: GenerationStats, reference: dict
) -> dict:
    """`reference`: the records of the big model whose tokens this setting's are compared with (own_baseline)."""
    metric = METRIC_OF_TASK[task]
    summary = {
        "task": task,
        "label": setting.label,
        "family": setting.family,
        "setting": setting.params(),
        "examples": len({r["example_id"] for r in group}),
        "generations": len(group),
        "metric": metric,
        "quality": quality(task, group),
        "agreement": agreement(group, reference),
        "median_wall_time_s": median(r["wall_time_s"] for r in group),
        "tokens_per_s": _ratio(sum(r["new_tokens"] for r in group), sum(r["wall_time_s"] for r in group)),
        "speedup": speedup(group, baseline),
        "intervals": intervals(task, group, list(baseline.values())),
        "lengths": lengths(group),
        "mechanism": mechanism(setting, group, ar_stats),
    }
    if task == "code":
        summary["verdicts"] = verdicts(group)
    return summary


def _example_key(record: dict) -> tuple[str, int]:
    return record["example_id"], record["repeat"]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _passed(record: dict) -> bool:
    return record.get("execution", {}).get("verdict") == "passed"


def record_statistics(task: str, records: list[dict]) -> numpy.ndarray:
    """[records, k] the sufficient statistics of the task's metric, one row per record."""
    if not records:
        return numpy.zeros((0, 1))
    return statistics(
        task, [r["text"] for r in records], [r["reference"] for r in records], [_passed(r) for r in records]
    )


def quality(task: str, group: list[dict]) -> float:
    """The task's metric (BLEU, ROUGE-L or pass@1, 0-100) against the references or tests, averaged over repeats."""
    by_repeat = defaultdict(list)
    for record in group:
        by_repeat[record["repeat"]].append(record)
    return mean(
        float(from_statistics(task, record_statistics(task, rs).sum(axis=0), len(rs))) for rs in by_repeat.values()
    )


def verdicts(group: list[dict]) -> dict[str, int]:
    """How many of the answers' programs passed, failed, timed out or raised an error in the sandbox."""
    counts = Counter(record.get("execution", {}).get("verdict", "error") for record in group)
    return {verdict: counts[verdict] for verdict in VERDICTS}


def _aligned(task: str, records: list[dict], keys: list[tuple[str, int]], repeats: list[int]) -> Sample:
    by_key = {_example_key(r): r for r in records}
    examples = list(dict.fromkeys(example for example, _ in keys))
    rows = [[by_key[example, repeat] for example in examples] for repeat in repeats]
    flat = [record for row in rows for record in row]
    return Sample(
        statistics=record_statistics(task, flat).reshape(len(repeats), len(examples), -1),
        seconds=numpy.array([[r["wall_time_s"] for r in row] for row in rows], dtype=float).reshape(
            len(repeats), len(examples)
        ),
    )


def intervals(task: str, group: list[dict], baseline: list[dict]) -> dict:
    """Bootstrap intervals of quality, of its difference to the baseline's and of the speedup, on the examples
    that both have in every repeat."""
    repeats = sorted({r["repeat"] for r in group})
    present = {_example_key(r) for r in group} & {_example_key(r) for r in baseline}
    complete = [e for e in dict.fromkeys(r["example_id"] for r in baseline) if all((e, k) in present for k in repeats)]
    keys = [(example, repeat) for example in complete for repeat in repeats]
    if not keys:
        return NO_INTERVALS
    return paired_intervals(task, _aligned(task, group, keys, repeats), _aligned(task, baseline, keys, repeats))


def lengths(group: list[dict]) -> dict:
    """Prompt and output lengths, and the share of the wall time spent reading the prompt (prefill). None for
    the transformers peers, which log no forwards."""
    new_tokens = [r["new_tokens"] for r in group]
    prompts = [r["prompt_tokens"] for r in group if "prompt_tokens" in r]
    prefills = [(seconds, r["wall_time_s"]) for r in group if (seconds := _prefill_s(r)) is not None]
    return {
        "prompt_tokens_mean": mean(prompts) if prompts else None,
        "new_tokens_median": median(new_tokens),
        "new_tokens_mean": mean(new_tokens),
        "prefill_share": _ratio(sum(p for p, _ in prefills), sum(w for _, w in prefills)) if prefills else None,
    }


def _prefill_s(record: dict) -> float | None:
    """The first forward of each model, which feeds the whole prompt; for llama.cpp its server's prompt time."""
    logs = [log for log in (record.get("target_call_log"), record.get("draft_call_log")) if log]
    if logs:
        return sum(log[0][1] for log in logs)
    own = record.get("stats", {}).get("llamacpp", {})
    return own["prompt_ms"] / 1000 if "prompt_ms" in own else None


def token_agreement(tokens: list[int], reference: list[int]) -> float:
    """Positions holding the same token, over the longer of the two sequences."""
    longest = max(len(tokens), len(reference))
    return sum(a == b for a, b in zip(tokens, reference)) / longest if longest else 1.0


def agreement(group: list[dict], baseline: dict) -> dict:
    """Exact-match rate and mean token agreement with the target's greedy output of the same example."""
    pairs = [(r["token_ids"], baseline[_example_key(r)]["token_ids"]) for r in group if _example_key(r) in baseline]
    if not pairs:
        return {"exact_match": None, "token_agreement": None}
    return {
        "exact_match": mean(float(a == b) for a, b in pairs),
        "token_agreement": mean(token_agreement(a, b) for a, b in pairs),
    }


def _wall_time(record: dict) -> float:
    return record["wall_time_s"]


def speedup(group: list[dict], baseline: dict, seconds: Callable[[dict], float] = _wall_time) -> dict:
    """Baseline time over this setting's time (`seconds` of a record): total, per example (median, IQR), per repeat."""
    pairs = [
        (seconds(baseline[_example_key(r)]), seconds(r), r["repeat"]) for r in group if _example_key(r) in baseline
    ]
    if not pairs:
        return {"total": None, "median": None, "iqr": None, "per_repeat": []}
    q1, q2, q3 = numpy.percentile([ar / method for ar, method, _ in pairs], [25, 50, 75]).tolist()
    repeats = sorted({repeat for _, _, repeat in pairs})
    per_repeat = [
        sum(ar for ar, _, rep in pairs if rep == r) / sum(m for _, m, rep in pairs if rep == r) for r in repeats
    ]
    return {
        "total": sum(ar for ar, _, _ in pairs) / sum(m for _, m, _ in pairs),
        "median": q2,
        "iqr": [q1, q3],
        "per_repeat": per_repeat,
    }


def _reported_time(record: dict) -> float:
    return record["stats"]["llamacpp"]["reported_s"]


def llamacpp_summary(group: list[dict], plain: dict) -> dict:
    """llama.cpp's own view of a llama.cpp setting: its decode rate, and its speedup and agreement over its plain
    decoding (the same examples), by wall time and by the time the server reported (prompt + generation)."""
    timings = [record["stats"]["llamacpp"] for record in group]
    predicted_ms = sum(t.get("predicted_ms", 0.0) for t in timings)
    return {
        "decode_tokens_per_s": _ratio(sum(t.get("predicted_n", 0) for t in timings) * 1000, predicted_ms),
        "reported_s": sum(t["reported_s"] for t in timings),
        "speedup_over_plain": speedup(group, plain)["total"],
        "speedup_over_plain_reported": speedup(group, plain, _reported_time)["total"],
        "agreement_with_plain": agreement(group, plain),
    }


def _pooled_call_log(records: list[dict], key: str) -> list[tuple[int, float]]:
    """Every record's forwards after its prefill, behind one prefill: the shape predict_speedup reads."""
    logs = [[tuple(call) for call in r.get(key, [])] for r in records]
    logs = [log for log in logs if log]
    return logs[0][:1] + [call for log in logs for call in log[1:]] if logs else []


def pooled_stats(records: list[dict]) -> GenerationStats:
    """The records' counters summed into one GenerationStats, call logs pooled."""
    total = Counter()
    proposed, accepted = Counter(), Counter()
    for record in records:
        total.update(
            {
                name: record["stats"].get(name, 0)
                for name in (
                    "new_tokens",
                    "target_calls",
                    "draft_calls",
                    "proposed",
                    "accepted",
                    "fallbacks",
                    "rollbacks",
                )
            }
        )
        proposed.update(dict(enumerate(record["positions"]["proposed"])))
        accepted.update(dict(enumerate(record["positions"]["accepted"])))
    return GenerationStats(
        **total,
        proposed_by_position=proposed,
        accepted_by_position=accepted,
        target_call_log=_pooled_call_log(records, "target_call_log"),
        draft_call_log=_pooled_call_log(records, "draft_call_log"),
    )


def _accepted_by_depth(records: list[dict], target_calls: int) -> list[tuple[int, float, float]]:
    """(depth, share of target passes accepting the drafter's first choice there, share accepting another)."""
    first, others = Counter(), Counter()
    for record in records:
        for depth, rank, count in record["stats"].get("accepted_by_depth_rank", []):
            (first if rank == 0 else others)[depth] += count
    depths = sorted(set(first) | set(others))
    return (
        [(depth, first[depth] / target_calls, others[depth] / target_calls) for depth in depths] if target_calls else []
    )


def mechanism(setting: Setting, group: list[dict], ar_stats: GenerationStats) -> dict:
    stats = pooled_stats(group)
    summary = {
        "alpha": stats.acceptance_rate,
        "tokens_per_target_call": stats.tokens_per_target_call,
        "acceptance_by_position": stats.to_dict()["acceptance_by_position"],
        "fallbacks_per_token": _ratio(stats.fallbacks, stats.new_tokens),
        "rollbacks_per_token": _ratio(stats.rollbacks, stats.new_tokens),
        "proposed_per_call": _ratio(stats.proposed, stats.target_calls),
        "draft_calls_per_target_call": _ratio(stats.draft_calls, stats.target_calls),
        "accepted_by_depth": _accepted_by_depth(group, stats.target_calls),
        "c": None,
        "verify_cost_ratio": None,
        "expected_tokens_per_iteration": None,
        "predicted_speedup": None,
    }
    # The prediction assumes gamma drafts every round: so with a little model (of either tokenizer) or a unigram /
    # bigram draft, not with gamma=auto, nor with n-gram lookups that often propose fewer tokens (or none).
    drafts_gamma = setting.drafter in ("model", *TRIVIAL_DRAFTERS)
    if (
        (setting.engine, setting.method) == ("biglittle", "speculative")
        and drafts_gamma
        and isinstance(setting.gamma, int)
    ):
        # {} when a cost is not measurable
        summary.update(predict_speedup(stats, ar_stats, setting.gamma, per_proposed_token=setting.cross_tokenizer))
    return summary
