"""--tree auto: how many nodes to propose, whether to grow another level, whether to run the little model, and what
the verdicts teach; on hand-made costs whose answers are worked out here."""

import pytest

from biglittle.cost.tree_policy import TreeCosts, TreePolicy, best_count, plan

FLAT = [1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.45, 1.5, 1.55, 1.6, 1.65, 1.7, 1.75]


def costs(draft=0.1, verify=FLAT):
    return TreeCosts(verify, draft, [1.0] * 16)


def test_the_best_count_maximises_the_gain_over_the_rate_achieved():
    curve = costs(verify=[1.0, 1.1, 1.2, 1.3])
    # value - 1 x cost for n = 0..3: 1 - 1, 1.9 - 1.1, 2.4 - 1.2, 2.5 - 1.3 -> n = 2 (ties keep the smaller n)
    count, gain = best_count([0.5, 0.9, 0.1], spent=0.0, costs=curve, max_nodes=15)
    assert count == 2 and gain == pytest.approx(1.2)
    # at 2 tokens per step already: 1 - 2, 1.9 - 2.2, 2.4 - 2.4, 2.5 - 2.6 -> still n = 2, gaining 0
    assert best_count([0.5, 0.9, 0.1], 0.0, curve, 15, rate=2.0) == (2, pytest.approx(0.0))
    # at 5: a node must be worth more than 5 x its 0.1 steps of verification: only the 0.9 one is (0.5 just ties)
    assert best_count([0.5, 0.9, 0.1], 0.0, curve, 15, rate=5.0)[0] == 1
    # a verification pass that costs a step per token never pays for chances below 1, whatever was spent drafting
    assert best_count([0.9, 0.8], 0.9, costs(verify=[1.0, 2.0, 3.0]), 15)[0] == 0
    assert best_count([0.9] * 20, 0.0, costs(), max_nodes=4)[0] == 4  # never beyond the measured budget


def test_growing_another_level_only_where_it_pays():
    policy = TreePolicy(costs(draft=0.1), width=2, max_depth=4)
    # now: one node at 0.8 gains 1.8 - 1.05 = 0.75; feeding it (0.1) for two children at the prior 0.5 each
    # (0.4, 0.4): 2.6 - (0.1 + 1.15) = 1.35
    assert policy.expansion([0.8], [0.8], depth=2, spent=0.0) == 1
    assert TreePolicy(costs(draft=2.0), width=2, max_depth=4).expansion([0.8], [0.8], 2, 0.0) == 0
    assert policy.expansion([0.8], [0.8], depth=5, spent=0.0) == 0  # beyond the depth allowed
    # two frontier nodes at 0.8 and 0.1: the second's children (0.05 each) are not worth its share of the pass
    cheap_wide = TreePolicy(TreeCosts(FLAT, 0.1, [1.0, 1.9]), width=2, max_depth=4)
    assert cheap_wide.expansion([0.8, 0.1], [0.8, 0.1], depth=2, spent=0.0) == 1


def test_the_expected_children_follow_the_measured_chances_by_depth_and_rank():
    policy = TreePolicy(costs(), width=2, max_depth=4)
    for _ in range(99):
        policy.observe_child(2, 0, 0.9)
        policy.observe_child(2, 1, 0.05)
    assert policy.expected_child(2, 0) == pytest.approx((0.5 + 99 * 0.9) / 100)
    assert policy.expected_child(2, 1) == pytest.approx((0.5 + 99 * 0.05) / 100)
    assert policy.expected_child(3, 0) == 0.5  # nothing seen there: the prior


def test_calibration_scales_the_little_models_probabilities_by_depth():
    policy = TreePolicy(costs(), width=2, max_depth=4)
    for _ in range(9):
        policy.learn_model_node(depth=1, probability=0.8, accepted=False)  # overconfident at depth 1
    policy.learn_model_node(1, 0.8, True)
    # (1 + 1 accepted) / (1 + 10 * 0.8 predicted) = 2 / 9
    assert policy.chance(1, 0.9) == pytest.approx(0.9 * 2 / 9)
    assert policy.chance(2, 0.9) == pytest.approx(0.9)  # depth 2 untouched


def test_the_little_model_runs_while_its_rounds_pay_more_than_lookups_alone():
    policy = TreePolicy(costs(), width=2, max_depth=4, probe_every=5)
    assert policy.use_model()  # first: try the model
    policy.learn_round(tokens=3, cost=2.0)  # 1.5 per step
    assert not policy.use_model()  # then the other kind
    policy.learn_round(tokens=1, cost=1.0)  # 1.0 per step
    assert [policy.use_model() for _ in range(3)] == [True, True, False]  # the 5th round probes the loser
    policy.learn_round(tokens=0, cost=10.0)  # that probe: lookups alone now at 1 / 11 per step
    assert policy.use_model()
    policy.learn_round(tokens=0, cost=100.0)  # the model's rounds: 3 / 102 per step now
    assert not policy.use_model()


def test_the_plan_grows_deeper_where_the_little_model_is_cheap_and_not_at_all_where_verification_is_dear():
    top_heavy = [0.8, 0.1]
    cheap = plan(costs(draft=0.05), top_heavy, max_depth=6)
    dear = plan(costs(draft=0.5), top_heavy, max_depth=6)
    assert cheap.levels > dear.levels >= 1 and cheap.nodes >= dear.nodes
    assert cheap.speedup > dear.speedup > 0
    # level 1 alone (0.05) and two nodes at 0.8, 0.1 verified at T(3) = 1.1: (1 + 0.9) / 1.15
    one_level = plan(costs(draft=0.05), top_heavy, max_depth=1)
    assert (one_level.levels, one_level.nodes) == (1, 2)
    assert one_level.speedup == pytest.approx(1.9 / 1.15)
    steep = plan(costs(draft=0.05, verify=[float(k) for k in range(1, 17)]), top_heavy, max_depth=6)
    assert steep.nodes == 0 and steep.speedup < 1  # the little model's first pass was spent for nothing


def test_with_lookups_the_first_rounds_are_theirs_and_the_first_probe_brings_the_little_model_in():
    policy = TreePolicy(costs(), width=2, max_depth=4, probe_every=4, model_first=False)
    assert [policy.use_model() for _ in range(3)] == [False, False, False]  # its first pass would read the prompt
    policy.learn_round(tokens=3, cost=3.0)  # lookups alone: 1 per step
    assert policy.use_model()  # the 4th round probes it
    policy.learn_round(tokens=4, cost=2.0)  # 2 per step: it paid more
    assert policy.use_model()


def test_a_cost_curve_that_dips_by_noise_is_read_as_never_falling():
    dipping = TreeCosts([1.0, 0.82, 0.81, 1.09], 0.4, [1.0, 0.9, 1.2])
    assert [dipping.verification(n) for n in range(4)] == [1.0, 1.0, 1.0, 1.09]
    assert dipping.level(2) == pytest.approx(0.4) and dipping.level(3) == pytest.approx(0.48)
