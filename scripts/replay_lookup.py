"""Replay prompt lookup over the big model's recorded greedy answers: what a greedy lookup drafter would have
proposed at every round, and how much of it the answer kept, by the length of the match that found it.

At temperature 0 a draft's verdict is known from the answer alone (the target's greedy output is fixed), so this
studies a lookup rule without running a model: `python scripts/replay_lookup.py RUN/records.jsonl --gamma 4`
(records of `biglittle bench` with a 'Vanilla (large)' row; the prompts are rebuilt with the built-in pair's
tokenizer). docs/drafts.md has its table.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from biglittle.data import build_prompt, load_task
from biglittle.decoding.drafters import NgramDrafter
from biglittle.runtime import fetch
from biglittle.runtime.models import load_tokenizer


def replay(prompt: list[int], answer: list[int], drafter: NgramDrafter, gamma: int, counts) -> None:
    """Add each round's (proposed, accepted) to counts[match length], decoding `answer` as the target would."""
    done = 0
    while done < len(answer):
        found, match = drafter.lookup(prompt + answer[:done], min(gamma, len(answer) - done - 1))
        accepted = 0
        while accepted < len(found) and found[accepted] == answer[done + accepted]:
            accepted += 1
        counts[match][0] += 1
        counts[match][1] += len(found)
        counts[match][2] += accepted
        done += accepted + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="records.jsonl of bench runs")
    parser.add_argument("--gamma", type=int, default=4, help="tokens proposed at most per round (default 4)")
    parser.add_argument("--max-ngram", type=int, default=3)
    args = parser.parse_args()
    tokenizer = load_tokenizer(str(fetch.default_pair_dirs(None)[0]))
    answers = {}
    for path in args.records:
        with open(path) as records:
            for record in map(json.loads, records):
                if record["setting"]["label"] == "Vanilla (large)":
                    answers[record["task"], record["example_id"]] = record["token_ids"]
    drafter = NgramDrafter(len(tokenizer), set(), args.max_ngram)
    print("| task | examples | " + " | ".join(f"{n}-token match: accepted of proposed" for n in (1, 2, 3)) + " |")
    for task in sorted({task for task, _ in answers}):
        examples = {example.id: example for example in load_task(task, "test")}
        counts: defaultdict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # match -> [rounds, proposed, accepted]
        ids = [example_id for known_task, example_id in answers if known_task == task]
        for example_id in ids:
            text = build_prompt(task, examples[example_id].source, tokenizer)
            prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
            replay(prompt, answers[task, example_id], drafter, args.gamma, counts)
        cells = [
            f"{counts[n][2] / counts[n][0]:.2f} of {counts[n][1] / counts[n][0]:.1f}" if counts[n][0] else "–"
            for n in (1, 2, 3)
        ]
        print(f"| {task} | {len(ids)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
