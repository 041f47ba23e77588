"""A benchmark's options, from the command line's strings, with the full and the --quick defaults.

Kept free of torch so that the command line's --help stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data import TASKS
from ..errors import BigLittleError

FAMILIES = ("small", "speculative", "ngram", "bild", "peers")  # `ar` with the target always runs: the baseline

# (full run, --quick): examples per task, new tokens, gamma sweep, BiLD (fallback, rollback) grid.
DEFAULTS = {
    "n": (50, 3),
    "max_new_tokens": (64, 32),
    "gammas": ("1,2,4,6", "2,4"),
    "bild_grid": ("0.4:3,0.6:3,0.8:3,0.4:5,0.6:5,0.8:5,0.6:8", "0.6:5,0.4:3"),
}


@dataclass(frozen=True)
class BenchOptions:
    tasks: tuple[str, ...]
    n: int
    max_new_tokens: int
    gammas: tuple[int, ...]
    bild_grid: tuple[tuple[float, float], ...]
    families: tuple[str, ...]
    repeats: int
    extra_drafts: dict[str, str] = field(default_factory=dict)
    out_dir: Path = Path("bench-results")
    precision: str = "fp32"  # as asked for (--precision): extra drafts load with it, a resumed run must match it


def resolve_options(task: str, *, quick: bool = False, n: int | None = None, max_new_tokens: int | None = None,
                    gammas: str | None = None, bild_grid: str | None = None, families: str | None = None,
                    repeats: int = 1, extra_drafts: list[str] = (), out_dir: str = "bench-results",
                    precision: str = "fp32") -> BenchOptions:
    """Options from the command line's strings; what is not given takes the full or the --quick default."""
    if task not in (*TASKS, "all"):
        raise BigLittleError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}, all")
    pick = 1 if quick else 0
    options = BenchOptions(
        tasks=TASKS if task == "all" else (task,),
        n=n if n is not None else DEFAULTS["n"][pick],
        max_new_tokens=max_new_tokens if max_new_tokens is not None else DEFAULTS["max_new_tokens"][pick],
        gammas=parse_gammas(gammas or DEFAULTS["gammas"][pick]),
        bild_grid=parse_bild_grid(bild_grid or DEFAULTS["bild_grid"][pick]),
        families=parse_families(families) if families else FAMILIES,
        repeats=repeats,
        extra_drafts=parse_extra_drafts(extra_drafts),
        out_dir=Path(out_dir),
        precision=precision,
    )
    for name, value in (("n", options.n), ("max-new-tokens", options.max_new_tokens), ("repeats", options.repeats)):
        if value < 1:
            raise BigLittleError(f"--{name} must be at least 1, got {value}")
    return options


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
            raise BigLittleError(f"--bild-grid: {item!r} is not FALLBACK:ROLLBACK (e.g. --bild-grid 0.6:5,0.4:3)") from None
        if not 0 <= fallback <= 1 or rollback < 0:
            raise BigLittleError(f"--bild-grid: {item!r} needs a fallback threshold in [0, 1] and a rollback threshold >= 0")
        grid.append((fallback, rollback))
    return tuple(dict.fromkeys(grid))


def parse_families(text: str) -> tuple[str, ...]:
    families = _items(text, "--families")
    unknown = [family for family in families if family not in FAMILIES]
    if unknown:
        raise BigLittleError(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(families))


def parse_extra_drafts(specs: list[str]) -> dict[str, str]:
    """['exit-8=early-exit:8', 'aligned=/path'] -> {label: spec}."""
    from ..early_exit import parse_layers  # imports torch: only when there is something to check

    drafts = {}
    for text in specs:
        label, _, spec = text.partition("=")
        label, spec = label.strip(), spec.strip()
        if not label or not spec:
            raise BigLittleError(f"--extra-draft {text!r}: write LABEL=SPEC, e.g. exit-8=early-exit:8 or aligned=/path/to/model")
        if label in drafts or label in ("main", "small"):
            raise BigLittleError(f"--extra-draft: the label {label!r} is used twice or reserved; give each draft its own")
        parse_layers(spec)  # a malformed early-exit:L fails here, before any model is loaded
        drafts[label] = spec
    return drafts
