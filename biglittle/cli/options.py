"""Options several commands share, built from config.py (the one source of settings), and their resolution."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from dataclasses import MISSING, fields

from ..config import AUTO, PRECISIONS, VOCAB_RANKINGS, GenerationConfig, default_precision
from ..errors import BigLittleError
from ..files import CACHE_REMEDY, check_writable, profiles_dir

_SETTINGS = {f.name: f for f in fields(GenerationConfig)}
CACHE_HELP = "the cache root: models, data, measurements (default $BIGLITTLE_CACHE or ~/.cache/biglittle)"


def add_setting(group, name: str, **overrides) -> None:
    """--NAME for the GenerationConfig field NAME: its help, choices, type and default come from config.py."""
    setting = _SETTINGS[name]
    default = setting.default if setting.default is not MISSING else None
    kwargs = {"help": setting.metadata["help"], "default": default}
    if "choices" in setting.metadata:
        kwargs["choices"] = setting.metadata["choices"]
    elif isinstance(default, (int, float)) and not isinstance(default, bool):
        kwargs["type"] = type(default)
    kwargs.update(overrides)
    if kwargs["default"] is not None and "(default" not in kwargs["help"]:
        kwargs["help"] += " (default %(default)s)"
    group.add_argument("--" + name.replace("_", "-"), **kwargs)


def add_model_options(parser, *, precisions=PRECISIONS, precision_default: str | None = None) -> None:
    """--target, --draft, --draft-vocab, --precision, --draft-precision, --device, --cache-dir: which pair to load,
    and how."""
    parser.add_argument(
        "--target", help="big model: hub id, local directory or .gguf file (default: the built-in pair)"
    )
    parser.add_argument(
        "--draft",
        help="little model for speculative / bild, sharing the target's tokenizer; "
        "early-exit:L makes it from the target's own first L layers (no second model; with a Llama "
        "or Qwen2 target it also shares the target's KV cache and work)",
    )
    parser.add_argument(
        "--draft-vocab",
        type=int,
        metavar="K",
        help="let the little model score only the K most frequent tokens (a cheaper output layer; "
        "speculative decoding stays exact); default: the full vocabulary",
    )
    parser.add_argument(
        "--draft-vocab-ranking",
        choices=VOCAB_RANKINGS,
        default="corpus",
        help="--draft-vocab: corpus = the most frequent tokens in Python's standard library and the task data "
        "(counted once per tokenizer and kept); ids = the lowest ids, the tokenizer's merge order (default corpus)",
    )
    add_loading_options(parser, precisions=precisions, precision_default=precision_default)
    parser.add_argument(
        "--draft-precision",
        choices=precisions,
        help="numbers the little model computes with, if not --precision's (e.g. int4 beside an int8 big model: "
        "every matrix 4-bit, a cheaper step); the output stays the big model's, only the little model's "
        "acceptance changes",
    )


def add_loading_options(parser, *, precisions=PRECISIONS, precision_default: str | None = None) -> None:
    """--precision, --device, --cache-dir."""
    default = (
        "default: auto for the built-in pair, else fp32"
        if precision_default is None
        else f"default {precision_default}"
    )
    parser.add_argument(
        "--precision",
        choices=precisions,
        default=precision_default,
        help=f"numbers the models compute with ({default}); int8 (CPU): int8 weights and activations, "
        "each token scored alone so speculative decoding stays exact; int4 (CPU): 4-bit weights (a GGUF's own "
        "Q4_K blocks where it has them) and bf16 activations, exact in the same way; auto: the fastest here, "
        "measured on one of each model's layers (bf16 or fp16 on a GPU)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--cache-dir", help=CACHE_HELP)


def count_or_auto(text: str):
    if text == AUTO:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


def resolve(args, *, needs_draft: bool = False, command: str = ""):
    """(PairSpec, precision) of the models named on the command line, or of the built-in pair."""
    from ..api import resolve_pair

    spec = resolve_pair(args.target, getattr(args, "draft", None), args.cache_dir)
    if needs_draft and spec.draft is None:
        raise BigLittleError(f"{command} runs a big and a little model: pass --draft as well as --target")
    return spec, args.precision or default_precision(spec.builtin)


def load_models(args, spec, precision: str, with_draft: bool = True):
    """The pair the model options name (`spec`, `precision`: `resolve`'s); the target alone without `with_draft`."""
    from ..api import load_pair

    return load_pair(
        spec.target,
        spec.draft if with_draft else None,
        dtype=precision,
        draft_dtype=args.draft_precision,
        device=args.device,
        draft_vocab=args.draft_vocab,
        draft_vocab_ranking=args.draft_vocab_ranking,
        cache=args.cache_dir,
        builtin=spec.builtin,
        cross_tokenizer=getattr(args, "cross_tokenizer", False),  # generate's option only
    )


def check_out(path) -> None:
    """Refuse an --out that cannot be written, before any model loads."""
    check_writable(path, "give --out a directory you can write to")


def check_measurements_writable(args) -> None:
    """Refuse a cache that cannot keep this machine's measurements, before any model loads or is measured."""
    check_writable(profiles_dir(args.cache_dir), CACHE_REMEDY)


@contextmanager
def resumable(out_dir):
    """On Ctrl-C, say where the finished work is kept and how to resume."""
    try:
        yield
    except KeyboardInterrupt:
        print(
            f"biglittle: the finished generations are kept in {out_dir}; run the same command to resume",
            file=sys.stderr,
        )
        raise
