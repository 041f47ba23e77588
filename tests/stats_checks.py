"""The distribution tests' tools: exact distributions by enumeration, sampling, goodness of fit."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from scipy.stats import chisquare

from biglittle.decoding.sampling import warp_probs

# Significance level of every distribution test: a correct sampler fails one with this probability.
ALPHA = 1e-3


def chi_square_pvalue(counts: dict, expected_probs: dict) -> float:
    """p-value of observed `counts` (outcome -> n) against `expected_probs` (outcome -> p).

    Cells with an expected count below 5 are pooled into one, as the chi-square test needs.
    An observed outcome that has probability 0 gives p = 0.
    """
    total = sum(counts.values())
    if any(expected_probs.get(outcome, 0.0) <= 0.0 for outcome in counts):
        return 0.0
    observed, expected, pooled_observed, pooled_expected = [], [], 0, 0.0
    for outcome, prob in expected_probs.items():
        if prob * total >= 5:
            observed.append(counts.get(outcome, 0))
            expected.append(prob * total)
        else:
            pooled_observed += counts.get(outcome, 0)
            pooled_expected += prob * total
    if pooled_expected > 0:
        observed.append(pooled_observed)
        expected.append(pooled_expected)
    expected = np.array(expected) * total / np.sum(expected)  # absorb float rounding
    return float(chisquare(observed, expected).pvalue)


def exact_distribution(pair, prompt, sampling):
    """P(first two tokens) of the target by enumeration: p(x1) * p(x2 | x1), warped like decoding."""
    model = pair.target.model
    prompt_ids = pair.encode(prompt)
    vocab = pair.target_runner.vocab_size
    with torch.no_grad():
        first = warp_probs(model(torch.tensor([prompt_ids])).logits[0, -1, :vocab], sampling)
        candidates = first.nonzero()[:, 0].tolist()
        batch = torch.tensor([prompt_ids + [token] for token in candidates])
        second = warp_probs(model(batch).logits[:, -1, :vocab], sampling)
    eos = pair.target.eos_token_ids
    distribution = {(x1, None): float(first[x1]) for x1 in candidates if x1 in eos}
    for row, x1 in enumerate(candidates):
        if x1 not in eos:
            for x2 in second[row].nonzero()[:, 0].tolist():
                distribution[(x1, x2)] = float(first[x1] * second[row, x2])
    return distribution


def sample_first_two(pair, prompt, method, trials, **settings):
    counts = Counter()
    for seed in range(trials):
        ids = pair.generate(prompt, method=method, max_new_tokens=3, seed=seed, **settings).token_ids
        if len(ids) >= 2:
            counts[tuple(ids[:2])] += 1
        else:  # an end-of-sequence token first: the second token does not exist
            counts[(ids[0], None)] += 1
    return counts
