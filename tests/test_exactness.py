"""Exactness with zero sampling noise: the distribution of the first two tokens of a speculative run, found by
enumerating every draft sample and every branch of the acceptance rule (tests/exact.py), equals the target's.

Nothing is pruned on these toy models, so `assert_exact` fails any bias above float rounding (total variation
> 5e-6) with certainty: the residual taken from the wrong draft position (a bias of 0.02 to 0.1 here), a bonus
token from the wrong row, drafts scored against the wrong target row, q warped otherwise than p.
Model-free and fast, so `make mutate` runs them against every mutant.
"""

import pytest
from exact import assert_exact, first_two, target_first_two
from scripted import ContextRunner, bigram

from biglittle.decoding.drafters import HybridDrafter, ModelDrafter, NgramDrafter
from biglittle.decoding.methods import Speculative
from biglittle.decoding.sampling import SamplingConfig

EOS = 4
VOCAB = 6
PROMPT = [0, 1, 2, 0]
TARGET_TABLE = [  # p(next | last); token 4 ends the text
    [0.10, 0.40, 0.20, 0.15, 0.05, 0.10],
    [0.45, 0.10, 0.20, 0.10, 0.05, 0.10],
    [0.20, 0.20, 0.15, 0.30, 0.05, 0.10],
    [0.05, 0.05, 0.55, 0.20, 0.10, 0.05],
    [1 / 6] * 6,
    [0.30, 0.10, 0.10, 0.25, 0.05, 0.20],
]
DRAFT_TABLE = [
    [0.30, 0.25, 0.10, 0.20, 0.05, 0.10],
    [0.20, 0.20, 0.35, 0.10, 0.05, 0.10],
    [0.10, 0.45, 0.10, 0.20, 0.05, 0.10],
    [0.25, 0.10, 0.30, 0.20, 0.10, 0.05],
    [1 / 6] * 6,
    [0.10, 0.30, 0.20, 0.15, 0.05, 0.20],
]
SETTINGS = {
    "t1": SamplingConfig(1.0),
    "t0.7-topk3": SamplingConfig(0.7, 3),
    "t1.5-topp0.8": SamplingConfig(1.5, 0, 0.8),
}


def toy_drafter(kind, sampling):
    model = ModelDrafter(ContextRunner(bigram(DRAFT_TABLE), VOCAB), sampling, {EOS})
    ngram = NgramDrafter(VOCAB, {EOS}, max_ngram=2)
    return {"model": model, "ngram": ngram, "hybrid": HybridDrafter(ngram, model)}[kind]


CASES = [  # (drafter, gamma, setting, prompt): gamma 2 is the most the first round drafts with three tokens to write
    *[("model", gamma, setting, PROMPT) for gamma in (1, 2) for setting in SETTINGS],
    ("ngram", 2, "t1", PROMPT),  # the prompt repeats, so the lookup proposes
    ("ngram", 2, "t0.7-topk3", PROMPT),
    ("hybrid", 2, "t1", PROMPT),
    ("hybrid", 2, "t1", [3]),  # nothing to look up: the little model drafts
]


@pytest.mark.parametrize("drafter,gamma,setting,prompt", CASES, ids=[f"{d}-g{g}-{s}-{len(p)}" for d, g, s, p in CASES])
def test_speculative_output_is_the_targets_distribution(drafter, gamma, setting, prompt):
    sampling = SETTINGS[setting]
    target = ContextRunner(bigram(TARGET_TABLE), VOCAB)
    method = Speculative(gamma, sampling)
    enumerated, pruned = first_two(target, toy_drafter(drafter, sampling), method, prompt, {EOS})
    assert pruned == 0
    assert_exact(enumerated, pruned, target_first_two(bigram(TARGET_TABLE), prompt, sampling, {EOS}))


def test_enumeration_sees_an_inexact_rule():
    """Power check: the draft's own distribution (what skipping verification emits) is far from exact."""
    sampling = SETTINGS["t1"]
    expected = target_first_two(bigram(TARGET_TABLE), PROMPT, sampling, {EOS})
    draft_alone = target_first_two(bigram(DRAFT_TABLE), PROMPT, sampling, {EOS})
    with pytest.raises(AssertionError, match="not the target's"):
        assert_exact(draft_alone, 0.0, expected)
