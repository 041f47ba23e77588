"""T(k) of one model in fp32, torch's dynamic int8 and biglittle's int8, and whether each is batch-invariant.

The variants are timed interleaved (each k in turn for every variant), so that other load on
the machine hits all of them alike. `--cpu` measures process CPU time instead of wall time, which
other processes barely disturb: with `--threads 1` it is the single-core cost of a forward.

    python scripts/compare_precisions.py ~/.cache/biglittle/models/qwen2.5-coder-0.5b-instruct --threads 1 --cpu
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from biglittle.runtime.quantize import quantize_model, scoring_gap
from biglittle.runtime.runner import ModelRunner


def load_variant(path: str, name: str) -> nn.Module:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    if name == "dynamic-int8":
        with warnings.catch_warnings():  # torch marks its eager quantization deprecated
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return quantize_model(model) if name == "biglittle-int8" else model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a decoder-only model directory")
    parser.add_argument("--variants", default="fp32,dynamic-int8,biglittle-int8")
    parser.add_argument("--repeats", type=int, default=3, help="the minimum of this many runs is reported")
    parser.add_argument("--max-k", type=int, default=9)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu else time.perf_counter
    runners = {}
    for name in args.variants.split(","):
        model = load_variant(args.model, name)
        runners[name] = ModelRunner(model, model.config.vocab_size)
    prompt = torch.randint(0, 150_000, (args.context,), generator=torch.Generator().manual_seed(0)).tolist()
    for name, runner in runners.items():
        print(
            f"{name}: max |logit difference|, 4 tokens in one pass vs one at a time: "
            f"{scoring_gap(runner, prompt, prompt[:4]):.3g}",
            flush=True,
        )
    ks = range(1, args.max_k + 1)
    times = {name: {k: [] for k in ks} for name in runners}
    for _ in range(args.repeats):
        for k in ks:
            for name, runner in runners.items():
                tokens = runner.start(prompt)
                runner.forward(tokens, 1)
                started = clock()
                runner.forward(tokens + prompt[:k], k)
                times[name][k].append(clock() - started)
    print("T(k)/T(1) for k = " + " ".join(str(k) for k in ks))
    for name in runners:
        step = min(times[name][1])
        print(f"{name:15s} T(1) {step * 1000:6.1f} ms  " + " ".join(f"{min(times[name][k]) / step:.2f}" for k in ks))


if __name__ == "__main__":
    main()
