"""Early-exit drafts on the default target: what sharing the cache saves per verification, and acceptance by L.

    python scripts/early_exit_reuse.py [--layers 4,8,12,16] [--gamma 4] [--repeats 15] [--examples 5]
                                       [--max-new-tokens 32] [--precision int8] [--target DIR]

Verification: the target scores gamma + 1 new tokens after a 64-token context (the start of a real
prompt), once with a cache of its own (all N layers for all gamma + 1 tokens) and once sharing the
cache of early-exit:L after the exit has read the first gamma of them (layers 1..L for the last
token only, L+1..N for all); likewise the prompt's prefill (the 64 tokens, after the exit has read
all but the last). These, a plain target step and an exit step are timed in turn, --repeats
times; medians and quartiles. The layer work saved is L/N * gamma/(gamma + 1) of a verification
pass, but a pass over few tokens costs mostly the reading of the weights, which layers 1..L still
do for the one token: expect less there, and about L/N on the prefill.
Acceptance: greedy speculative decoding with early-exit:L on the first --examples test examples of
each task (prompts as `biglittle bench` builds them), accepted / proposed over all rounds; with it
and the timings, the theory's expected speedup over the target alone, with and without sharing.
"""

import argparse
import statistics

from biglittle import load_pair
from biglittle.cost.theory import expected_speedup
from biglittle.data import build_prompt, load_task
from biglittle.runtime.early_exit.shared_cache import ExitTargetRunner, make_runners
from biglittle.runtime.fetch import default_pair_dirs
from biglittle.runtime.runner import ModelRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="4,8,12,16", help="exit layers L to compare")
    parser.add_argument("--gamma", type=int, default=4, help="draft tokens per verification")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each pass")
    parser.add_argument("--examples", type=int, default=5, help="test examples per task for the acceptance rate")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--target", help="the target's directory (default: the default pair's)")
    args = parser.parse_args()
    pair = load_pair(args.target or str(default_pair_dirs()[0]), dtype=args.precision)
    num_layers = pair.target.model.config.num_hidden_layers
    prompts = {
        task: [
            pair.encode(build_prompt(task, example.source, pair.tokenizer))
            for example in load_task(task, "test", limit=args.examples)
        ]
        for task in ("translation", "summarization")
    }
    context = prompts["translation"][0][:64]
    print(
        f"{pair.target.name}, {args.precision}, N = {num_layers} layers, gamma = {args.gamma}, "
        f"context {len(context)} tokens"
    )
    for layers in map(int, args.layers.split(",")):
        exit_pair = load_pair(pair.target, f"early-exit:{layers}")
        times = time_passes(exit_pair, context, args.gamma, args.repeats)
        alphas = {task: acceptance(exit_pair, ids, args.gamma, args.max_new_tokens) for task, ids in prompts.items()}
        report(layers, num_layers, args.gamma, times, alphas)


def time_passes(exit_pair, context: list[int], gamma: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each pass, `repeats` times, the kinds interleaved."""
    vocab_size = exit_pair.target_runner.vocab_size
    separate = ModelRunner(exit_pair.target.model, vocab_size)
    exit_step = ModelRunner(exit_pair.draft.model, vocab_size)
    shared, shared_draft = make_runners(exit_pair.target.model, exit_pair.draft.model, vocab_size)
    assert isinstance(shared, ExitTargetRunner), "this target cannot share its cache with an early exit"
    new = context[-gamma - 1 :]  # any tokens do: the cost does not depend on which
    for runner in (separate, exit_step, shared):
        runner.start(context)
        runner.forward(context, 1)
    times = {"step": [], "exit step": [], "verify": [], "verify shared": [], "prefill": [], "prefill shared": []}

    def timed(name, runner, cached, tokens, num_logits, read_by=None):
        runner.crop(cached)
        if read_by is not None:
            read_by.forward(tokens[:-1], 1)  # the exit has read all but the last token
        runner.forward(tokens, num_logits)
        times[name].append(runner.timings.call_log[-1][1])

    for _ in range(repeats):
        timed("step", separate, len(context), context + new[:1], 1)
        timed("exit step", exit_step, len(context), context + new[:1], 1)
        timed("verify", separate, len(context), context + new, gamma + 1)
        timed("verify shared", shared, len(context), context + new, gamma + 1, read_by=shared_draft)
        timed("prefill", separate, 0, context, 1)
        timed("prefill shared", shared, 0, context, 1, read_by=shared_draft)
    return times


def acceptance(exit_pair, prompts: list[list[int]], gamma: int, max_new_tokens: int) -> float | None:
    accepted = proposed = 0
    for prompt_ids in prompts:
        stats = exit_pair.generate(prompt_ids, method="speculative", gamma=gamma, max_new_tokens=max_new_tokens).stats
        accepted, proposed = accepted + stats.accepted, proposed + stats.proposed
    return accepted / proposed if proposed else None


def report(layers: int, num_layers: int, gamma: int, times: dict[str, list[float]], alphas: dict) -> None:
    median = {name: statistics.median(samples) for name, samples in times.items()}
    spread = {
        name: statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3 for name, samples in times.items()
    }
    print(f"\nearly-exit:{layers}")
    for name in times:
        q1, _, q3 = spread[name]
        print(f"  {name:<14} {1000 * median[name]:8.1f} ms (quartiles {1000 * q1:.1f}-{1000 * q3:.1f})")
    for name, share in (("verify", gamma / (gamma + 1)), ("prefill", 1.0)):
        saving = 1 - median[f"{name} shared"] / median[name]
        print(
            f"  {name}: {saving:.1%} cheaper with the shared cache "
            f"(layer work saved: {layers / num_layers * share:.1%})"
        )
    c = median["exit step"] / median["step"]
    for task, alpha in alphas.items():
        if alpha is None:
            continue
        plain, shared = (
            expected_speedup(alpha, gamma, c, {gamma + 1: median[name] / median["step"]})
            for name in ("verify", "verify shared")
        )
        print(
            f"  {task}: greedy acceptance {alpha:.3f}, c = {c:.3f}; expected speedup {plain:.2f}x with a cache "
            f"per model, {shared:.2f}x shared"
        )


if __name__ == "__main__":
    main()
