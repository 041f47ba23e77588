"""One model in several precisions: T(k) and batch invariance, or (`--quality N`) agreement with fp32 on real text.

Variants: fp32; dynamic-int8 (torch's, per-tensor activations: not batch-invariant); biglittle-int8; biglittle-int4
(the GGUF's own Q4_K blocks where the model has a GGUF beside it, the matrices it holds in more bits int8, the rest
4-bit from fp32); int4-wider-int4 (those wider matrices 4-bit from fp32 as well); int4-from-fp32 (every matrix 4-bit
from the fp32 weights, as for a model without a GGUF); int4-draft (a little model at int4: as int4-wider-int4, with
passes over more than 4 rows on an int8 copy, Int4DraftLinear).

Timing: the variants are timed interleaved (each k in turn for every variant), so that other load on the machine
hits all of them alike; the prompt's pass (--context tokens) is timed too. `--cpu` measures process CPU time
instead of wall time, which other processes barely disturb: with `--threads 1` it is the single-core cost of a
forward.

Quality (`--quality N`): N next-token positions of real text (the translation and summarization tasks' dev
prompts followed by their reference answers, and Python standard library code), each text read in one pass.
For every variant: how often its argmax equals fp32's, how often it equals the text's own next token (fp32's
is printed beside), and the mean KL(fp32 || variant). Variants are loaded one at a time.

    python scripts/compare_precisions.py ~/.cache/biglittle/models/qwen2.5-coder-0.5b-instruct --threads 1 --cpu
    python scripts/compare_precisions.py ~/.cache/biglittle/models/qwen2.5-coder-1.5b-instruct --quality 400 \\
        --variants fp32,biglittle-int8,biglittle-int4,int4-wider-int4
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from biglittle.data import build_prompt, load_task
from biglittle.runtime.gguf_weights import source_gguf
from biglittle.runtime.int4 import quantize_model_int4
from biglittle.runtime.quantize import quantize_model, scoring_gap
from biglittle.runtime.runner import ModelRunner
from biglittle.runtime.vocab_ranking import stdlib_sources

VARIANTS = (
    "fp32",
    "dynamic-int8",
    "biglittle-int8",
    "biglittle-int4",
    "int4-wider-int4",
    "int4-from-fp32",
    "int4-draft",
)


def load_variant(path: str, name: str) -> nn.Module:
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    if name == "dynamic-int8":
        with warnings.catch_warnings():  # torch marks its eager quantization deprecated
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    if name == "biglittle-int8":
        return quantize_model(model)
    if name.startswith("int4-") or name == "biglittle-int4":
        gguf = None if name == "int4-from-fp32" else source_gguf(path)
        wider = "int8" if name == "biglittle-int4" else "int4"
        report = quantize_model_int4(model, gguf, wider_layers=wider, draft=name == "int4-draft")
        print(
            f"{name}: {len(report.from_gguf)} layers from the GGUF's Q4_K blocks, {len(report.from_fp32)} 4-bit "
            f"from fp32, {len(report.int8)} int8",
            flush=True,
        )
    return model


def real_texts(tokenizer, positions: int, length: int = 160) -> list[list[int]]:
    """Token ids of real texts, at most `length` each, `positions` + one per text in all: task prompts with their
    reference answers (dev split) and standard library code, in turn."""
    sources = [
        iter(build_prompt(task, example.source, tokenizer) + example.reference for example in load_task(task, "dev"))
        for task in ("translation", "summarization")
    ]
    code = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in stdlib_sources()[:20])
    code_ids = tokenizer(code, add_special_tokens=False)["input_ids"]
    texts, taken, turn = [], 0, 0
    while taken < positions:
        if turn % 3 == 2:
            ids = code_ids[(turn // 3) * length : (turn // 3 + 1) * length]
        else:
            ids = tokenizer(next(sources[turn % 3]), add_special_tokens=False)["input_ids"][:length]
        ids = ids[: positions - taken + 1]
        texts.append(ids)
        taken += len(ids) - 1
        turn += 1
    return texts


@torch.inference_mode()
def log_probs(model: nn.Module, texts: list[list[int]]) -> list[torch.Tensor]:
    return [torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1) for ids in texts]


def quality(path: str, variants: list[str], positions: int) -> None:
    texts = real_texts(AutoTokenizer.from_pretrained(path), positions)
    targets = torch.cat([torch.tensor(ids[1:]) for ids in texts])
    reference = torch.cat(log_probs(load_variant(path, "fp32"), texts))
    best = reference.argmax(-1)
    print(f"{len(targets)} positions; fp32 predicts the text's next token at {(best == targets).float().mean():.3f}")
    print("variant            top-1 = fp32   top-1 = text   KL(fp32 || variant)")
    for name in variants:
        if name == "fp32":
            continue
        started = time.perf_counter()
        variant = torch.cat(log_probs(load_variant(path, name), texts))
        agreement = (variant.argmax(-1) == best).float().mean()
        accuracy = (variant.argmax(-1) == targets).float().mean()
        kl = (reference.exp() * (reference - variant)).sum(-1).mean()
        seconds = time.perf_counter() - started
        print(f"{name:18s} {agreement:12.3f}   {accuracy:12.3f}   {kl:19.4f}   ({seconds:.0f} s)", flush=True)


def timing(path: str, variants: list[str], args) -> None:
    clock = time.process_time if args.cpu else time.perf_counter
    runners = {}
    for name in variants:
        model = load_variant(path, name)
        runners[name] = ModelRunner(model, model.config.vocab_size)
    prompt = torch.randint(0, 150_000, (args.context,), generator=torch.Generator().manual_seed(0)).tolist()
    for name, runner in runners.items():
        print(
            f"{name}: max |logit difference|, 4 tokens in one pass vs one at a time: "
            f"{scoring_gap(runner, prompt, prompt[:4]):.3g}",
            flush=True,
        )
    ks = range(1, args.max_k + 1)
    times: dict[str, dict[int, list[float]]] = {name: {k: [] for k in ks} for name in runners}
    prefill: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for k in ks:
            for name, runner in runners.items():
                tokens = runner.start(prompt)
                started = clock()
                runner.forward(tokens, 1)
                prefill[name].append(clock() - started)
                started = clock()
                runner.forward(tokens + prompt[:k], k)
                times[name][k].append(clock() - started)
    print("T(k)/T(1) for k = " + " ".join(str(k) for k in ks))
    for name in runners:
        step = min(times[name][1])
        print(f"{name:15s} T(1) {step * 1000:6.1f} ms  " + " ".join(f"{min(times[name][k]) / step:.2f}" for k in ks))
    for name in runners:
        print(f"{name:15s} a {args.context}-token prompt's pass: {min(prefill[name]) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a decoder-only model directory")
    parser.add_argument("--variants", default="fp32,dynamic-int8,biglittle-int8", help=", ".join(VARIANTS))
    parser.add_argument("--quality", type=int, metavar="N", help="agreement with fp32 over N positions of real text")
    parser.add_argument("--repeats", type=int, default=3, help="the minimum of this many runs is reported")
    parser.add_argument("--max-k", type=int, default=9)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    if args.quality:
        quality(args.model, variants, args.quality)
    else:
        timing(args.model, variants, args)


if __name__ == "__main__":
    main()
