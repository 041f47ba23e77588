import random

import pytest

from biglittle.cost.theory import best_gamma, expected_speedup, expected_tokens_per_iteration


@pytest.mark.parametrize("alpha,gamma,expected", [(0.0, 4, 1.0), (0.5, 1, 1.5), (0.5, 3, 1.875), (1.0, 4, 5.0)])
def test_expected_tokens_per_iteration(alpha, gamma, expected):
    assert expected_tokens_per_iteration(alpha, gamma) == pytest.approx(expected)


@pytest.mark.parametrize("alpha,gamma", [(0.3, 2), (0.7, 4), (0.9, 6)])
def test_formula_matches_simulated_acceptance(alpha, gamma):
    rng = random.Random(0)
    trials = 20000
    total = 0
    for _ in range(trials):
        accepted = 0
        while accepted < gamma and rng.random() < alpha:
            accepted += 1
        total += accepted + 1  # the correction or bonus token
    assert total / trials == pytest.approx(expected_tokens_per_iteration(alpha, gamma), rel=0.02)


def test_speedup_is_the_papers_formula_without_a_cost_curve():
    alpha, gamma, c = 0.8, 4, 0.05
    paper = (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))
    assert expected_speedup(alpha, gamma, c) == pytest.approx(paper)


def test_cost_curve_slows_the_prediction_down():
    flat = expected_speedup(0.8, 4, 0.1)
    steep = expected_speedup(0.8, 4, 0.1, {5: 3.0})
    assert steep == pytest.approx(flat * (4 * 0.1 + 1) / (4 * 0.1 + 3.0))


def test_best_gamma_grows_with_alpha_on_idle_hardware():
    low, _ = best_gamma(0.5, 0.05)
    high, speedup = best_gamma(0.95, 0.05)
    assert 1 <= low < high
    assert speedup > 3


def test_best_gamma_is_zero_when_verification_is_too_expensive():
    gamma, speedup = best_gamma(0.5, 0.3, cost_curve=lambda k: float(k))
    assert gamma == 0 and speedup == 1.0


def test_best_gamma_stays_within_a_measured_cost_curve():
    curve = [1.0, 1.1, 1.2, 1.3]  # T(1)..T(4): gamma can be at most 3
    gamma, _ = best_gamma(0.99, 0.01, cost_curve=curve)
    assert gamma == 3
