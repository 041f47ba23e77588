"""The benchmark's Markdown report: tables in the shape of the papers' tables, from results.json's content."""

from __future__ import annotations

from .aggregate import BASELINE
from .options import QUALITY_TOLERANCE
from .settings import DEFAULT_THRESHOLDS, LLAMACPP_ENGINES, bild_label

METRIC_NAMES = {"bleu": "BLEU", "rouge_l": "ROUGE-L", "pass_at_1": "pass@1"}
NOT_DISTINGUISHABLE = "≈"
INTERVALS_NOTE = (
    "Brackets after a quality or a speedup: its 95% bootstrap interval (1,000 resamples of the examples, "
    "paired with Vanilla (large)). Δ: the quality minus Vanilla (large)'s on the same examples; "
    f"{NOT_DISTINGUISHABLE}: not distinguishable from it (the interval of the paired difference contains 0)."
)


def render(results: dict, plots: dict[str, list[str]]) -> str:
    """The whole report; `plots` maps each task to its PNG file names (relative to the report)."""
    rows = results["aggregates"]
    lines = _header(results)
    for task in dict.fromkeys(row["task"] for row in rows):
        task_rows = [row for row in rows if row["task"] == task]
        metric = METRIC_NAMES[task_rows[0]["metric"]]
        lines += [f"## {task} ({metric})", ""]
        lines += _lengths_line(task_rows)
        lines += _summary_table(task_rows, metric)
        lines += _verdicts_table(task_rows)
        lines += _speculative_table(task_rows)
        lines += _trees_table(task_rows)
        lines += _trivial_table(task_rows)
        lines += _mechanism_table(task_rows)
        lines += _llamacpp_table(task_rows)
        lines += _all_settings_table(task_rows, metric)
        lines += [f"![{name}]({name})" for name in plots.get(task, [])] + [""]
    return "\n".join(lines)


def _num(value, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _machine_line(machine: dict) -> str:
    cpu = machine.get("cpu") or {}
    flags = " ".join(cpu.get("flags", [])) or "none reported"
    return (
        f"- Machine: {cpu.get('model', machine['processor'])} (ISA flags: {flags}; torch kernels: "
        f"{machine.get('torch_cpu_capability', '?')}), {machine['cpu_count']} CPUs, {machine['torch_threads']} "
        f"torch threads; {machine['platform']}; torch {machine['torch']}, transformers {machine['transformers']}"
    )


def _sandbox_line(guards: dict | None) -> list[str]:
    if not guards:
        return []
    held = [name.replace("_", " ") for name in ("pid_namespace", "net_namespace", "mount_namespace") if guards[name]]
    return [
        f"- Code ran in the sandbox (biglittle.sandbox) as user {guards['user']}, with rlimits and an audit hook"
        + (f", in its own {', '.join(held)}" if held else ", without namespaces (not permitted here)")
    ]


def _header(results: dict) -> list[str]:
    meta = results["metadata"]
    machine = meta["machine"]
    budgets = ", ".join(f"{meta['max_new_tokens'][task]} ({task})" for task in meta["tasks"])
    lines = [
        "# biglittle bench",
        "",
        f"- Pair: target `{meta['target']}`, draft `{meta['draft']}`, precision {meta['precision']}"
        + (f" (the draft's {meta['draft_precision']})" if meta.get("draft_precision") else "")
        + f", device {machine['device']}"
        + (f" ({machine['device_name']})" if machine.get("device_name") else ""),
        f"- Examples: first {meta['examples_per_task']} of each task's test split, {meta['repeats']} repeat(s), "
        f"at most {budgets} new tokens, greedy unless T > 0",
        _machine_line(machine),
        *_sandbox_line(meta.get("sandbox")),
        f"- Commit {meta['commit'] or 'unknown'}, {meta['date']}"
        + (
            f"; generations made by commits {', '.join(meta['record_commits'])}"
            if len(meta.get("record_commits", [])) > 1
            else ""
        ),
        f"- Command: `{meta['command']}`",
        *(
            f"- Also in {other} (--also-precision): rows `{other}: …` with both models in it, compared for "
            f"agreement with `{other}: {BASELINE}`; rows `{other} little: …` with the little model in it drafting "
            f"for the big model in {meta['precision']}. Every speedup is over `{BASELINE}` in {meta['precision']}"
            for other in meta.get("also_precisions", [])
        ),
        *(f"- {peer['status']}" for peer in meta.get("peers", {}).values()),
        *(
            f"- failed: {reason} (its rows hold only the examples before that)"
            for peer in meta.get("peers", {}).values()
            for reason in peer.get("failures", {}).values()
        ),
        "",
    ]
    for name, profile in results["cost_profiles"].items():
        ratios = " ".join(f"{r:.2f}" for r in profile["verify_cost"])
        measured = profile.get("measured_at") or "on an earlier day (the profile kept no date)"
        lines.append(
            f"- Costs ({name} draft; the profile kept for this machine, measured {measured}): "
            f"T(1) = {profile['target_step_s'] * 1000:.1f} ms, "
            f"c = {_num(profile.get('draft_cost'), 3)}, T(k)/T(1) for k = 1..{len(profile['verify_cost'])}: {ratios}"
        )
    return lines + ["", INTERVALS_NOTE, ""]


def _lengths_line(task_rows: list[dict]) -> list[str]:
    """How long prompts and answers are, and how much of the big model's time goes into reading the prompt."""
    baseline = next((row for row in task_rows if row["label"] == BASELINE), None)
    if baseline is None:
        return []
    lengths = baseline["lengths"]
    return [
        f"Prompts average {_num(lengths['prompt_tokens_mean'], 0)} tokens; Vanilla (large)'s answers have "
        f"{lengths['new_tokens_median']:g} new tokens (median; mean {lengths['new_tokens_mean']:.1f}), and reading "
        f"the prompt (prefill) takes {_percent(lengths['prefill_share'])} of its time: the share no decoding "
        "method can shorten.",
        "",
    ]


def _fastest(rows) -> dict | None:
    rows = [row for row in rows if row["speedup"]["total"] is not None]
    return max(rows, key=lambda row: row["speedup"]["total"]) if rows else None


def _degraded(bild_rows: list[dict], baseline: dict | None) -> dict | None:
    """The fastest BiLD setting whose quality is within QUALITY_TOLERANCE points of the big model's."""
    if baseline is None:
        return None
    return _fastest(row for row in bild_rows if row["quality"] >= baseline["quality"] - QUALITY_TOLERANCE)


def summary_rows(task_rows: list[dict]) -> list[tuple[str, dict]]:
    """(row name, aggregate) for the BiLD-style table, in the paper's order."""
    by_label = {row["label"]: row for row in task_rows}
    main = [row for row in task_rows if row["setting"]["model"] == "main"]
    baseline = by_label.get(BASELINE)
    speculative = [row for row in main if row["family"] == "speculative" and row["setting"]["temperature"] == 0]
    ablations = [row for row in main if row["family"] == "ablations"]
    chains = [row for row in main if row["setting"].get("tree") is None]  # a tree has its own row
    picks = [
        ("Vanilla (large)", baseline),
        ("Vanilla (small)", by_label.get("Vanilla (small)")),
        ("BiLD", by_label.get(bild_label(*DEFAULT_THRESHOLDS))),
        ("BiLD (fallback only)", next((row for row in ablations if not row["setting"].get("rollback", True)), None)),
        ("BiLD (rollback only)", next((row for row in ablations if not row["setting"].get("fallback", True)), None)),
        ("BiLD degraded", _degraded([row for row in main if row["family"] == "bild"], baseline)),
        ("HF assisted generation", by_label.get("HF assisted")),
        ("HF prompt lookup", by_label.get("HF prompt lookup")),
        ("Speculative (best)", _fastest(speculative)),
        ("N-gram (best)", _fastest(row for row in chains if row["setting"]["drafter"] == "ngram")),
        ("Hybrid (best)", _fastest(row for row in chains if row["setting"]["drafter"] == "hybrid")),
        (
            "Tree (best)",
            _fastest(row for row in main if row["family"] == "trees" and row["setting"]["temperature"] == 0),
        ),
        ("Unigram (best)", _fastest(row for row in main if row["setting"]["drafter"] == "unigram")),
        ("Bigram (best)", _fastest(row for row in main if row["setting"]["drafter"] == "bigram")),
        ("Best exact (T=0)", _fastest(row for row in main if _exact_greedy(row))),
        *((label, by_label.get(label)) for label, _mode in LLAMACPP_ENGINES.values()),
    ]
    for model in dict.fromkeys(row["setting"]["model"] for row in task_rows if row["family"] == "extra"):
        extra = [row for row in task_rows if row["setting"]["model"] == model]
        picks.append(
            (
                f"{model}: speculative (best)",
                _fastest(row for row in extra if row["setting"]["method"] == "speculative"),
            )
        )
        picks.append((f"BiLD ({model})", by_label.get(bild_label(*DEFAULT_THRESHOLDS, prefix=f"{model}: "))))
        picks.append(
            (
                f"BiLD ({model}) degraded",
                _degraded([row for row in extra if row["setting"]["method"] == "bild"], baseline),
            )
        )
    picks += [(row["label"], row) for row in task_rows if row["family"] == "precision"]
    return [(name, row) for name, row in picks if row is not None]


def _exact_greedy(row: dict) -> bool:
    """A method whose greedy output is the big model's own: speculative decoding with any drafter, chain or tree."""
    return row["setting"]["method"] == "speculative" and row["setting"]["temperature"] == 0


def _spread(speedup: dict) -> str:
    if speedup["median"] is None:
        return "–"
    low, high = speedup["iqr"]
    return f"{speedup['median']:.2f} [{low:.2f}, {high:.2f}]"


def _quality(row: dict) -> str:
    bounds = row["intervals"]["quality"]
    return f"{row['quality']:.1f}" + (f" [{bounds[0]:.1f}, {bounds[1]:.1f}]" if bounds else "")


def _difference(row: dict) -> str:
    """Quality minus the big model's, its interval, and ≈ where the two are not distinguishable."""
    intervals = row["intervals"]
    if row["label"] == BASELINE or intervals["difference"] is None:
        return "–"
    low, high = intervals["difference_interval"]
    mark = f" {NOT_DISTINGUISHABLE}" if not intervals["distinguishable"] else ""
    return f"{intervals['difference']:+.1f} [{low:+.1f}, {high:+.1f}]{mark}"


def _speedup(row: dict) -> str:
    total, bounds = row["speedup"]["total"], row["intervals"]["speedup"]
    if total is None:
        return "–"
    return f"{total:.2f}×" + (f" [{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds and row["label"] != BASELINE else "")


def _summary_table(task_rows: list[dict], metric: str) -> list[str]:
    lines = [
        f"| | setting | {metric} [95% CI] | Δ vs large [95% CI] | exact match | token agreement | "
        "speedup [95% CI] | per example: median [IQR] |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary_rows(task_rows):
        agreement = row["agreement"]
        lines.append(
            f"| {name} | {row['label']} | {_quality(row)} | {_difference(row)} | {_num(agreement['exact_match'])} | "
            f"{_num(agreement['token_agreement'])} | {_speedup(row)} | {_spread(row['speedup'])} |"
        )
    return lines + [""]


def _verdicts_table(task_rows: list[dict]) -> list[str]:
    """The code task: what the sandbox said about each setting's programs."""
    if "verdicts" not in task_rows[0]:
        return []
    lines = [
        "### Tests (each answer's program run once in the sandbox)",
        "",
        "| setting | passed | failed (a test) | timeout | error (exception, syntax, exit) | pass@1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in task_rows:
        counts = row["verdicts"]
        lines.append(
            f"| {row['label']} | {counts['passed']} | {counts['failed']} | {counts['timeout']} | {counts['error']} | "
            f"{row['quality']:.1f} |"
        )
    return lines + [""]


def _speculative_table(task_rows: list[dict]) -> list[str]:
    rows = [row for row in task_rows if row["setting"]["method"] == "speculative"]
    if not rows:
        return []
    lines = [
        "### Speculative decoding",
        "",
        "| draft | γ | temperature | α | tokens / target pass | measured speedup | predicted speedup |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        setting, mech = row["setting"], row["mechanism"]
        draft = setting["drafter"] if setting["drafter"] != "model" else setting["model"]
        draft += " (own tokenizer)" if setting.get("cross_tokenizer") else ""
        lines.append(
            f"| {draft} | {setting['gamma']} | {setting['temperature']:g} | {_num(mech['alpha'])} | "
            f"{_num(mech['tokens_per_target_call'])} | {_num(row['speedup']['total'], suffix='×')} | "
            f"{_num(mech['predicted_speedup'], suffix='×')} |"
        )
    return lines + [""]


def _trees_table(task_rows: list[dict]) -> list[str]:
    """Trees: how many tokens a target pass yields, and which of the drafter's choices the big model took where."""
    rows = [row for row in task_rows if row["setting"].get("tree") is not None]
    if not rows:
        return []
    lines = [
        "### Trees of proposals",
        "",
        "Accepted by depth and rank: the share of rounds whose accepted path reached each depth through the "
        "drafter's first, second, ... choice there (ranks beyond the first are what a tree adds to a chain).",
        "",
        "| setting | tokens / target pass | proposed / pass | little-model passes / target pass | "
        "accepted by depth: rank 1 + others | speedup |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        mech = row["mechanism"]
        depths = " · ".join(f"d{depth} {first:.2f}+{others:.2f}" for depth, first, others in mech["accepted_by_depth"])
        lines.append(
            f"| {row['label']} | {_num(mech['tokens_per_target_call'])} | {_num(mech['proposed_per_call'], 1)} | "
            f"{_num(mech['draft_calls_per_target_call'], 2)} | {depths or '–'} | "
            f"{_num(row['speedup']['total'], suffix='×')} |"
        )
    return lines + [""]


def _trivial_table(task_rows: list[dict]) -> list[str]:
    """Leviathan et al.'s table 3: alpha of drafts that cost nothing, by gamma, at temperature 0 and 1."""
    rows = [row for row in task_rows if row["family"] == "trivial"]
    if not rows:
        return []
    gammas = sorted({row["setting"]["gamma"] for row in rows})
    lines = [
        "### Drafts that cost nothing (Leviathan et al., table 3)",
        "",
        "α by γ; speedups: measured / predicted (the theory with this run's α, c and T(γ+1)/T(1)).",
        "",
        "| draft | T | "
        + " | ".join(f"α γ={gamma}" for gamma in gammas)
        + " | "
        + " | ".join(f"speedup γ={gamma}" for gamma in gammas)
        + " |",
        "|---|---:|" + "---:|" * (2 * len(gammas)),
    ]
    for (drafter, temperature), group in _grouped(rows).items():
        by_gamma = {row["setting"]["gamma"]: row for row in group}
        alphas = [_num(by_gamma[g]["mechanism"]["alpha"]) if g in by_gamma else "–" for g in gammas]
        speedups = [
            f"{_num(by_gamma[g]['speedup']['total'], suffix='×')} / "
            f"{_num(by_gamma[g]['mechanism']['predicted_speedup'], suffix='×')}"
            if g in by_gamma
            else "–"
            for g in gammas
        ]
        lines.append(f"| {drafter} | {temperature:g} | " + " | ".join(alphas + speedups) + " |")
    return lines + [""]


def _grouped(rows: list[dict]) -> dict[tuple[str, float], list[dict]]:
    groups: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["setting"]["drafter"], row["setting"]["temperature"]), []).append(row)
    return groups


def _mechanism_table(task_rows: list[dict]) -> list[str]:
    rows = [row for row in task_rows if row["setting"]["method"] != "ar" and row["setting"]["engine"] == "biglittle"]
    if not rows:
        return []
    lines = [
        "### Mechanism",
        "",
        "| setting | α | tokens / target pass | acceptance by draft position | fallbacks / token | "
        "rollbacks / token | c | T(γ+1)/T(1) |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        mech = row["mechanism"]
        positions = " ".join(f"{rate:.2f}" for rate in mech["acceptance_by_position"][:8]) or "–"
        lines.append(
            f"| {row['label']} | {_num(mech['alpha'])} | {_num(mech['tokens_per_target_call'])} | {positions} | "
            f"{_num(mech['fallbacks_per_token'], 3)} | {_num(mech['rollbacks_per_token'], 3)} | "
            f"{_num(mech['c'], 3)} | {_num(mech['verify_cost_ratio'])} |"
        )
    return lines + [""]


def _llamacpp_table(task_rows: list[dict]) -> list[str]:
    rows = [row for row in task_rows if "llamacpp" in row]
    if not rows:
        return []
    lines = [
        "### llama.cpp",
        "",
        "Its own view: speedups over its plain decoding (by wall time, and by the prompt + generation time its "
        "server reported), agreement with its plain decoding's tokens and with biglittle's `Vanilla (large)`.",
        "",
        "| setting | tokens/s | decode tokens/s (reported) | α | speedup over its plain | (reported) | "
        "exact match with its plain | exact match with Vanilla (large) | speedup over Vanilla (large) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        own = row["llamacpp"]
        lines.append(
            f"| {row['label']} | {_num(row['tokens_per_s'], 1)} | {_num(own['decode_tokens_per_s'], 1)} | "
            f"{_num(row['mechanism']['alpha'])} | {_num(own['speedup_over_plain'], suffix='×')} | "
            f"{_num(own['speedup_over_plain_reported'], suffix='×')} | "
            f"{_num(own['agreement_with_plain']['exact_match'])} | {_num(row['agreement']['exact_match'])} | "
            f"{_num(row['speedup']['total'], suffix='×')} |"
        )
    return lines + [""]


def _all_settings_table(task_rows: list[dict], metric: str) -> list[str]:
    lines = [
        "### All settings",
        "",
        f"| setting | {metric} [95% CI] | Δ vs large [95% CI] | exact match | token agreement | median s / example | "
        "tokens/s | speedup [95% CI] | per example: median [IQR] | per repeat | new tokens: median / mean | "
        "prefill share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in task_rows:
        agreement, speedup, lengths = row["agreement"], row["speedup"], row["lengths"]
        per_repeat = (
            " ".join(f"{value:.2f}" for value in speedup["per_repeat"]) if len(speedup["per_repeat"]) > 1 else "–"
        )
        lines.append(
            f"| {row['label']} | {_quality(row)} | {_difference(row)} | {_num(agreement['exact_match'])} | "
            f"{_num(agreement['token_agreement'])} | {row['median_wall_time_s']:.2f} | "
            f"{_num(row['tokens_per_s'], 1)} | {_speedup(row)} | {_spread(speedup)} | {per_repeat} | "
            f"{lengths['new_tokens_median']:g} / {lengths['new_tokens_mean']:.1f} | "
            f"{_percent(lengths['prefill_share'])} |"
        )
    return lines + [""]
