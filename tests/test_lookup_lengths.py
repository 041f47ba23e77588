"""--drafter ngram --gamma auto: how many looked-up tokens each round proposes, by the length of the match that
found them, learned from the verdicts; worked out by hand on hand-made costs, then in the drafter."""

import pytest

from biglittle.cost.lookup_lengths import LookupLengths
from biglittle.cost.match_chances import PRIOR_CHANCE, PRIOR_TRIES
from biglittle.cost.tree_policy import TreeCosts
from biglittle.decoding.drafters import NgramDrafter

STEEP = [1.0 + 0.25 * k for k in range(16)]  # each proposed token costs a quarter of a step
FLAT = [1.0 + 0.01 * k for k in range(16)]


def lengths(curve=STEEP, max_tokens=8):
    return LookupLengths(TreeCosts(curve, 0.0, [1.0]), max_tokens)


def test_the_chance_starts_at_the_prior_of_its_match_length_and_follows_the_verdicts():
    policy = lengths()
    assert [policy.chances.chance(n) for n in (1, 2, 3, 5)] == [PRIOR_CHANCE[n] for n in (1, 2, 3, 3)]
    policy.learn(1, proposed=4, accepted=0)  # one try, rejected
    policy.learn(1, proposed=2, accepted=2)  # two tries, accepted
    assert policy.chances.chance(1) == pytest.approx((2 + PRIOR_CHANCE[1] * PRIOR_TRIES) / (3 + PRIOR_TRIES))
    assert policy.chances.chance(2) == PRIOR_CHANCE[2]  # another match length: untouched


def test_long_matches_propose_long_short_ones_little_and_none_once_they_keep_failing():
    policy = lengths()
    # chance 0.8 (3-token match): the k-th token is worth 0.8^k against its 0.25 steps while 0.8^k > 0.25: k <= 6
    assert policy.length(3, available=10) == 6
    assert policy.length(3, available=2) == 2  # no more than the text offers
    assert policy.length(1, available=10) == 1  # 0.3 > 0.25, 0.09 is not
    for _ in range(5):
        policy.learn(1, proposed=1, accepted=0)  # 1-token matches miss (a translation)
    assert policy.length(1, available=10) == 0
    assert policy.length(0, available=10) == 0  # no match, no proposal
    flat = lengths(FLAT)  # verification nearly free: a token is worth its 0.01 steps while its chance is more
    assert flat.length(1, available=10) == 3  # 0.3^3 = 0.027, 0.3^4 = 0.008
    assert flat.length(3, available=10) == 8  # 0.8^8 = 0.17: up to max_tokens


def test_the_rate_achieved_raises_the_bar_for_each_token():
    policy = lengths()
    for _ in range(10):
        policy.learn(3, proposed=6, accepted=6)  # 7 tokens for 2.5 steps
    assert policy.rate() == pytest.approx(7 / 2.5)
    # chance now (60 + 1.6) / (60 + 2): a token is worth it while 0.99^k > 2.8 x 0.25: all 8 allowed
    assert policy.length(3, available=10) == 8
    assert policy.length(2, available=10) == 0  # 0.5 < 0.7: no longer worth a quarter step


def test_the_drafter_proposes_what_the_policy_allows_and_tells_it_the_verdict():
    policy = lengths()
    drafter = NgramDrafter(vocab_size=20, eos_token_ids={1}, lengths=policy)
    drafter.start([])
    assert drafter.propose([4, 9, 2, 9], 8, None).tokens == [2]  # a 1-token match: one token, as above
    drafter.retain(4, ())  # rejected
    history = [5, 6, 7, 8, 9, 10, 11, 12, 13, 3, 5, 6, 7]  # (5, 6, 7) matched: 3 tokens, 8 available
    assert drafter.propose(history, 8, None).tokens == [8, 9, 10, 11, 12, 13]  # 6, as above
    drafter.retain(len(history), (0, 1))  # two accepted, the third rejected
    assert policy.chances._counts[1] == [0.0, 1.0] and policy.chances._counts[3] == [2.0, 3.0]


def scan(history, max_ngram, max_tokens):
    """What prompt lookup must find: the latest earlier occurrence of the longest suffix, by brute force."""
    for n in range(min(max_ngram, len(history) - 1), 0, -1):
        for start in range(len(history) - n - 1, -1, -1):
            if history[start : start + n] == history[-n:]:
                return history[start + n : start + n + max_tokens], n
    return [], 0


def test_the_indexed_lookup_finds_what_a_scan_of_the_whole_text_finds():
    import random

    rng = random.Random(0)
    drafter = NgramDrafter(vocab_size=6, eos_token_ids=set())
    for _ in range(200):
        text = [rng.randrange(6)]
        for _ in range(rng.randrange(1, 40)):  # a growing text, as a generation's: indexed incrementally
            text.append(rng.randrange(6))
            max_tokens = rng.randrange(1, 6)
            assert drafter.lookup(text, max_tokens) == scan(text, 3, max_tokens)
