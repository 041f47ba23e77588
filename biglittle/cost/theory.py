"""The analysis of speculative decoding (Leviathan et al. 2023, section 3), in plain Python.

alpha: the probability that one draft token is accepted (assumed independent per position).
gamma: draft tokens proposed per iteration.
c: the draft's cost per token relative to one target forward of a single token, T(1).
cost_curve: T(k) / T(1) for the target scoring k tokens in one pass. The paper assumes 1 for
every k (idle parallel hardware); on a CPU it grows with k and decides whether speculation pays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

CostCurve = Callable[[int], float] | Mapping[int, float] | Sequence[float] | None


def expected_tokens_per_iteration(alpha: float, gamma: int) -> float:
    """E[tokens emitted per target call] = (1 - alpha^(gamma+1)) / (1 - alpha)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 1.0:
        return gamma + 1.0
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def relative_cost(cost_curve: CostCurve, num_tokens: int) -> float:
    """T(num_tokens) / T(1) from a callable, a mapping, or a sequence indexed by k - 1."""
    if cost_curve is None or num_tokens == 1:
        return 1.0
    if callable(cost_curve):
        return float(cost_curve(num_tokens))
    if isinstance(cost_curve, Mapping):
        return float(cost_curve[num_tokens])
    return float(cost_curve[num_tokens - 1])


def expected_speedup(alpha: float, gamma: int, c: float, cost_curve: CostCurve = None) -> float:
    """Expected wall-time speedup over plain decoding with the target.

    One iteration costs gamma draft steps (gamma * c) plus one target pass over gamma + 1
    tokens (T(gamma+1)/T(1)), and emits expected_tokens_per_iteration tokens; plain decoding
    emits one token per unit cost. With cost_curve None this is the paper's formula
    (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)).
    """
    if gamma == 0:
        return 1.0
    cost = gamma * c + relative_cost(cost_curve, gamma + 1)
    return expected_tokens_per_iteration(alpha, gamma) / cost


def best_gamma(alpha: float, c: float, cost_curve: CostCurve = None, max_gamma: int = 16) -> tuple[int, float]:
    """(gamma, speedup) maximising the expected speedup over 0..max_gamma; 0 means do not speculate."""
    candidates = []
    for gamma in range(max_gamma + 1):
        try:
            candidates.append((gamma, expected_speedup(alpha, gamma, c, cost_curve)))
        except (KeyError, IndexError):  # the cost curve was not measured this far
            break
    return max(candidates, key=lambda pair: pair[1])
