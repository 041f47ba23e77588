"""The default pair's draft with a restricted output vocabulary: step cost and greedy agreement by K.

    python scripts/restricted_vocab.py [--examples 5] [--ks 32768,16384,8192]

Agreement is teacher-forced: the share of the target's greedy tokens (32 at most per example, on
the first test examples of both tasks) that each draft's argmax predicts; it is what greedy
speculative decoding's acceptance rate estimates. Step cost: one new token after a 64-token
cache, median and quartiles of 15 runs, the drafts interleaved.
"""

import argparse
import statistics
import time

import torch
from transformers import DynamicCache

from biglittle import load_pair
from biglittle.data import build_prompt, load_task
from biglittle.runtime.fetch import default_pair_dirs
from biglittle.runtime.models import load_model
from biglittle.runtime.restricted_vocab import restrict_vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5, help="test examples per task")
    parser.add_argument("--ks", default="32768,16384,8192", help="vocabulary sizes to compare with the full one")
    args = parser.parse_args()
    target_dir, draft_dir = default_pair_dirs()
    pair = load_pair(str(target_dir), str(draft_dir))
    drafts = {"full": pair.draft.model}
    for k in map(int, args.ks.split(",")):
        drafts[k] = load_model(str(draft_dir)).model
        restrict_vocabulary(drafts[k], pair.tokenizer, k)
    cases = []
    for task in ("translation", "summarization"):
        for example in load_task(task, "test", limit=args.examples):
            prompt = pair.tokenizer(build_prompt(task, example.source, pair.tokenizer)).input_ids
            cases.append((task, prompt, pair.generate(prompt, method="ar", max_new_tokens=32).token_ids))
    with torch.inference_mode():
        for name, model in drafts.items():
            agreement = {}
            for task, prompt, output in cases:
                predicted = model(torch.tensor([prompt + output])).logits[0, len(prompt) - 1 : -1].argmax(-1)
                hits, total = agreement.get(task, (0, 0))
                agreement[task] = (hits + int((predicted == torch.tensor(output)).sum()), total + len(output))
            print(name, {task: round(hits / total, 3) for task, (hits, total) in agreement.items()})
        context = torch.tensor([cases[0][1][:64]])
        times = {name: [] for name in drafts}
        for _ in range(15):
            for name, model in drafts.items():
                cache = DynamicCache()
                model(context, past_key_values=cache, use_cache=True)
                started = time.perf_counter()
                model(torch.tensor([[100]]), past_key_values=cache, use_cache=True, logits_to_keep=1)
                times[name].append(time.perf_counter() - started)
    for name, samples in times.items():
        quartiles = statistics.quantiles(samples, n=4)
        print(
            f"{name}: step {1000 * statistics.median(samples):.1f} ms "
            f"(quartiles {1000 * quartiles[0]:.1f}-{1000 * quartiles[2]:.1f})"
        )


if __name__ == "__main__":
    main()
