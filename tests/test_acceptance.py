"""The acceptance rules on hand-made distributions, where every verdict can be worked out by hand."""

from collections import Counter

import pytest
import torch
from exact import enumerate_runs
from stats_checks import ALPHA, chi_square_pvalue, detectable_tv

from biglittle.decoding import sampling
from biglittle.decoding.acceptance import bild_rollback, greedy_match, rejection_sample, residual_distribution
from biglittle.decoding.sampling import SamplingConfig

NEG = float("-inf")


def one_hot_logits(choices, vocab=5):
    """Logits whose argmax at row i is choices[i] (+10 there, -10 elsewhere)."""
    logits = torch.full((len(choices), vocab), -10.0)
    logits[torch.arange(len(choices)), torch.tensor(choices)] = 10.0
    return logits


@pytest.mark.parametrize(
    "drafts,target_choices,accepted,next_token",
    [
        ([1, 2, 3], [1, 2, 3, 4], 3, 4),  # all accepted, bonus token
        ([1, 2, 3], [1, 0, 3, 4], 1, 0),  # second draft rejected, target's token instead
        ([1, 2, 3], [2, 2, 3, 4], 0, 2),  # first rejected: later matches do not count
        ([], [3], 0, 3),  # nothing proposed: plain decoding
    ],
)
def test_greedy_match(drafts, target_choices, accepted, next_token):
    verdict = greedy_match(drafts, one_hot_logits(target_choices))
    assert (verdict.num_accepted, verdict.next_token) == (accepted, next_token)


def test_identical_draft_and_target_accept_everything():
    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
    for _ in range(200):
        drafts = [int(torch.multinomial(row, 1, generator=generator)) for row in probs[:2]]
        assert rejection_sample(drafts, probs[:2], probs, generator).num_accepted == 2


def test_token_the_target_never_emits_is_always_rejected():
    generator = torch.Generator().manual_seed(0)
    draft_probs = torch.tensor([[0.5, 0.5, 0.0]])
    target_probs = torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    for _ in range(200):
        verdict = rejection_sample([0], draft_probs, target_probs, generator)
        assert verdict.num_accepted == 0
        assert verdict.next_token == 2  # norm(max(0, p - q)) = [0, 0, 1]


def test_residual_distribution():
    target = torch.tensor([0.5, 0.3, 0.2])
    draft = torch.tensor([0.2, 0.6, 0.2])
    assert torch.allclose(residual_distribution(target, draft), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(residual_distribution(target, target), target)  # nothing left: guard returns p


def random_pair(seed, vocab=6, gamma=3):
    """Hand-made q (gamma rows) and p (gamma + 1 rows), fixed per position: row i serves draft position i."""
    generator = torch.Generator().manual_seed(seed)
    draft_probs = torch.rand(gamma, vocab, generator=generator).pow(2)
    target_probs = torch.rand(gamma + 1, vocab, generator=generator).pow(2)
    return draft_probs / draft_probs.sum(-1, keepdim=True), target_probs / target_probs.sum(-1, keepdim=True)


def one_round(draft_probs, target_probs, generator):
    """Drafts drawn from q, the rule applied: (drafts, verdict)."""
    drafts = [sampling.sample(row, generator) for row in draft_probs]  # looked up at call time: enumerable
    return drafts, rejection_sample(drafts, draft_probs, target_probs, generator)


def emitted(drafts, verdict):
    """The tokens one round writes: the accepted drafts, then the rule's own token."""
    return tuple(drafts[: verdict.num_accepted]) + (verdict.next_token,)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rejection_sampling_is_exact_at_every_position(seed):
    """Zero-noise check by enumeration (tests/exact.py): given that the first i drafts passed, the round's
    (i + 1)-th token follows p_i, for i = 0 (correction or draft), 1 and 2 (the residual at later positions)
    and 3 (the bonus token)."""
    draft_probs, target_probs = random_pair(seed)
    outputs, pruned = enumerate_runs(lambda: emitted(*one_round(draft_probs, target_probs, None)))
    assert pruned == 0 and sum(outputs.values()) == pytest.approx(1.0)
    for position, row in enumerate(target_probs.double()):
        reached = {out: prob for out, prob in outputs.items() if len(out) > position}
        total = sum(reached.values())
        for token in range(row.numel()):
            mass = sum(prob for out, prob in reached.items() if out[position] == token)
            assert mass / total == pytest.approx(float(row[token]), abs=1e-6), (position, token)


def run_rejection_trials(draft_probs, target_probs, trials, seed):
    """Counts of the round's first token, and of its second token where the first draft passed."""
    generator = torch.Generator().manual_seed(seed)
    first, second = Counter(), Counter()
    for _ in range(trials):
        tokens = emitted(*one_round(draft_probs, target_probs, generator))
        first[tokens[0]] += 1
        if len(tokens) > 1:
            second[tokens[1]] += 1
    return first, second


# 6,000 rounds: the first token's test (6 cells) detects any bias of total variation >= 0.042 with 99%
# power at ALPHA; the second token's (about 6,000 x P(first draft passes) tallies, asserted below) any >= 0.065.
REJECTION_TRIALS, FIRST_TV, SECOND_TV = 6000, 0.042, 0.065


@pytest.mark.parametrize("seed", [0, 1])
def test_rejection_sampling_emits_the_target_distribution(seed):
    draft_probs, target_probs = random_pair(seed)
    first, second = run_rejection_trials(draft_probs, target_probs, REJECTION_TRIALS, seed)
    assert detectable_tv(REJECTION_TRIALS, 6) <= FIRST_TV and detectable_tv(sum(second.values()), 6) <= SECOND_TV
    assert chi_square_pvalue(first, dict(enumerate(target_probs[0].tolist()))) > ALPHA
    assert chi_square_pvalue(second, dict(enumerate(target_probs[1].tolist()))) > ALPHA
    # Power: the same counts are clearly not the draft's distribution.
    assert chi_square_pvalue(first, dict(enumerate(draft_probs[0].tolist()))) < ALPHA


def test_bonus_token_follows_the_last_target_distribution():
    """3,000 bonus tokens over 3 cells: detects a bias of total variation >= 0.055 with 99% power at ALPHA."""
    assert detectable_tv(3000, 3) <= 0.055
    draft_probs = torch.tensor([[0.5, 0.5, 0.0]])
    target_probs = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.3, 0.6]])
    generator = torch.Generator().manual_seed(0)
    bonus = Counter(rejection_sample([0], draft_probs, target_probs, generator).next_token for _ in range(3000))
    assert chi_square_pvalue(bonus, {0: 0.1, 1: 0.3, 2: 0.6}) > ALPHA


def test_same_seed_same_verdicts():
    draft_probs = torch.tensor([[0.3, 0.7], [0.6, 0.4]])
    target_probs = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])

    def verdicts(seed):
        generator = torch.Generator().manual_seed(seed)
        return [rejection_sample([1, 0], draft_probs, target_probs, generator) for _ in range(50)]

    assert verdicts(7) == verdicts(7)
    assert verdicts(7) != verdicts(8)


# BiLD rollback -----------------------------------------------------------------------------


def big_logits(rows):
    """Rows of log-probabilities given as dicts token -> probability (vocab 5, rest tiny)."""
    logits = torch.full((len(rows), 5), -30.0)
    for i, row in enumerate(rows):
        for token, prob in row.items():
            logits[i, token] = torch.log(torch.tensor(prob))
    return logits


GREEDY = SamplingConfig()


def test_no_rollback_when_the_big_model_finds_every_token_likely():
    rows = [{1: 0.9, 2: 0.1}, {2: 0.8, 3: 0.2}, {4: 1.0}]
    verdict = bild_rollback([1, 2], big_logits(rows), 2.0, GREEDY, None)
    assert (verdict.num_accepted, verdict.next_token, verdict.rolled_back) == (2, 4, False)


def test_rollback_at_the_first_unlikely_token_that_the_big_model_would_not_choose():
    # -log p: token 3 at row 1 has p = 0.01 -> 4.6 > 2; the big model chooses 2 there.
    rows = [{1: 0.9, 2: 0.1}, {2: 0.99, 3: 0.01}, {3: 1.0}, {0: 1.0}]
    verdict = bild_rollback([1, 3, 3], big_logits(rows), 2.0, GREEDY, None)
    assert (verdict.num_accepted, verdict.next_token, verdict.rolled_back) == (1, 2, True)


def test_every_position_above_the_threshold_is_examined():
    # Row 0: the little token is above the threshold but is the big model's own choice (kept);
    # the reference implementation would stop looking there and keep the bad token at row 2.
    rows = [{1: 0.05, 0: 0.04}, {2: 1.0}, {4: 0.99, 3: 0.01}, {0: 1.0}]
    verdict = bild_rollback([1, 2, 3], big_logits(rows), 2.0, GREEDY, None)
    assert (verdict.num_accepted, verdict.next_token, verdict.rolled_back) == (2, 4, True)


def test_zero_threshold_replaces_every_token_that_differs_from_the_big_argmax():
    rows = [{1: 0.6, 2: 0.4}, {2: 0.55, 3: 0.45}, {0: 1.0}]
    verdict = bild_rollback([1, 3], big_logits(rows), 0.0, GREEDY, None)
    assert (verdict.num_accepted, verdict.next_token) == (1, 2)


def test_sampled_replacement_comes_from_the_big_distribution():
    # About 2,000 replacements over 2 cells: detects a bias of total variation >= 0.064 with 99% power at ALPHA.
    assert detectable_tv(1980, 2) <= 0.064
    rows = [{0: 0.001, 1: 0.5, 2: 0.499}, {0: 1.0}]
    generator = torch.Generator().manual_seed(0)
    config = SamplingConfig(temperature=1.0)
    replacements = Counter()
    for _ in range(2000):
        verdict = bild_rollback([0], big_logits(rows), 5.0, config, generator)
        if verdict.rolled_back:
            replacements[verdict.next_token] += 1
    # Every draw differs from token 0 except with p = 0.001, so nearly every trial rolls back.
    assert sum(replacements.values()) > 1980
    assert chi_square_pvalue(replacements, {1: 0.5 / 0.999, 2: 0.499 / 0.999}) > ALPHA


def test_drafts_without_distributions_are_point_masses():
    """A draft chosen without randomness (n-gram lookup, top-1) has q = a point mass: it survives with
    probability p(x), and a rejection draws from p without x, so the first token follows p exactly."""
    target = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    outputs, pruned = enumerate_runs(lambda: emitted([1], rejection_sample([1], None, target, None)))
    assert pruned == 0
    first = Counter()
    for out, prob in outputs.items():
        first[out[0]] += prob
    assert [first[token] for token in range(3)] == pytest.approx([0.2, 0.5, 0.3], abs=1e-6)
    assert outputs[(1, 2)] == pytest.approx(0.5 * 0.8, abs=1e-6)  # accepted, then the bonus token from row 1
