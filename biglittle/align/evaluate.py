"""How well a draft predicts its target, measured on calibration-format data of held-out prompts.

- agreement: the fraction of output positions where the draft's argmax equals the target's,
  both teacher-forced on the stored output (with greedy calibration data: the target's own
  greedy tokens). One forward of each model per example: cheap.
- speculative acceptance (greedy, gamma tokens per target pass), overall and by draft position,
  through the ordinary decoding loop.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..api import GenerationConfig, ModelPair
from ..decoding.stats import GenerationStats
from ..runtime.models import LoadedModel, shared_vocab_size
from .teacher import output_logits


def evaluate_drafts(
    target: LoadedModel,
    drafts: dict[str, LoadedModel],
    records: list[dict],
    *,
    gamma: int = 4,
    max_new_tokens: int = 128,
    progress: bool = True,
) -> dict[str, dict]:
    """{draft name: {agreement, acceptance_rate, acceptance_by_position, tokens_per_target_call, examples}}."""
    vocab = min(shared_vocab_size(target, draft) for draft in drafts.values())  # also checks the tokenizers
    target_choices = greedy_choices(target.model, records, vocab, progress, "target")
    results = {}
    for name, draft in drafts.items():
        draft_choices = greedy_choices(draft.model, records, vocab, progress, name)
        stats = speculative_stats(ModelPair(target, draft), records, gamma, max_new_tokens, progress, name)
        summary = stats.to_dict()
        results[name] = {
            "agreement": agreement(target_choices, draft_choices),
            "acceptance_rate": summary["acceptance_rate"],
            "acceptance_by_position": summary["acceptance_by_position"],
            "tokens_per_target_call": summary["tokens_per_target_call"],
            "examples": len(records),
        }
    return results


@torch.inference_mode()
def greedy_choices(
    model, records: list[dict], vocab: int, progress: bool = False, name: str = ""
) -> list[torch.Tensor]:
    """The model's argmax at each output position of each record, teacher-forced on the stored output."""
    return [
        output_logits(model, r["prompt_ids"], r["output_ids"])[:, :vocab].argmax(-1)
        for r in tqdm(records, desc=f"agreement {name}".strip(), unit="ex", disable=not progress, leave=False)
    ]


def agreement(target_choices: list[torch.Tensor], draft_choices: list[torch.Tensor]) -> float:
    matches = sum(int((t == d).sum()) for t, d in zip(target_choices, draft_choices))
    return matches / sum(len(t) for t in target_choices)


def speculative_stats(
    pair: ModelPair, records: list[dict], gamma: int, max_new_tokens: int, progress: bool = False, name: str = ""
) -> GenerationStats:
    """Greedy speculative decoding of every record's prompt; the drafts' counters summed over all of them."""
    config = GenerationConfig(method="speculative", gamma=gamma, max_new_tokens=max_new_tokens, chat=False)
    total = GenerationStats(method="speculative")
    for record in tqdm(records, desc=f"speculative {name}".strip(), unit="ex", disable=not progress, leave=False):
        stats = pair.generate(record["prompt_ids"], config).stats
        total.new_tokens += stats.new_tokens
        total.target_calls += stats.target_calls
        total.proposed += stats.proposed
        total.accepted += stats.accepted
        for mine, theirs in (
            (total.accepted_lengths, stats.accepted_lengths),
            (total.accepted_by_position, stats.accepted_by_position),
            (total.proposed_by_position, stats.proposed_by_position),
        ):
            mine.update(theirs)
    return total


def format_evaluation(results: dict[str, dict], gamma: int) -> str:
    """evaluate_drafts' results as a table, one row per draft."""
    lines = [
        f"{'draft':<10} {'agreement':>9} {'acceptance':>10} {'tokens/pass':>11}  acceptance by position (gamma {gamma})"
    ]
    for name, row in results.items():
        rate = "-" if row["acceptance_rate"] is None else f"{row['acceptance_rate']:.3f}"
        per_pass = "-" if row["tokens_per_target_call"] is None else f"{row['tokens_per_target_call']:.2f}"
        positions = " ".join(f"{value:.2f}" for value in row["acceptance_by_position"])
        lines.append(f"{name:<10} {row['agreement']:>9.3f} {rate:>10} {per_pass:>11}  {positions}")
    return "\n".join(lines)
