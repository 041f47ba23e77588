"""`biglittle align`: calibration data from the big model, the little model fine-tuned on it, before vs after."""

from __future__ import annotations

import json

from ..config import SPLITS, TASKS, TRAINABLE_PRECISIONS, parse_draft_spec
from ..errors import BigLittleError
from .options import add_loading_options, check_out


def add_commands(commands) -> None:
    _add_align(commands)


def _add_align(commands) -> None:
    p = commands.add_parser(
        "align",
        help="fine-tune the little model on the big one's outputs (BiLD's prediction alignment)",
        description="Prediction alignment (BiLD): make calibration data with the big model (calib), "
        "fine-tune the little model on it (train), compare the drafts before and after (eval). "
        "Without --target / --draft the built-in default pair is used. See docs/align.md.",
    )
    sub = p.add_subparsers(metavar="ACTION")
    calib = sub.add_parser(
        "calib",
        help="the big model's outputs for a task's training prompts, as resumable JSONL",
        description="Generates the target's outputs (greedy by default) for the first N examples of a "
        "task's split and appends them to OUT/calib.jsonl, one line per example; rerun the same "
        "command after an interruption and it skips the examples done.",
    )
    calib.add_argument("--task", required=True, choices=TASKS)
    calib.add_argument("--n", type=int, required=True, help="number of examples")
    calib.add_argument(
        "--out", required=True, metavar="DIR", help="where the calibration data goes (meta.json, calib.jsonl)"
    )
    calib.add_argument(
        "--split",
        default="train",
        choices=SPLITS,
        help="train (default) for alignment; test gives held-out data for `align eval`",
    )
    calib.add_argument("--data-path", help="a copy of the task's raw source (default: what `biglittle data fetch` got)")
    calib.add_argument(
        "--temperature", type=float, default=0.0, help="0 = the target's greedy outputs (default); > 0 samples"
    )
    calib.add_argument("--seed", type=int, default=0, help="sampling seed (default 0; each example's derives from it)")
    calib.add_argument(
        "--top-k-logits",
        type=int,
        default=0,
        metavar="K",
        help="also store the target's K most likely tokens per position, for train --kl-weight (default 0 = off)",
    )
    calib.add_argument("--max-new-tokens", type=int, default=128, help="at most this many output tokens (default 128)")
    calib.add_argument(
        "--target", help="big model: hub id, local directory or .gguf file (default: the built-in pair's)"
    )
    add_loading_options(calib, precision_default="fp32")
    calib.set_defaults(handler=_run_align_calib)
    train = sub.add_parser(
        "train",
        help="fine-tune the little model on calibration data; writes a model directory",
        description="Cross-entropy on the target's output tokens (plus, with --kl-weight, a KL term to "
        "its stored top-K distribution), with LoRA adapters by default (--full trains every weight). "
        "Checkpoints every --save-every steps into OUT; rerun the same command to resume. At the end "
        "OUT is a model directory for `--draft OUT`.",
    )
    train.add_argument("--data", required=True, metavar="DIR", help="calibration data made by `biglittle align calib`")
    train.add_argument("--out", required=True, metavar="DIR", help="the aligned model's directory (and the checkpoint)")
    train.add_argument(
        "--draft",
        help="little model to align: hub id, local directory or .gguf file (default: the built-in "
        "pair's); early-exit:L trains a small exit head after the target's first L layers instead",
    )
    train.add_argument("--target", help="with --draft early-exit:L: the big model (default: the built-in pair's)")
    train.add_argument("--epochs", type=int, default=2, help="passes over the data (default 2)")
    train.add_argument("--lr", type=float, help="learning rate (default 2e-4 with LoRA, 2e-5 with --full)")
    train.add_argument(
        "--lora-rank",
        type=int,
        default=16,
        help="rank of the LoRA adapters, or of an early exit's low-rank correction (default 16)",
    )
    train.add_argument(
        "--full", action="store_true", help="train every weight instead of LoRA adapters (needs more memory)"
    )
    train.add_argument(
        "--kl-weight",
        type=float,
        default=0.0,
        help="weight of KL(target's top-K || draft), needs calib --top-k-logits (default 0 = off)",
    )
    train.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (default: all epochs)")
    train.add_argument("--grad-accum", type=int, default=1, help="examples per optimizer step (default 1)")
    train.add_argument("--save-every", type=int, default=20, help="optimizer steps between checkpoints (default 20)")
    train.add_argument(
        "--seed", type=int, default=0, help="seed of the example order and adapter initialisation (default 0)"
    )
    add_loading_options(train, precisions=TRAINABLE_PRECISIONS, precision_default="fp32")  # no gradients through int8
    train.set_defaults(handler=_run_align_train)
    evaluate = sub.add_parser(
        "eval",
        help="agreement and speculative acceptance of the draft before and after alignment",
        description="On calibration data of held-out prompts (`align calib --split test`): the "
        "fraction of the target's tokens that each draft's argmax predicts (teacher-forced), and "
        "greedy speculative decoding's acceptance rate, overall and by draft position.",
    )
    evaluate.add_argument("--data", required=True, metavar="DIR", help="calibration data of held-out prompts")
    evaluate.add_argument(
        "--aligned",
        required=True,
        metavar="DIR",
        help="the aligned draft (`align train`'s --out: a model, or a trained exit)",
    )
    evaluate.add_argument("--target", help="big model (default: the built-in pair's)")
    evaluate.add_argument(
        "--draft",
        help="the unaligned little model (default: the built-in pair's); "
        "early-exit:L to compare a trained exit with the plain one",
    )
    evaluate.add_argument("--n", type=int, help="use the first N examples only (default: all)")
    evaluate.add_argument("--gamma", type=int, default=4, help="draft tokens per target pass (default 4)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object {draft name: measures}")
    add_loading_options(evaluate, precision_default="fp32")
    evaluate.set_defaults(handler=_run_align_eval)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _run_align_calib(args) -> int:
    from ..align import CalibSettings, generate_calibration
    from ..api import load_pair, resolve_pair
    from ..data import build_prompt, load_task

    if args.n < 1:
        raise BigLittleError(f"n must be at least 1, got {args.n}")
    settings = CalibSettings(
        task=args.task,
        split=args.split,
        temperature=args.temperature,
        seed=args.seed,
        top_k_logits=args.top_k_logits,
        max_new_tokens=args.max_new_tokens,
    )
    settings.validate()  # before the slow model loading
    check_out(args.out)
    examples = load_task(args.task, args.split, path=args.data_path, limit=args.n, cache=args.cache_dir)
    pair = load_pair(resolve_pair(args.target, None, args.cache_dir).target, dtype=args.precision, device=args.device)
    prompts = [(e.id, build_prompt(args.task, e.source, pair.tokenizer)) for e in examples]
    result = generate_calibration(pair, prompts, args.out, settings)
    print(f"{args.out}: {result['done']} examples ({result['new']} new)")
    return 0


def _run_align_train(args) -> int:
    from ..align import TrainSettings, read_calibration, train_draft
    from ..api import resolve_pair
    from ..runtime.models import load_model

    settings = TrainSettings(
        epochs=args.epochs,
        lr=args.lr,
        lora_rank=args.lora_rank,
        full=args.full,
        kl_weight=args.kl_weight,
        max_steps=args.max_steps,
        grad_accum=args.grad_accum,
        save_every=args.save_every,
        seed=args.seed,
    )
    settings.validate()
    read_calibration(args.data)  # a missing or empty data directory fails before the slow loading
    check_out(args.out)
    draft = parse_draft_spec(args.draft) if args.draft else None
    if draft is not None and draft.kind == "early-exit":
        return _train_exit(args, settings, draft.layers)
    if args.target:
        raise BigLittleError("--target is for --draft early-exit:L only (a separate draft trains without the target)")
    little = args.draft or resolve_pair(None, None, args.cache_dir).draft
    summary = train_draft(load_model(little, args.precision, args.device), args.data, args.out, settings)
    resumed = f", resumed at step {summary['resumed_from_step']}" if summary["resumed_from_step"] else ""
    print(
        f"{args.out}: aligned draft ({summary['mode']}, {summary['steps']} steps{resumed}, "
        f"final loss {summary['final_loss']:.3f}); use it with --draft {args.out}"
    )
    return 0


def _train_exit(args, settings, exit_layers: int) -> int:
    from ..align.exit import train_exit
    from ..api import resolve_pair
    from ..runtime.models import load_model

    target = resolve_pair(args.target, None, args.cache_dir).target
    summary = train_exit(load_model(target, args.precision, args.device), exit_layers, args.data, args.out, settings)
    print(
        f"{args.out}: exit head after layer {exit_layers} ({summary['steps']} steps, "
        f"loss {summary['first_loss']:.3f} -> "
        f"{summary['final_loss']:.3f}); use it with --draft {args.out}"
    )
    return 0


def _run_align_eval(args) -> int:
    from ..align import evaluate_drafts, format_evaluation, read_calibration
    from ..api import load_draft, resolve_pair
    from ..runtime.models import load_model

    if args.n is not None and args.n < 1:
        raise BigLittleError(f"n must be at least 1, got {args.n}")
    if args.gamma < 1:
        raise BigLittleError(f"gamma must be at least 1, got {args.gamma}")
    meta, records = read_calibration(args.data)
    spec = resolve_pair(args.target, args.draft, args.cache_dir)
    target, draft = spec.target, spec.draft
    if draft is None:
        raise BigLittleError("--target needs --draft (the unaligned little model) here")
    target_model = load_model(target, args.precision, args.device)
    unaligned, aligned = (load_draft(spec, target_model, args.precision, args.device) for spec in (draft, args.aligned))
    results = evaluate_drafts(
        target_model,
        {"unaligned": unaligned, "aligned": aligned},
        records[: args.n],
        gamma=args.gamma,
        max_new_tokens=meta.get("max_new_tokens", 128),
    )
    print(json.dumps(results) if args.json else format_evaluation(results, args.gamma))
    return 0
