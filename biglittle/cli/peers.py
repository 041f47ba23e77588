"""`biglittle peers`: the optional engines the bench compares with (llama.cpp), built and checked here."""

from __future__ import annotations

from .options import CACHE_HELP


def add_commands(commands) -> None:
    p = commands.add_parser(
        "peers",
        help="build or check the optional llama.cpp peer of the bench",
        description="llama.cpp, what a CPU user would run instead, built from its source package on PyPI for this "
        "CPU's instruction sets (never AMX) and checked on the 0.5B model. `make peers` runs `biglittle models fetch "
        "--keep-gguf` and then `biglittle peers build`. See docs/bench.md.",
    )
    sub = p.add_subparsers(metavar="ACTION")
    build = sub.add_parser(
        "build",
        help="download llama.cpp's sources from PyPI and build its tools (2 jobs, several minutes); safe to rerun",
    )
    build.add_argument("--force", action="store_true", help="build again even if a finished build suits this CPU")
    build.add_argument("--cache-dir", help=CACHE_HELP)
    build.set_defaults(handler=_run_build)
    status = sub.add_parser("status", help="say whether the llama.cpp peer is installed and can run here")
    status.add_argument("--cache-dir", help=CACHE_HELP)
    status.set_defaults(handler=_run_status)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _run_build(args) -> int:
    from ..peers.llamacpp_build import build_llamacpp
    from ..runtime.fetch import gguf_path

    built = build_llamacpp(args.cache_dir, smoke_model=gguf_path("draft", args.cache_dir), force=args.force)
    print(f"llama.cpp: {built.summary}\ntools: {built.bin_dir}")
    return 0


def _run_status(args) -> int:
    from ..peers.llamacpp_build import find_build
    from ..runtime.fetch import gguf_path

    built = find_build(args.cache_dir)
    for role in ("target", "draft"):
        gguf_path(role, args.cache_dir)
    print(f"llama.cpp: installed, {built.summary}\ntools: {built.bin_dir}")
    return 0
