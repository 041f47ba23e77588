"""The theory for each kind of draft: alpha of the rejection rule and of point-mass verification, c, speedups."""

import pytest
import torch

from biglittle.cost.theory import (
    acceptance_rate,
    cost_per_proposed_token,
    expected_speedup,
    point_mass_acceptance_rate,
    speedup_by_gamma,
)
from biglittle.decoding.acceptance import rejection_sample

TARGET = [0.5, 0.3, 0.15, 0.05]
DRAFT = [0.25, 0.25, 0.25, 0.25]


def simulated_acceptance(draft_probs, point_masses: bool, trials=20000) -> float:
    """How often the rule keeps one token drawn from the draft: with q known, or verified as a point mass."""
    generator = torch.Generator().manual_seed(0)
    target, draft = torch.tensor([TARGET, TARGET]), torch.tensor([draft_probs])
    accepted = 0
    for _ in range(trials):
        token = int(torch.multinomial(draft[0], 1, generator=generator))
        verdict = rejection_sample([token], None if point_masses else draft, target, generator)
        accepted += verdict.num_accepted
    return accepted / trials


def test_acceptance_rate_is_the_rejection_rules():
    assert acceptance_rate(TARGET, DRAFT) == pytest.approx(0.25 + 0.25 + 0.15 + 0.05)
    assert simulated_acceptance(DRAFT, point_masses=False) == pytest.approx(acceptance_rate(TARGET, DRAFT), abs=0.015)


def test_point_mass_verification_accepts_less_and_its_rate_is_sum_of_p_times_q():
    expected = point_mass_acceptance_rate(TARGET, DRAFT)
    assert expected == pytest.approx(0.25)
    assert simulated_acceptance(DRAFT, point_masses=True) == pytest.approx(expected, abs=0.015)
    assert expected < acceptance_rate(TARGET, DRAFT)
    argmax = [1.0, 0.0, 0.0, 0.0]  # a deterministic draft loses nothing
    assert point_mass_acceptance_rate(TARGET, argmax) == acceptance_rate(TARGET, argmax) == 0.5


def test_a_draft_that_costs_nothing_pays_where_verification_is_cheap():
    alpha = 0.2  # a bigram-like alpha
    flat = speedup_by_gamma(alpha, [1, 2, 4], c=0.0)
    assert flat == {gamma: pytest.approx((1 - alpha ** (gamma + 1)) / (1 - alpha)) for gamma in (1, 2, 4)}
    assert all(speedup > 1 for speedup in flat.values())
    cpu = speedup_by_gamma(alpha, [1, 2, 4], c=0.0, cost_curve={2: 1.84, 3: 2.5, 5: 3.2})  # fp32-like CPU curve
    assert all(speedup < 1 for speedup in cpu.values())
    assert cpu[2] == expected_speedup(alpha, 2, 0.0, {3: 2.5})


def test_cost_per_proposed_token_of_a_draft_with_another_tokenizer():
    # 12 draft steps of 10 ms produced 8 proposed target tokens; a target step takes 100 ms.
    assert cost_per_proposed_token(0.12, 8, 0.1) == pytest.approx(0.15)
    with pytest.raises(ValueError):
        cost_per_proposed_token(0.12, 0, 0.1)
