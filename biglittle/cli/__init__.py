"""The `biglittle` command line: parse, call the API, print. No decoding logic lives here.

generate.py     generate, profile             setup.py   models, data
experiments.py  bench, tune-bild              align.py   align calib | train | eval
peers.py        peers build | status      serve.py   serve
options.py      options several commands share, built from config.py; format.py: what is printed
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..errors import BigLittleError
from . import align, experiments, generate, peers, serve, setup

DESCRIPTION = """\
biglittle: a little and a big language model generating text together, faster than the big one alone.

  generate   write text with ar (the big model alone), speculative (exact speculative decoding)
             or bild (Big Little Decoder); with no --target it uses the built-in default pair
  models     fetch the default pair (Qwen2.5-Coder 1.5B + 0.5B Instruct) or list what is installed
  data       fetch the real task data (De->En translation, package-description summarization)
  profile    measure a pair's costs on this machine (used by generate --gamma auto)
  tune-bild  choose BiLD's thresholds on a task's dev examples (used by generate --bild-thresholds auto)
  bench      every method on real task data, side by side with transformers' own: tables and plots
  align      fine-tune the little model on the big one's outputs (BiLD's prediction alignment)
  serve      an OpenAI-compatible HTTP server with streaming, metrics and a page showing which model wrote each token
  peers      build the optional llama.cpp peer of the bench (`make peers`)
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        _quiet_libraries()
        return args.handler(args) or 0
    except BigLittleError as error:
        print(f"biglittle: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("biglittle: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug of ours: one line unless the user asks for the traceback
        if os.environ.get("BIGLITTLE_DEBUG"):
            raise
        print(
            f"biglittle: internal error: {type(error).__name__}: {error} (BIGLITTLE_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="biglittle", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(metavar="COMMAND")
    for module in (generate, serve, setup, experiments, align, peers):
        module.add_commands(commands)
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.formatwarning = _one_line_warning  # not Python's file, line number and source line


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"biglittle: warning: {message}\n"
