"""`biglittle bench` and `biglittle tune-bild`: every method on real task data, and BiLD's thresholds chosen on it."""

from __future__ import annotations

import argparse
import sys

from .options import add_model_options, check_measurements_writable, check_out, load_models, resolve, resumable


def add_commands(commands) -> None:
    _add_tune_bild(commands)
    _add_bench(commands)


def _add_tune_bild(commands) -> None:
    from ..bench.options import TUNE_DEFAULTS as DEFAULTS

    p = commands.add_parser(
        "tune-bild",
        help="choose BiLD's thresholds on a task's dev examples, for generate --bild-thresholds auto",
        description="Runs the first N examples of a task's dev split through the big model alone and through BiLD at "
        "every (fallback, rollback) threshold pair of a grid (greedy), scores each pair's output with the task's "
        "metric (BLEU, ROUGE-L) and estimates its speed from the numbers of forward passes and this machine's "
        "cost profile (`biglittle profile`; deterministic, unlike wall time, which is shown beside it). Chooses the "
        "fastest pair whose quality is within --tolerance points of the big model's (none: the pair of highest "
        "quality), prints the table and stores the choice for the pair, precision, device and task; `generate "
        "--method bild --bild-thresholds auto` uses it. Every generation is saved as it ends: rerun the same "
        "command after an interruption to resume. See docs/bild.md.",
    )
    p.add_argument("--task", required=True, help="translation or summarization (never code: HumanEval is a test set)")
    p.add_argument("--n", type=int, help=f"examples: the first N of the task's dev split (default {DEFAULTS['n']})")
    p.add_argument("--max-new-tokens", type=int, help=f"per generation (default {DEFAULTS['max_new_tokens']})")
    p.add_argument(
        "--bild-grid",
        metavar="LIST",
        help="FALLBACK:ROLLBACK threshold pairs to try (default: fallback "
        "0.2, 0.4, 0.6, 0.8 by rollback 0, 2, 3, 5; rollback 0 is exact BiLD); the default 0.6:5 always runs",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        help="points of the task's metric the choice may lose against the big "
        f"model alone (default {DEFAULTS['tolerance']:g}, the BiLD paper's 'about one point')",
    )
    p.add_argument("--data-path", help="a copy of the task's raw source (default: what `biglittle data fetch` got)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where the generations are saved (default: beside the stored choice "
        "under the cache, per task and --max-new-tokens)",
    )
    _add_allow_other_commit(p)
    add_model_options(p.add_argument_group("models"))
    p.set_defaults(handler=_run_tune_bild)


def _run_tune_bild(args) -> int:
    from ..bench.options import tune_options
    from ..bench.threshold_search import format_tuning, records_dir, tune_bild
    from ..data import load_task

    spec, precision = resolve(args, needs_draft=True, command="tune-bild")
    options = tune_options(
        args.task,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        bild_grid=args.bild_grid,
        tolerance=args.tolerance,
        out_dir=args.out,
        precision=precision,
        allow_other_commit=args.allow_other_commit,
    )
    if options.out_dir is not None:
        check_out(options.out_dir)
    check_measurements_writable(args)  # the choice is stored there, and by default the generations
    examples = load_task(options.task, "dev", path=args.data_path, limit=options.bench.n, cache=args.cache_dir)
    pair = load_models(args, spec, precision)
    with resumable(records_dir(pair, options)):
        result = tune_bild(pair, examples, options)
    print(format_tuning(result))
    return 0


def _add_bench(commands) -> None:
    from ..bench.options import DEFAULTS, FAMILIES, describe_max_new_tokens

    p = commands.add_parser(
        "bench",
        help="benchmark every method on real task data: quality, speedup, mechanism; report and plots",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs the first N test examples of a task through every setting on the same loaded pair, one\n"
        "example at a time (every setting, in an order rotated per example, so machine drift hits all alike):\n"
        "ar with the big model (the baseline) and with the little one, speculative decoding over a gamma sweep\n"
        "at temperature 0 and 1 and with --gamma auto, n-gram and hybrid drafting, token trees, BiLD over a\n"
        "threshold grid and with one of its policies only (fallback only, rollback only), unigram and bigram drafts\n"
        "(estimated from each task's train split), transformers' assisted generation and prompt lookup, and, with\n"
        "the built-in pair and `make peers`, llama.cpp's plain, speculative and n-gram decoding. The code task\n"
        "(HumanEval) runs each answer's tests in a sandbox (a separate, isolated, resource-limited process) and\n"
        "scores pass@1. Quality and speedups come with bootstrap intervals. Writes into --out: records.jsonl (every\n"
        "generation, appended as it ends: rerun the same command after an interruption and it resumes),\n"
        "results.json, report.md and PNG plots. See docs/bench.md for how to read them.",
    )
    p.add_argument(
        "--task",
        default="all",
        help="translation, summarization, code (HumanEval), a comma-separated list of them, or all (default all)",
    )
    p.add_argument(
        "--n",
        type=int,
        help=f"examples per task, the first N of the test split (default {DEFAULTS['n'][0]}; "
        f"--quick {DEFAULTS['n'][1]})",
    )
    p.add_argument("--quick", action="store_true", help="few examples and a small grid, minutes on a CPU: a smoke test")
    p.add_argument(
        "--max-new-tokens",
        metavar="N|TASK=N,...",
        help=f"per generation: N for every task, or TASK=N for the tasks named (default {describe_max_new_tokens(0)}; "
        f"--quick {describe_max_new_tokens(1)})",
    )
    p.add_argument(
        "--gammas",
        metavar="LIST",
        help=f"speculative gamma sweep (default {DEFAULTS['gammas'][0]}; --quick {DEFAULTS['gammas'][1]})",
    )
    p.add_argument(
        "--bild-grid",
        metavar="LIST",
        help="BiLD FALLBACK:ROLLBACK threshold pairs (default "
        f"{DEFAULTS['bild_grid'][0]}; --quick {DEFAULTS['bild_grid'][1]}); the default thresholds always run",
    )
    p.add_argument(
        "--families",
        metavar="LIST",
        help=f"run only these of {','.join(FAMILIES)} (default all); "
        "ar with the big model always runs: it is the baseline",
    )
    p.add_argument(
        "--only",
        metavar="PATTERNS",
        help="run only the settings whose report label matches one of these comma-separated patterns (shell "
        "wildcards, e.g. 'speculative γ=auto*,tree auto*,hybrid γ=4'), and the baseline",
    )
    p.add_argument("--repeats", type=int, default=1, help="run every generation R times, for the spread (default 1)")
    p.add_argument(
        "--extra-draft",
        action="append",
        default=[],
        metavar="LABEL=SPEC",
        help="another little model to compare, a path or early-exit:L (repeatable): speculative greedy "
        "over the gamma sweep and BiLD over the threshold grid, labelled LABEL; a model with another "
        "tokenizer drafts through text (speculative at temperature 0 and 1, no BiLD)",
    )
    p.add_argument(
        "--also-precision",
        metavar="LIST",
        help="load the pair again in these precisions (e.g. int4) and run, interleaved with the rest: the big "
        "model alone, ngram γ=auto and speculative γ=auto in each, and its little model drafting for the big "
        "model in --precision's (labels 'int4: …' and 'int4 little: …'); every speedup is over the big model in "
        "--precision's. The little models keep their full vocabulary",
    )
    p.add_argument(
        "--draft-text",
        metavar="FILE",
        help="the text the unigram and bigram drafts are estimated from, one text per line (default: each "
        "task's train split)",
    )
    p.add_argument("--out", default="bench-results", metavar="DIR", help="output folder (default bench-results)")
    _add_allow_other_commit(p)
    add_model_options(p.add_argument_group("models"))
    p.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    import shlex

    from ..bench import resolve_options, run_benchmark
    from ..data import load_task

    spec, precision = resolve(args, needs_draft=True, command="bench")
    options = resolve_options(
        args.task,
        quick=args.quick,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        gammas=args.gammas,
        bild_grid=args.bild_grid,
        families=args.families,
        repeats=args.repeats,
        extra_drafts=args.extra_draft,
        out_dir=args.out,
        precision=precision,
        allow_other_commit=args.allow_other_commit,
        draft_text=args.draft_text,
        only=args.only,
        also_precision=args.also_precision,
        draft_precision=args.draft_precision,
    )
    check_out(options.out_dir)
    examples = {task: load_task(task, "test", limit=options.n, cache=args.cache_dir) for task in options.tasks}
    pair = load_models(args, spec, precision)
    with resumable(options.out_dir):
        run_benchmark(pair, examples, options, command=shlex.join(["biglittle", *sys.argv[1:]]))
    print(f"report: {options.out_dir / 'report.md'}\nresults: {options.out_dir / 'results.json'}")
    return 0


def _add_allow_other_commit(parser) -> None:
    parser.add_argument(
        "--allow-other-commit",
        action="store_true",
        help="resume a run whose generations were made by another commit of biglittle (each record "
        "names its commit); without it such a run is refused",
    )
