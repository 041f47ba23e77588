"""Goodness-of-fit helper for the distribution tests."""

from __future__ import annotations

import numpy as np
from scipy.stats import chisquare

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
