"""A benchmark's options (and `tune-bild`'s), from the command line's strings, with the full and the --quick defaults.

Kept free of torch so that the command line's --help stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import AUTO, PRECISIONS, TASKS, parse_draft_spec, require_tuning_task
from ..errors import BigLittleError

# `ar` with the target always runs: the baseline. ablations: BiLD with fallback only and rollback only;
# trivial: unigram and bigram drafts. llamacpp runs only with the built-in pair and `make peers`.
FAMILIES = ("small", "speculative", "ngram", "trees", "bild", "ablations", "trivial", "peers", "llamacpp")

# (full run, --quick): examples per task (at least 30, so that bootstrap intervals mean something), gamma
# sweep, BiLD (fallback, rollback) grid.
DEFAULTS = {
    "n": (50, 3),
    "gammas": ("1,2,4,6", "2,4"),
    "bild_grid": ("0.4:3,0.6:3,0.8:3,0.4:5,0.6:5,0.8:5,0.6:8", "0.6:5,0.4:3"),
}
# (full run, --quick) new tokens per task: a translation or a synopsis is a sentence, a function is long.
MAX_NEW_TOKENS = {"translation": (64, 32), "summarization": (64, 32), "code": (512, 128)}


def describe_max_new_tokens(pick: int) -> str:
    """'64 for translation and summarization, 512 for code' (pick 0: full run, 1: --quick)."""
    by_budget: dict[int, list[str]] = {}
    for task, budgets in MAX_NEW_TOKENS.items():
        by_budget.setdefault(budgets[pick], []).append(task)
    return ", ".join(f"{budget} for {' and '.join(tasks)}" for budget, tasks in by_budget.items())


@dataclass(frozen=True)
class BenchOptions:
    tasks: tuple[str, ...]
    n: int
    max_new_tokens: dict[str, int]  # per task (every task, so that a run's fingerprint does not depend on --task)
    gammas: tuple[int, ...]
    bild_grid: tuple[tuple[float, float], ...]
    families: tuple[str, ...]
    repeats: int
    extra_drafts: dict[str, str] = field(default_factory=dict)
    out_dir: Path = Path("bench-results")
    precision: str = "fp32"  # as asked for (--precision): extra drafts load with it, a resumed run must match it
    allow_other_commit: bool = False  # a resumed run may add to records of another commit of the code
    draft_text: str | None = None  # unigram / bigram drafts: a text file; None: each task's train split
    only: tuple[str, ...] = ()  # label patterns (fnmatch): run only the settings they match, and the baseline
    also_precisions: tuple[str, ...] = ()  # the pair again in each of these precisions (--also-precision)
    draft_precision: str | None = None  # the little model's, where it is not `precision` (--draft-precision)


def resolve_options(
    task: str,
    *,
    quick: bool = False,
    n: int | None = None,
    max_new_tokens: str | int | None = None,
    gammas: str | None = None,
    bild_grid: str | None = None,
    families: str | None = None,
    repeats: int = 1,
    extra_drafts: list[str] = (),
    out_dir: str = "bench-results",
    precision: str = "fp32",
    allow_other_commit: bool = False,
    draft_text: str | None = None,
    only: str | None = None,
    also_precision: str | None = None,
    draft_precision: str | None = None,
) -> BenchOptions:
    """Options from the command line's strings; what is not given takes the full or the --quick default."""
    tasks = TASKS if task == "all" else tuple(dict.fromkeys(_items(task, "--task")))
    for name in tasks:
        if name not in TASKS:
            raise BigLittleError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, all (or a list)")
    pick = 1 if quick else 0
    options = BenchOptions(
        tasks=tasks,
        n=n if n is not None else DEFAULTS["n"][pick],
        max_new_tokens={
            **{name: budgets[pick] for name, budgets in MAX_NEW_TOKENS.items()},
            **parse_max_new_tokens("" if max_new_tokens is None else str(max_new_tokens)),
        },
        gammas=parse_gammas(gammas or DEFAULTS["gammas"][pick]),
        bild_grid=parse_bild_grid(bild_grid or DEFAULTS["bild_grid"][pick]),
        families=parse_families(families) if families else FAMILIES,
        repeats=repeats,
        extra_drafts=parse_extra_drafts(extra_drafts),
        out_dir=Path(out_dir),
        precision=precision,
        allow_other_commit=allow_other_commit,
        draft_text=str(Path(draft_text).expanduser().resolve()) if draft_text else None,
        only=_items(only, "--only") if only else (),
        also_precisions=parse_also_precisions(also_precision, precision) if also_precision else (),
        draft_precision=draft_precision if draft_precision != precision else None,
    )
    if options.draft_text and not Path(options.draft_text).is_file():
        raise BigLittleError(f"--draft-text {draft_text}: no such file (leave it out to use each task's train split)")
    budget = min(options.max_new_tokens.values())
    for name, value in (("n", options.n), ("max-new-tokens", budget), ("repeats", options.repeats)):
        if value < 1:
            raise BigLittleError(f"--{name} must be at least 1, got {value}")
    return options


# Rollback 0 is exact BiLD (every little token the big model would not have chosen is replaced);
# fallbacks down to 0.2 because on a CPU the little model must write most tokens for BiLD to pay.
TUNE_GRID = ",".join(f"{fallback}:{rollback}" for rollback in (0, 2, 3, 5) for fallback in (0.2, 0.4, 0.6, 0.8))
# "BiLD degraded" in the report and tune-bild's default: within this many points of the big model's quality
# (the BiLD paper's "about one point").
QUALITY_TOLERANCE = 1.0
TUNE_DEFAULTS = {"n": 30, "max_new_tokens": 64, "tolerance": QUALITY_TOLERANCE}


@dataclass(frozen=True)
class TuneOptions:
    bench: BenchOptions  # one task, the first n dev examples, the grid, the token budget, the precision
    tolerance: float  # points of the task's metric below the big model's that a choice may lose
    out_dir: Path | None = None  # the records; None: beside the stored choice, per task and token budget

    @property
    def task(self) -> str:
        return self.bench.tasks[0]


def tune_options(
    task: str,
    *,
    n: int | None = None,
    max_new_tokens: int | None = None,
    bild_grid: str | None = None,
    tolerance: float | None = None,
    out_dir: str | None = None,
    precision: str = "fp32",
    allow_other_commit: bool = False,
) -> TuneOptions:
    """Options from the command line's strings, checked before any model is loaded."""
    if task == "all" or "," in task:
        raise BigLittleError("tune-bild tunes one task at a time: --task translation or --task summarization")
    require_tuning_task(task, "tune-bild")
    tolerance = TUNE_DEFAULTS["tolerance"] if tolerance is None else tolerance
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise BigLittleError(f"--tolerance must be >= 0 (points of the task's metric), got {tolerance}")
    bench = resolve_options(
        task,
        n=TUNE_DEFAULTS["n"] if n is None else n,
        bild_grid=bild_grid or TUNE_GRID,
        max_new_tokens=TUNE_DEFAULTS["max_new_tokens"] if max_new_tokens is None else max_new_tokens,
        families="bild",
        precision=precision,
        allow_other_commit=allow_other_commit,
    )
    return TuneOptions(bench, tolerance, Path(out_dir).expanduser() if out_dir else None)


def _items(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise BigLittleError(f"{flag} {text!r}: write a comma-separated list without empty entries")
    return items


def parse_gammas(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4)."""
    gammas = []
    for item in _items(text, "--gammas"):
        if not item.isdigit() or int(item) < 1:
            raise BigLittleError(f"--gammas: {item!r} is not a whole number of at least 1 (e.g. --gammas 1,2,4)")
        gammas.append(int(item))
    return tuple(dict.fromkeys(gammas))


def parse_bild_grid(text: str) -> tuple[tuple[float, float], ...]:
    """'0.6:5,0.4:3' -> ((0.6, 5.0), (0.4, 3.0)): (fallback threshold, rollback threshold) pairs."""
    grid = []
    for item in _items(text, "--bild-grid"):
        try:
            fallback, rollback = (float(part) for part in item.split(":"))
        except ValueError:
            raise BigLittleError(
                f"--bild-grid: {item!r} is not FALLBACK:ROLLBACK (e.g. --bild-grid 0.6:5,0.4:3)"
            ) from None
        if not 0 <= fallback <= 1 or rollback < 0:
            raise BigLittleError(
                f"--bild-grid: {item!r} needs a fallback threshold in [0, 1] and a rollback threshold >= 0"
            )
        grid.append((fallback, rollback))
    return tuple(dict.fromkeys(grid))


def parse_max_new_tokens(text: str) -> dict[str, int]:
    """'256' (every task) or 'code=256,translation=48' (those tasks) -> {task: new tokens}."""
    budgets: dict[str, int] = {}
    for item in _items(text, "--max-new-tokens") if text else ():
        task, equals, value = item.rpartition("=")
        tasks = [task.strip()] if equals else list(MAX_NEW_TOKENS)
        if equals and tasks[0] not in MAX_NEW_TOKENS:
            raise BigLittleError(f"--max-new-tokens: unknown task {tasks[0]!r}; choose from {', '.join(TASKS)}")
        try:
            budget = int(value)
        except ValueError:
            raise BigLittleError(f"--max-new-tokens: {item!r} is not N or TASK=N") from None
        budgets.update(dict.fromkeys(tasks, budget))
    return budgets


def parse_families(text: str) -> tuple[str, ...]:
    families = _items(text, "--families")
    unknown = [family for family in families if family not in FAMILIES]
    if unknown:
        raise BigLittleError(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(families))


def parse_also_precisions(text: str, precision: str) -> tuple[str, ...]:
    """'int4' or 'int4,fp32' -> the precisions to load the pair in besides `precision` (--precision's)."""
    chosen = tuple(dict.fromkeys(_items(text, "--also-precision")))
    for name in chosen:
        if name not in PRECISIONS or name == AUTO:
            choices = ", ".join(p for p in PRECISIONS if p != AUTO)
            raise BigLittleError(f"--also-precision: unknown precision {name!r}; choose from {choices}")
        if name == precision:
            raise BigLittleError(f"--also-precision {name}: that is --precision's already; name another")
    return chosen


def parse_extra_drafts(specs: list[str]) -> dict[str, str]:
    """['exit-8=early-exit:8', 'aligned=/path'] -> {label: spec}."""
    drafts = {}
    for text in specs:
        label, _, spec = text.partition("=")
        label, spec = label.strip(), spec.strip()
        if not label or not spec:
            raise BigLittleError(
                f"--extra-draft {text!r}: write LABEL=SPEC, e.g. exit-8=early-exit:8 or aligned=/path/to/model"
            )
        if label in drafts or label in ("main", "small"):
            raise BigLittleError(
                f"--extra-draft: the label {label!r} is used twice or reserved; give each draft its own"
            )
        parse_draft_spec(spec)  # a malformed early-exit:L fails here, before any model is loaded
        drafts[label] = spec
    return drafts
