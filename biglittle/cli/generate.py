"""`biglittle generate` and `biglittle profile`: parse, call the API, print."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from ..config import (
    AUTO,
    SPECULATION_SHAPE,
    GenerationConfig,
    choose_method,
    generation_defaults,
    with_builtin_speculation,
)
from ..errors import BigLittleError
from .options import add_model_options, add_setting, check_measurements_writable, count_or_auto, load_models, resolve


def add_commands(commands) -> None:
    _add_generate(commands)
    _add_profile(commands)


def _add_generate(commands) -> None:
    p = commands.add_parser(
        "generate",
        help="generate text from a prompt",
        description="Generate text from PROMPT. Prints the text, then the generation's statistics "
        "(or one JSON object with --json). Without --target the default pair is used "
        "(`biglittle models fetch` installs it).",
    )
    p.add_argument("prompt", metavar="PROMPT", help="the prompt text; '-' reads it from standard input")
    models = p.add_argument_group("models")
    add_model_options(models)
    models.add_argument(
        "--cross-tokenizer",
        action="store_true",
        help="accept a --draft with another tokenizer: its tokens reach the target through text "
        "(speculative decoding only, still exact)",
    )
    method = p.add_argument_group("method")
    add_setting(method, "method", default=None, help=_SETTING_HELP["method"])
    add_setting(method, "gamma", type=count_or_auto, default=None, help=_SETTING_HELP["gamma"])
    add_setting(method, "drafter", default=None, help=_SETTING_HELP["drafter"])
    add_setting(method, "max_ngram")
    add_setting(method, "draft_text", metavar="TASK|FILE")
    add_setting(method, "draft_smoothing", metavar="K")
    add_setting(method, "tree", type=count_or_auto, metavar="N|auto")
    for name in ("tree_depth", "tree_width", "fallback_threshold", "rollback_threshold"):
        add_setting(method, name)
    add_setting(method, "max_little_steps", help="bild: hand over after this many little tokens in a row; 0 = never")
    for name in ("fallback", "rollback"):
        add_setting(method, name, action=argparse.BooleanOptionalAction)
    add_setting(method, "bild_thresholds", metavar="auto[:TASK]", help=_SETTING_HELP["bild_thresholds"])
    sampling = p.add_argument_group("sampling and stopping")
    for name in ("temperature", "top_k", "top_p", "max_new_tokens"):
        add_setting(sampling, name)
    add_setting(sampling, "seed", type=int)
    add_setting(
        sampling, "stop", action="append", default=[], metavar="TEXT", help="stop once TEXT is written (repeatable)"
    )
    add_setting(
        sampling,
        "chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="wrap the prompt in the tokenizer's chat template (default: on for the built-in instruct pair)",
    )
    output = p.add_argument_group("output")
    output.add_argument("--json", action="store_true", help='print one JSON object {"text", "token_ids", "stats"}')
    output.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print the text as each round writes it (default: on when standard output is a terminal; "
        "never with --json, which prints one object at the end)",
    )
    output.add_argument(
        "--compare-ar",
        action="store_true",
        help="also run ar on the same prompt and print the measured and the predicted speedup",
    )
    p.set_defaults(handler=_run_generate)


_FIELD_HELP = {
    name: GenerationConfig.__dataclass_fields__[name].metadata["help"]
    for name in ("method", "gamma", "drafter", "bild_thresholds")
}
_SETTING_HELP = {
    "method": _FIELD_HELP["method"] + " (default: speculative when there is a draft, else ar)",
    "gamma": _FIELD_HELP["gamma"] + " (default: auto for the built-in pair, else 4; with --drafter ngram, auto "
    "sizes each proposal by the match that found it)",
    "drafter": _FIELD_HELP["drafter"] + " (default model; the built-in pair, when none of --method, --gamma, "
    "--tree, --drafter is given: --drafter ngram --gamma auto, the fastest exact configuration measured on a CPU)",
    "bild_thresholds": _FIELD_HELP["bild_thresholds"] + "; implies --method bild",
}


# Settings the command line passes on unchanged (the others have command-line defaults of their own).
GIVEN_AS_IS = (
    "max_ngram",
    "draft_text",
    "draft_smoothing",
    "tree",
    "tree_depth",
    "tree_width",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "max_new_tokens",
    "fallback_threshold",
    "rollback_threshold",
    "fallback",
    "rollback",
    "bild_thresholds",
)


def generation_config(args, builtin: bool, has_draft: bool, builtin_draft: bool = True) -> GenerationConfig:
    """The command line's settings over the pair's defaults (the built-in pair's: chat template, gamma auto, and
    lookup drafting where no setting of its shape is named and its own little model is the draft)."""
    defaults = generation_defaults(builtin)
    drafter = args.drafter or defaults.drafter
    method = choose_method(args.method, has_draft=has_draft, drafter=drafter, bild_thresholds=args.bild_thresholds)
    given = {name: getattr(args, name) for name in GIVEN_AS_IS}
    config = replace(
        defaults,
        method=method,
        **given,
        drafter=drafter,
        gamma=args.gamma if args.gamma is not None else defaults.gamma,
        max_little_steps=args.max_little_steps or None,
        stop=tuple(args.stop),
        chat=args.chat if args.chat is not None else defaults.chat,
    )
    named = [name for name in SPECULATION_SHAPE if getattr(args, name) is not None]
    return with_builtin_speculation(config, named, builtin and builtin_draft)


def _run_generate(args) -> int:
    from tqdm.auto import tqdm

    from ..cost.prediction import compare_with_ar
    from .format import format_stats

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if args.json and args.stream:
        raise BigLittleError("--json prints one object at the end; it cannot be combined with --stream")
    stream = not args.json and (args.stream if args.stream is not None else sys.stdout.isatty())
    spec, precision = resolve(args)
    # A draft named by the user (an early exit of the built-in target) is there to be used: no lookup default.
    config = generation_config(args, spec.builtin, has_draft=spec.draft is not None, builtin_draft=args.draft is None)
    config.validate()  # before the slow model loading
    pair = load_models(args, spec, precision, with_draft=config.needs_draft_model)
    if config.method == "speculative" and AUTO in (config.gamma, config.tree):  # once per machine, with a bar
        pair.cost_profile_with_bar("measuring this machine's costs (once)", leave=False)
    if stream:
        result = _print_as_written(pair.stream(prompt, config))
    else:  # a token counter on a terminal's stderr (tqdm stays silent when stderr is not a terminal)
        with tqdm(total=config.max_new_tokens, desc=config.method, unit="tok", leave=False, disable=None) as bar:
            result = pair.generate(prompt, config, on_commit=lambda commit: bar.update(commit.total - bar.n))
    comparison = compare_with_ar(pair, prompt, config, result) if args.compare_ar else None
    if args.json:
        record = result.to_dict()
        if comparison is not None:
            record["compare_ar"] = comparison
        print(json.dumps(record))
        return 0
    if not stream:
        print(result.text)
    print(format_stats(result.stats, comparison), file=sys.stderr)
    return 0


def _print_as_written(chunks):
    """Print each chunk's text as it comes, then a newline; the generation's result."""
    for chunk in chunks:
        print(chunk.text, end="", flush=True)
        result = chunk.result
    print()
    return result


def _add_profile(commands) -> None:
    p = commands.add_parser(
        "profile",
        help="measure a pair's costs on this machine (for --gamma auto)",
        description="Measures T(k)/T(1), the target's cost of scoring k tokens in one pass, and c, "
        "the draft's cost per token relative to the target's, and stores them per machine, model "
        "and precision; `generate --gamma auto` uses them. With --draft early-exit:L on a Llama or "
        "Qwen2 target, which shares the target's KV cache, also T(k) of a pass after the draft has "
        "run its tokens through the shared layers (target reuse).",
    )
    add_model_options(p)
    p.set_defaults(handler=_run_profile)


def _run_profile(args) -> int:
    from .format import format_profile

    spec, precision = resolve(args)
    check_measurements_writable(args)
    pair = load_models(args, spec, precision)
    has_draft = spec.draft is not None
    profile = pair.cost_profile_with_bar("measuring T(k)", refresh=True, disable=False)
    print(format_profile(profile, has_draft))
    return 0
