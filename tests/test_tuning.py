"""The cost-aware gamma chooser and the cost profile."""

import functools
import random
from collections import Counter

import pytest
from conftest import PROMPTS

from biglittle.cost.gamma import GammaChooser
from biglittle.cost.profile import CostProfile, profile_steps
from biglittle.cost.theory import best_gamma


def counts_for(alpha, rounds=100_000, positions=12):
    """Per-position counts of a draft accepted with probability alpha at every position."""
    proposed = Counter({i: rounds for i in range(positions)})
    accepted = Counter({i: round(alpha * rounds) for i in range(positions)})
    return accepted, proposed


CURVES = {
    "flat (idle parallel hardware)": [1.0] * 10,
    "cpu fp32": [1.0, 1.84, 2.5, 3.05, 3.2, 3.39, 3.35, 3.24, 3.3, 3.4],
    "cpu int8": [1.0, 1.04, 1.05, 1.07, 1.2, 1.38, 1.5, 1.66, 1.8, 2.0],
}


@pytest.mark.parametrize("curve", list(CURVES), ids=list(CURVES))
@pytest.mark.parametrize("alpha", [0.3, 0.6, 0.8, 0.95])
@pytest.mark.parametrize("c", [0.05, 0.25])
def test_chooser_picks_the_gamma_theory_says(curve, alpha, c):
    profile = CostProfile(target_step_s=1.0, draft_step_s=c, verify_cost=CURVES[curve])
    chooser = GammaChooser(profile, max_gamma=8, wait_rounds=0)
    expected, _ = best_gamma(alpha, c, CURVES[curve], max_gamma=8)
    assert chooser.choose(*counts_for(alpha)) == expected


def test_plain_decoding_near_break_even_with_occasional_probes():
    profile = CostProfile(1.0, 0.3, CURVES["cpu int8"])  # at alpha 0.3, gamma = 1 gives 1.3 / 1.34 tokens per step
    chooser = GammaChooser(profile, probe_every=4, wait_rounds=0)
    assert 0.9 <= max(chooser.rates(*counts_for(0.3))[1:]) < 1.0
    choices = [chooser.choose(*counts_for(0.3)) for _ in range(12)]
    assert choices == [0, 0, 0, 1] * 3


def test_no_probes_where_speculation_is_far_from_paying():
    """A probe costs the little model's catch-up over the whole text: not worth it far below break-even."""
    profile = CostProfile(1.0, 0.45, CURVES["cpu fp32"])
    chooser = GammaChooser(profile, probe_every=4, wait_rounds=0)
    assert max(chooser.rates(*counts_for(0.5))[1:]) < 0.9
    assert [chooser.choose(*counts_for(0.5)) for _ in range(12)] == [0] * 12


def test_acceptance_estimate_starts_at_the_prior_and_follows_the_data():
    chooser = GammaChooser(CostProfile(1.0, 0.1, [1.0] * 5), prior_alpha=0.6, prior_weight=2)
    assert chooser.acceptances(Counter(), Counter())[0] == pytest.approx(0.6)
    assert chooser.acceptances(Counter({0: 1}), Counter({0: 10}))[0] == pytest.approx((1 + 1.2) / 12)


def test_profile_round_trips_through_json():
    profile = CostProfile(0.45, 0.16, [1.0, 1.8, 3.0], [1.0, 1.5, 2.0], {"ar": 0.02})
    assert CostProfile.from_json(profile.to_json()) == profile
    assert profile.draft_cost == pytest.approx(0.16 / 0.45)


def test_measured_profile_is_kept_and_reused(decoder_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    decoder_pair._profile = None
    steps = []
    measured = decoder_pair.cost_profile(progress=lambda: steps.append(1))
    assert len(steps) == profile_steps(16, has_draft=True) == 192  # k = 1..16 for each model, in 6 sweeps
    assert len(measured.verify_cost) == len(measured.draft_verify_cost) == 16 and measured.draft_step_s > 0
    assert measured.verify_cost[0] == measured.draft_verify_cost[0] == 1.0
    assert set(measured.overhead) == {"ar", "speculative"} and all(0 <= s < 1 for s in measured.overhead.values())
    decoder_pair._profile = None
    assert decoder_pair.cost_profile() == measured  # read back from disk, not measured again
    assert len(list((tmp_path / "profiles").glob("*.json"))) == 1


@pytest.mark.parametrize("drafter", ["model", "ngram", "hybrid"])
def test_auto_gamma_keeps_greedy_identity(decoder_pair, drafter, monkeypatch):
    # A profile where drafting is nearly free, so the chooser speculates with growing gamma, from the first round
    # (the tiny model's answers are short).
    monkeypatch.setattr("biglittle.decoding.assemble.GammaChooser", functools.partial(GammaChooser, wait_rounds=0))
    decoder_pair._profile = CostProfile(1.0, 0.01, [1.0] * 10)
    try:
        gammas = Counter()
        for prompt in PROMPTS:
            ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=40)
            spec = decoder_pair.generate(prompt, method="speculative", gamma="auto", drafter=drafter, max_new_tokens=40)
            assert spec.token_ids == ar.token_ids
            gammas.update(spec.stats.proposed_by_position)
        assert gammas[0] > 0 and (drafter == "ngram" or max(gammas) >= 2)
    finally:
        decoder_pair._profile = None


def test_chooser_uses_each_positions_own_acceptance():
    """Acceptance 0.9 at draft position 0, 0.1 at position 1, 0.9 at position 2; verification costs the same
    for any gamma and a draft step 0.2 of a target step. Expected tokens per unit of time, by hand:
    gamma 0: 1 / 1 = 1;  gamma 1: (1 + 0.9) / 1.2 = 1.583;  gamma 2: (1.9 + 0.9 * 0.1) / 1.4 = 1.421;
    gamma 3: (1.99 + 0.9 * 0.1 * 0.9) / 1.6 = 1.294. Best: gamma 1 (one position off, 0.1 would be read for
    position 0 and plain decoding would win)."""
    proposed = Counter({0: 1000, 1: 1000, 2: 1000})
    accepted = Counter({0: 900, 1: 100, 2: 900})
    chooser = GammaChooser(CostProfile(1.0, 0.2, [1.0] * 4), max_gamma=3, prior_weight=0, wait_rounds=0)
    assert chooser.rates(accepted, proposed) == pytest.approx([1.0, 1.9 / 1.2, 1.99 / 1.4, 2.071 / 1.6])
    assert chooser.choose(accepted, proposed) == 1


def test_chooser_goes_deep_when_only_the_first_position_is_poor():
    """Acceptance 0.5 at position 0 and 0.95 after, flat verification, c = 0.1: by hand, gamma 1..3 give
    1.5 / 1.1 = 1.364, 1.975 / 1.2 = 1.646, 2.426 / 1.3 = 1.866, so the chooser drafts three."""
    proposed = Counter({0: 1000, 1: 1000, 2: 1000})
    accepted = Counter({0: 500, 1: 950, 2: 950})
    chooser = GammaChooser(CostProfile(1.0, 0.1, [1.0] * 4), max_gamma=3, prior_weight=0, wait_rounds=0)
    assert chooser.rates(accepted, proposed) == pytest.approx([1.0, 1.5 / 1.1, 1.975 / 1.2, 2.42625 / 1.3])
    assert chooser.choose(accepted, proposed) == 3


def test_gamma_is_capped_by_the_measured_verification_curve():
    chooser = GammaChooser(CostProfile(1.0, 0.01, [1.0] * 4), max_gamma=8)  # T(1..4) measured: gamma <= 3
    assert chooser.max_gamma == 3 and len(chooser.rates(*counts_for(0.95))) == 4


def test_probes_count_plain_rounds_from_the_last_speculative_one():
    chooser = GammaChooser(CostProfile(1.0, 0.3, CURVES["cpu int8"]), probe_every=4, wait_rounds=0)
    assert [chooser.choose(*counts_for(0.3)) for _ in range(3)] == [0, 0, 0]
    assert chooser.choose(*counts_for(0.9)) > 0  # speculation pays again: the plain-round count restarts
    assert [chooser.choose(*counts_for(0.3)) for _ in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]


def test_speculative_drafts_what_the_chooser_picks_within_the_budget():
    from biglittle.decoding.methods import Speculative
    from biglittle.decoding.sampling import SamplingConfig
    from biglittle.decoding.stats import GenerationStats

    stats = GenerationStats()
    stats.tried_by_position.update({0: 1000, 1: 1000, 2: 1000})
    stats.accepted_by_position.update({0: 500, 1: 950, 2: 950})  # the hand-computed case above: gamma 3
    method = Speculative(
        0, SamplingConfig(), chooser=GammaChooser(CostProfile(1.0, 0.1, [1.0] * 4), prior_weight=0, wait_rounds=0)
    )
    assert method.draft_budget(10, stats) == 3
    assert method.draft_budget(3, stats) == 2  # the target's own token must still fit


KEPT_INT8_PROFILE = CostProfile(1.0, 0.507, [1.0, 1.28, 1.21, 1.34, 1.41, 1.28, 1.35, 1.43])  # the built-in pair's


def simulated_choices(chooser, alpha, rounds, seed=0):
    """gamma per round, as speculative decoding asks the chooser (through its statistics), against a draft whose
    every token the target accepts with probability `alpha` given the one before."""
    from biglittle.decoding.methods import Speculative
    from biglittle.decoding.sampling import SamplingConfig
    from biglittle.decoding.stats import GenerationStats

    rng = random.Random(seed)
    method, stats, choices = Speculative(0, SamplingConfig(), chooser=chooser), GenerationStats(), []
    for _ in range(rounds):
        gamma = method.draft_budget(1 << 20, stats)
        stats.record_round(gamma, next((i for i in range(gamma) if rng.random() >= alpha), gamma))
        choices.append(gamma)
    return choices


def test_rounds_count_a_position_as_tried_only_when_the_ones_before_it_were_accepted():
    from biglittle.decoding.stats import GenerationStats

    stats = GenerationStats()
    stats.record_round(4, 1)  # accepted the first, rejected the second: the third and fourth were never judged
    stats.record_round(2, 2)
    assert stats.proposed_by_position == Counter({0: 2, 1: 2, 2: 1, 3: 1})
    assert stats.tried_by_position == Counter({0: 2, 1: 2})
    assert stats.accepted_by_position == Counter({0: 2, 1: 1})


def test_a_pessimistic_prior_does_not_keep_an_accurate_draft_untried():
    """At the built-in pair's costs the prior (acceptance 0.6) says speculation loses by more than the probe margin;
    an optimistic bound still probes, finds a draft right 97% of the time, and speculates from then on."""
    chooser = GammaChooser(KEPT_INT8_PROFILE, wait_rounds=0)
    assert max(chooser.rates(Counter(), Counter())[1:]) < chooser.probe_margin  # the margin alone never probes
    choices = simulated_choices(chooser, alpha=0.97, rounds=256)
    assert choices[:15] == [0] * 15 and choices[15] == 1  # plain rounds first, then a probe
    assert sum(gamma > 0 for gamma in choices[128:]) == 128
    assert Counter(choices[128:]).most_common(1)[0][0] == best_gamma(0.97, 0.507, KEPT_INT8_PROFILE.verify_cost)[0]


def test_optimism_fades_as_a_poor_draft_is_seen():
    chooser = GammaChooser(KEPT_INT8_PROFILE)
    choices = simulated_choices(chooser, alpha=0.3, rounds=512)
    assert set(choices) == {0, 1} and sum(choices) <= 4  # a few probes, all early
    assert choices[256:] == [0] * 256


KEPT_INT4_LITTLE_PROFILE = CostProfile(1.0, 0.355, [1.0, 1.18, 1.15, 1.19, 1.25, 1.2, 1.3, 1.27])  # the 0.5B in 4 bits


def test_the_little_model_waits_for_an_answer_long_enough_to_earn_its_first_pass_back():
    """Where speculation pays at the prior from the first round (the 4-bit little model's costs), the first
    wait_rounds rounds are still plain: an answer of 11 tokens (a translation's) never runs the little model; a long
    one drafts from then on."""
    chooser = GammaChooser(KEPT_INT4_LITTLE_PROFILE)
    assert max(chooser.rates(Counter(), Counter())[1:]) > 1.0  # the prior alone would speculate at once
    choices = simulated_choices(chooser, alpha=0.9, rounds=64)
    assert choices[: chooser.wait_rounds] == [0] * chooser.wait_rounds == [0] * 16
    assert all(gamma > 0 for gamma in choices[chooser.wait_rounds :])
