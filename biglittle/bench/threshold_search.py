"""`biglittle tune-bild`: BiLD's thresholds chosen on a task's dev examples, and stored for the pair.

The big model alone and BiLD at every (fallback, rollback) pair of a grid run on the first N dev
examples through the bench's interleaved, resumable loop (records.jsonl: rerun the same command to
resume). Each pair's quality is the task's metric against the references, its speed the expected
cost of its forward passes under the pair's cost profile (cost/bild_thresholds.expected_cost) plus
its prefills as measured (prefill_steps), shown beside the measured wall-time ratio. The fastest pair
within `tolerance` points of the big model's quality is stored per machine, pair, precision and task,
where `generate --bild-thresholds auto` finds it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

from ..api import GenerationConfig, ModelPair
from ..cost.bild_thresholds import Candidate, choose, expected_cost, store_choice
from ..cost.profile import CostProfile
from ..data import Example, build_prompt
from ..errors import BigLittleError
from ..runtime.quantize import precision_of
from .aggregate import BASELINE, aggregate
from .harness import code_version, fingerprint
from .options import TuneOptions
from .report import METRIC_NAMES
from .run import Executor, plan_jobs, prompt_encoder, run_jobs
from .settings import Setting, build_settings
from .store import RecordStore


def records_dir(pair: ModelPair, options: TuneOptions) -> Path:
    if options.out_dir is not None:
        return options.out_dir
    path = pair.thresholds_path()
    return path.with_name(f"{path.stem}-{options.task}-{options.bench.max_new_tokens[options.task]}tok")


def tune_bild(
    pair: ModelPair,
    examples: list[Example],
    options: TuneOptions,
    *,
    prompt_builder: Callable = build_prompt,
    on_record: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> dict:
    """Runs (or resumes) the grid on `examples`, stores the choice and returns the evaluation (see `evaluate`)."""
    if pair.draft is None:
        raise BigLittleError("tune-bild runs a big and a little model: pass --draft as well as --target")
    if not examples:
        raise BigLittleError(f"no {options.task} dev examples to tune on")
    # Measured on first use (minutes for real models on a CPU); read back from disk after that.
    profile = pair.cost_profile_with_bar("cost profile", leave=False, disable=not progress)
    settings = build_settings(options.bench)
    out_dir = records_dir(pair, options)
    commit = code_version()
    store = RecordStore(
        out_dir,
        fingerprint(pair, replace(options.bench, precision=precision_of(pair.target.model)), commit),
        options.bench.allow_other_commit,
    )
    jobs = plan_jobs({options.task: examples}, settings, repeats=1)
    run_jobs(
        jobs,
        Executor({"main": pair}, options.bench.max_new_tokens),
        store,
        prompt_encoder(pair, prompt_builder),
        on_record,
        progress,
        desc="tune-bild",
        commit=commit,
    )
    result = evaluate(options.task, [store.records[job.key] for job in jobs], settings, profile, options.tolerance)
    result["records"] = str(out_dir)
    path = pair.thresholds_path()
    store_choice(path, options.task, stored_entry(result, options))
    return {**result, "path": str(path)}


def stored_entry(result: dict, options: TuneOptions) -> dict:
    """The choice as kept on disk: the thresholds, how they were chosen, and the whole table."""
    return {
        **result["choice"],
        "within_tolerance": result["within_tolerance"],
        "metric": result["metric"],
        "baseline_quality": result["baseline_quality"],
        "tolerance": options.tolerance,
        "examples": result["examples"],
        "max_new_tokens": options.bench.max_new_tokens[options.task],
        "max_little_steps": GenerationConfig.max_little_steps,
        "records": result["records"],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "candidates": result["candidates"],
    }


def evaluate(task: str, records: list[dict], settings: list[Setting], profile: CostProfile, tolerance: float) -> dict:
    """Quality and speed of every threshold pair against the big model alone, and the choice among them."""
    rows = {row["label"]: row for row in aggregate(records, settings)}
    prefills = prefill_steps(records)
    costs = defaultdict(float)
    for record in records:
        costs[record["setting"]["label"]] += record_cost(record, profile, prefills[record["example_id"]])
    bild = sorted(
        (s for s in settings if s.method == "bild"), key=lambda s: (s.rollback_threshold, s.fallback_threshold)
    )
    candidates = [_candidate(setting, rows[setting.label], costs[BASELINE], costs[setting.label]) for setting in bild]
    baseline = rows[BASELINE]
    choice, within = choose(candidates, baseline["quality"], tolerance)
    return {
        "task": task,
        "metric": baseline["metric"],
        "examples": baseline["examples"],
        "baseline_quality": baseline["quality"],
        "tolerance": tolerance,
        "within_tolerance": within,
        "choice": asdict(choice),
        "candidates": [asdict(candidate) for candidate in candidates],
    }


def prefill_steps(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Per example: (the big model's, the little model's) reading of the prompt, in big-model steps.

    A prompt of 70-200 tokens is far beyond the profile's 16-token curve, so the prefills come
    from the runs themselves: each prefill's time over the big model's median one-token step in
    the same example's plain run (so a uniformly busy machine cancels out), the median over every
    setting, which all read the same prompt.
    """
    by_example = defaultdict(list)
    for record in records:
        by_example[record["example_id"]].append(record)
    prefills = {}
    for example, rows in by_example.items():
        plain = next(r for r in rows if r["setting"]["label"] == BASELINE)
        step = (
            median(seconds for fed, seconds in plain["target_call_log"][1:] if fed == 1)
            if len(plain["target_call_log"]) > 1
            else None
        )
        if not step:
            prefills[example] = (0.0, 0.0)  # a one-token answer: no step to measure against
            continue
        big = median(r["target_call_log"][0][1] for r in rows) / step
        little_runs = [r["draft_call_log"][0][1] for r in rows if r["draft_call_log"]]
        prefills[example] = (big, median(little_runs) / step if little_runs else 0.0)
    return prefills


def record_cost(record: dict, profile: CostProfile, prefills: tuple[float, float]) -> float:
    """A generation's expected cost in big-model steps: its prefills as measured, then its other forward passes."""
    big_prefill, little_prefill = prefills
    target_passes = [fed for fed, _ in record["target_call_log"]]
    draft_passes = [fed for fed, _ in record["draft_call_log"]]
    return (
        big_prefill
        + (little_prefill if draft_passes else 0.0)
        + expected_cost(target_passes[1:], draft_passes[1:], profile)
    )


def _candidate(setting: Setting, row: dict, baseline_cost: float, cost: float) -> Candidate:
    return Candidate(
        setting.fallback_threshold,
        setting.rollback_threshold,
        row["quality"],
        expected_speedup=baseline_cost / cost if cost else None,
        measured_speedup=row["speedup"]["total"],
        fallbacks_per_token=row["mechanism"]["fallbacks_per_token"],
        rollbacks_per_token=row["mechanism"]["rollbacks_per_token"],
    )


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def format_tuning(result: dict) -> str:
    """The grid as a table, the choice marked, and what to do with it."""
    metric = METRIC_NAMES[result["metric"]]
    baseline = result["baseline_quality"]
    lines = [
        f"BiLD thresholds for {result['task']} on {result['examples']} dev examples: the big model alone scores "
        f"{metric} {baseline:.1f}; tolerance {result['tolerance']:g} point(s)",
        f"  {'fallback':>8} {'rollback':>8} {metric:>8} {'vs big':>7} {'expected':>9} {'measured':>9} "
        f"{'fallbacks/tok':>13} {'rollbacks/tok':>13}",
    ]
    choice = result["choice"]
    for c in result["candidates"]:
        mark = "*" if c == choice else " "
        lines.append(
            f"{mark} {c['fallback_threshold']:>8g} {c['rollback_threshold']:>8g} {c['quality']:>8.1f} "
            f"{c['quality'] - baseline:>+7.1f} {_times(c['expected_speedup']):>9} "
            f"{_times(c['measured_speedup']):>9} {_rate(c['fallbacks_per_token']):>13} "
            f"{_rate(c['rollbacks_per_token']):>13}"
        )
    lines.append(
        "  expected: the big model alone's cost over the pair's, from their forward passes (this machine's "
        "cost profile) and their prefills as measured; measured: the same ratio of wall times"
    )
    if not result["within_tolerance"]:
        lines.append(
            f"no pair is within {result['tolerance']:g} point(s) of the big model: chose the one of highest {metric}"
        )
    lines.append(
        f"chosen (*): --fallback-threshold {choice['fallback_threshold']:g} --rollback-threshold "
        f"{choice['rollback_threshold']:g}, stored in {result['path']}; use it with "
        f"`biglittle generate --method bild --bild-thresholds auto:{result['task']}`"
    )
    if choice["expected_speedup"] is not None and choice["expected_speedup"] < 1:
        lines.append(
            f"note: it is expected to be slower than the big model alone on this machine "
            f"({_times(choice['expected_speedup'])}): --method ar is faster here"
        )
    return "\n".join(lines)
