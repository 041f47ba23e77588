"""T(k) of the built-in pair at int8 on fbgemm's int8 product, on oneDNN's, and as Int8Linear mixes them (fbgemm
for one row, oneDNN for more), timed in turn in one process.

Both kernels give every output the exact int32 sum times the weight's scale (the probe in runtime/cpu.py checks it on
each machine), so the logits must be bit-identical; what differs is how a pass's cost grows with its tokens. Each
sweep times k = 1, 2, 4, 8, 16 for both models, each pass in the three settings back to back (which goes first
rotates), so this VM's drift falls alike on all three; medians over the sweeps after the first (a warm-up). Then
the big model's prefill of a longer prompt, in tokens per second, in each setting.
`python scripts/int8_kernels.py [--sweeps 6] [--out results.json]`
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Iterator

import torch

from biglittle.api import load_pair
from biglittle.runtime.cpu import capabilities, cpu_model
from biglittle.runtime.quantize import Int8Linear
from biglittle.runtime.runner import ModelRunner

PROMPT = "Write a Python function that returns the n-th Fibonacci number, with a docstring."
CONTINUATION = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint(fib(10))"
KS = (1, 2, 4, 8, 16)
PREFILL_REPEATS = 5  # copies of CONTINUATION in the prompt whose prefill is timed (~230 tokens)


SETTINGS = {"fbgemm": 10**9, "onednn": 1, "mixed": Int8Linear.onednn_from_rows}  # rows from which oneDNN runs


def settings_in_turn(sweep: int) -> Iterator[str]:
    """The settings, each first in turn (so this VM's drift falls alike on all), each one's kernel choice switched on
    while it is yielded."""
    order = list(SETTINGS.items())
    for setting, from_rows in order[sweep % len(order) :] + order[: sweep % len(order)]:
        Int8Linear.onednn_from_rows = from_rows
        yield setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=6)
    parser.add_argument("--out", help="write the medians as JSON here")
    args = parser.parse_args()
    if not capabilities()["int8_onednn"]:
        raise SystemExit("oneDNN's int8 product is not exact on this CPU: int8 runs on fbgemm only here")
    pair = load_pair(dtype="int8")
    prompt = pair.encode(PROMPT, chat=True)
    extension = pair.encode(CONTINUATION)[: max(KS)]
    runners = {name: ModelRunner(getattr(pair, name).model, len(pair.target.tokenizer)) for name in ("target", "draft")}
    times: dict[tuple[str, str, int], list[float]] = {}
    logits: dict[tuple[str, str, int], torch.Tensor] = {}
    for runner in runners.values():
        runner.start(prompt)
        runner.forward(prompt, 1)
    for sweep in range(args.sweeps):
        for name, runner in runners.items():
            runner.forward(prompt + extension[:1], 1)  # untimed: the first pass after the other model is slower
            runner.crop(len(prompt))
            for k in KS:
                for setting in settings_in_turn(sweep):
                    started = time.perf_counter()
                    logits[setting, name, k] = runner.forward(prompt + extension[:k], k)
                    if sweep:
                        times.setdefault((setting, name, k), []).append(time.perf_counter() - started)
                    runner.crop(len(prompt))
    long_prompt = pair.encode(PROMPT + "\n\n" + "\n\n".join([CONTINUATION] * PREFILL_REPEATS), chat=True)
    prefill: dict[str, list[float]] = {}
    for sweep in range(args.sweeps):  # reading a prompt into an empty cache: the big model's prefill
        for setting in settings_in_turn(sweep):
            runners["target"].start(long_prompt)
            started = time.perf_counter()
            runners["target"].forward(long_prompt, 1)
            if sweep:
                prefill.setdefault(setting, []).append(time.perf_counter() - started)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "machine": f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}",
        "commit": commit,
        "identical_logits": all(
            torch.equal(logits["fbgemm", name, k], logits[setting, name, k])
            for setting in SETTINGS
            for name in runners
            for k in KS
        ),
    }
    for kernel in SETTINGS:
        for name in runners:
            medians = {k: statistics.median(times[kernel, name, k]) for k in KS}
            result[f"{name} {kernel}"] = {"T(1) ms": round(1000 * medians[1], 1)} | {
                f"T({k})/T(1)": round(medians[k] / medians[1], 2) for k in KS[1:]
            }
            print(name, kernel, result[f"{name} {kernel}"])
        seconds = statistics.median(prefill[kernel])
        result[f"target {kernel} prefill"] = {"tokens": len(long_prompt), "tokens/s": round(len(long_prompt) / seconds)}
        print("target", kernel, "prefill", result[f"target {kernel} prefill"])
    print("identical logits:", result["identical_logits"])
    if args.out:
        with open(args.out, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
