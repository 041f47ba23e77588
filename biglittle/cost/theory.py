"""The analysis of speculative decoding (Leviathan et al. 2023, section 3), in plain Python.

alpha: the probability that one draft token is accepted (assumed independent per position).
gamma: draft tokens proposed per iteration.
c: the draft's cost per token relative to one target forward of a single token, T(1).
cost_curve: T(k) / T(1) for the target scoring k tokens in one pass. The paper assumes 1 for
every k (idle parallel hardware); on a CPU it grows with k and decides whether speculation pays.

Each kind of draft is the same formula with its own alpha and c: a little model (c = its step over
the target's), a draft that costs nothing (unigram, bigram: c close to 0, which still pays where
T(gamma+1)/T(1) is small, section 3.5 of the paper), a draft with another tokenizer (c = its time
per proposed target token, `cost_per_proposed_token`, since its steps are not one target token each;
its tokens are verified as point masses, whose acceptance is `point_mass_acceptance_rate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

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


def speedup_by_gamma(alpha: float, gammas: Iterable[int], c: float, cost_curve: CostCurve = None) -> dict[int, float]:
    """{gamma: expected_speedup} over `gammas`: the theory's column beside a measured gamma sweep."""
    return {gamma: expected_speedup(alpha, gamma, c, cost_curve) for gamma in gammas}


def cost_per_proposed_token(draft_seconds: float, proposed_tokens: int, target_step_s: float) -> float:
    """c of a draft whose steps are not one proposed token each (another tokenizer, a lookup): its time per
    proposed token over one target step."""
    if proposed_tokens <= 0 or target_step_s <= 0:
        raise ValueError("needs proposed tokens and a positive target step time")
    return draft_seconds / proposed_tokens / target_step_s


def acceptance_rate(target_probs: Sequence[float], draft_probs: Sequence[float]) -> float:
    """alpha at one position under the rejection rule: sum of min(p, q) = 1 - D_LK(p, q), the total variation
    distance (Leviathan et al., definition 3.2 and theorem 3.5). p and q over the same vocabulary."""
    return sum(min(p, q) for p, q in zip(target_probs, draft_probs, strict=True))


def point_mass_acceptance_rate(target_probs: Sequence[float], draft_probs: Sequence[float]) -> float:
    """alpha when a token drawn from q is verified as a point mass (the verifier does not know q, as for a draft
    with another tokenizer): sum of q(x) p(x), never above `acceptance_rate`; equal for a deterministic draft."""
    return sum(p * q for p, q in zip(target_probs, draft_probs, strict=True))
