"""The distribution tests' tools: exact distributions by enumeration, sampling, goodness of fit."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import chi2, chisquare, ncx2

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


def detectable_tv(trials: int, cells: int, alpha: float = ALPHA, power: float = 0.99) -> float:
    """The smallest total-variation bias that a chi-square test of `trials` draws over `cells` cells detects
    with probability >= `power` at significance `alpha`, whatever the shape of the bias.

    A bias d (sum |d| = 2 TV) moves the statistic's noncentrality to trials * sum d^2 / p, which is at
    least trials * 4 TV^2 (Cauchy-Schwarz), with equality when d is proportional to p; the test's power
    at a noncentrality is the noncentral chi-square's tail beyond the critical value. Cells are counted
    after pooling, and a bias inside the pooled cell is not seen.
    """
    df = cells - 1
    critical = chi2.isf(alpha, df)
    noncentrality = brentq(lambda nc: ncx2.sf(critical, df, nc) - power, 1e-9, 1e9)
    return math.sqrt(noncentrality / (4 * trials))


def pooled_cells(expected_probs: dict, trials: int) -> int:
    """How many cells `chi_square_pvalue` tests after pooling those expected fewer than 5 times."""
    kept = [prob for prob in expected_probs.values() if prob * trials >= 5]
    return len(kept) + (len(kept) < len(expected_probs))


def exact_distribution(pair, prompt, sampling):
    """P(first two tokens) of the target by enumeration: p(x1) * p(x2 | x1), warped like decoding."""
    model = pair.target.model
    prompt_ids = pair.encode(prompt)
    vocab = pair.target_runner.vocab_size
    with torch.no_grad():
        first = warp_probs(model(torch.tensor([prompt_ids], device=model.device)).logits[0, -1, :vocab], sampling)
        candidates = first.nonzero()[:, 0].tolist()
        batch = torch.tensor([prompt_ids + [token] for token in candidates], device=model.device)
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
