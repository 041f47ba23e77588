"""N-gram (prompt lookup) and hybrid drafting: the lookup itself, greedy identity, exact distribution."""

from collections import Counter

import pytest
from conftest import PROMPTS, SEQ2SEQ_PROMPTS
from stats_checks import ALPHA, chi_square_pvalue, detectable_tv, exact_distribution, pooled_cells, sample_first_two

from biglittle.cost.lookup_lengths import LookupLengths
from biglittle.cost.tree_policy import TreeCosts
from biglittle.decoding.drafters import HybridDrafter, NgramDrafter
from biglittle.decoding.proposal import Proposal
from biglittle.decoding.sampling import SamplingConfig

EOS = 1


def propose(history, max_tokens=4, max_ngram=3, prompt=None):
    drafter = NgramDrafter(vocab_size=20, eos_token_ids={EOS}, max_ngram=max_ngram, search_prompt=prompt is not None)
    drafter.start(prompt or [])
    return drafter.propose(history, max_tokens, None)


def test_proposes_what_followed_the_latest_occurrence_of_the_longest_suffix():
    history = [5, 6, 7, 8, 9, 6, 7, 3, 5, 6, 7]
    proposal = propose(history)  # (5, 6, 7) occurred at 0; the 2-gram (6, 7) at 5 is later but shorter
    assert proposal.tokens == [8, 9, 6, 7]
    assert propose(history, max_ngram=2).tokens == [3, 5, 6, 7]  # now the latest (6, 7) wins
    assert proposal.probs.shape == (4, 20) and proposal.probs.sum() == 4


def test_falls_back_to_shorter_suffixes_and_to_nothing():
    assert propose([4, 9, 2, 9]).tokens == [2, 9]  # only the 1-gram (9) matched
    assert propose([4, 5, 6, 7]).tokens == []
    assert propose([4, 5, 6, 7]).probs is None


def test_proposal_is_cut_at_eos_and_at_max_tokens():
    proposal = propose([3, 4, EOS, 8, 3, 4], max_tokens=4)
    assert proposal.tokens == [EOS] and proposal.ended
    assert propose([3, 4, 5, 6, 7, 3, 4], max_tokens=2).tokens == [5, 6]


def test_every_suffix_length_and_the_latest_occurrence_are_tried():
    # (0, 5, 2) never occurred; (5, 2) did, at 0; the 1-gram (2) later, at 4: the longer match wins.
    assert propose([5, 2, 7, 3, 2, 9, 0, 5, 2], max_tokens=2).tokens == [7, 3]
    assert propose([1, 3, 3], max_tokens=2).tokens == [3]  # the occurrence right before the suffix counts
    assert propose([4, 9, 2, 9], max_tokens=1).tokens == [2]  # a budget of one token


def test_decoder_only_lookup_does_not_search_the_prompt_twice():
    """A decoder-only model's tokens already begin with the prompt: prepending it again would invent matches."""
    drafter = NgramDrafter(vocab_size=20, eos_token_ids={EOS}, max_ngram=3)
    drafter.start([6, 8])
    assert drafter.propose([6, 8], 2, None).tokens == []


def test_encoder_decoder_searches_the_prompt():
    assert propose([0, 7, 8], max_tokens=2, prompt=[2, 7, 8, 9, 10]).tokens == [9, 10]


@pytest.mark.parametrize("drafter", ["ngram", "hybrid"])
def test_greedy_with_ngram_drafting_equals_greedy_ar(decoder_pair, drafter):
    proposed = 0
    for prompt in PROMPTS + ["the cat sees a fish . the cat sees a fish . the cat"]:
        ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=40)
        spec = decoder_pair.generate(prompt, method="speculative", drafter=drafter, gamma=4, max_new_tokens=40)
        assert spec.token_ids == ar.token_ids, prompt
        proposed += spec.stats.proposed
    assert proposed > 0


def test_greedy_ngram_encoder_decoder(seq2seq_pair):
    for prompt in SEQ2SEQ_PROMPTS:
        ar = seq2seq_pair.generate(prompt, method="ar", max_new_tokens=20)
        spec = seq2seq_pair.generate(prompt, method="speculative", drafter="ngram", max_new_tokens=20)
        assert spec.token_ids == ar.token_ids


@pytest.mark.parametrize("drafter", ["ngram", "hybrid"])
def test_ngram_sampling_preserves_the_target_distribution(decoder_pair, drafter):
    """Chi-square at significance ALPHA, 2,500 generations; the prompt repeats itself so lookups fire."""
    prompt = "the cat sees a fish . the cat"
    expected = exact_distribution(decoder_pair, prompt, SamplingConfig(1.0))
    counts = sample_first_two(decoder_pair, prompt, "speculative", 2500, gamma=2, drafter=drafter, temperature=1.0)
    # Power: 2,500 runs detect a bias of total variation >= 0.085 with 99% power at ALPHA (exactness of the
    # rule itself is proved with no noise by enumeration in test_exactness.py and test_speculative.py).
    assert detectable_tv(2500, pooled_cells(expected, 2500)) <= 0.085
    assert chi_square_pvalue(counts, expected) > ALPHA


class ScriptedModel:
    """A little model's drafter that proposes `max_tokens` copies of token 9 and records what it was asked."""

    def __init__(self):
        self.asked, self.retained = [], []

    def start(self, prompt_ids):
        pass

    def propose(self, tokens, max_tokens, generator):
        self.asked.append(max_tokens)
        return Proposal([9] * max_tokens)

    def retain(self, start, path):
        self.retained.append(path)


class FixedChooser:
    """Picks `gamma` and records the (accepted, tried) counts it was shown."""

    def __init__(self, gamma):
        self.gamma, self.shown = gamma, []

    def choose(self, accepted_by_position, tried_by_position):
        self.shown.append((Counter(accepted_by_position), Counter(tried_by_position)))
        return self.gamma


def test_hybrid_auto_sizes_the_little_model_by_its_own_rounds_only():
    """Lookups where the text offers them; elsewhere the chooser's gamma for the little model, learnt from the
    little model's rounds alone (a lookup round's verdict says nothing about it)."""
    model, chooser = ScriptedModel(), FixedChooser(3)
    lengths = LookupLengths(TreeCosts([1.0] * 9, 0.0, [1.0] * 9), max_tokens=8)  # free passes: propose every token
    drafter = HybridDrafter(NgramDrafter(20, {EOS}, lengths=lengths), model, chooser)
    drafter.start([])
    assert drafter.propose([4, 5, 6, 7], 8, None).tokens == [9, 9, 9]  # no lookup: the little model, 3 tokens
    drafter.retain(4, (0,))  # one of the three accepted
    assert drafter.propose([4, 5, 4], 8, None).tokens == [5, 4]  # a lookup: the model is not run
    before = lengths.chances.chance(1)
    drafter.retain(3, (0, 1))
    assert lengths.chances.chance(1) > before  # the lookups learn from their own round
    assert drafter.propose([4, 5, 6, 8], 8, None).tokens == [9, 9, 9]
    assert model.asked == [3, 3] and len(chooser.shown) == 2
    assert chooser.shown[1] == (Counter({0: 1}), Counter({0: 1, 1: 1}))  # the model's round only
    chooser.gamma = 0
    assert drafter.propose([4, 5, 6, 9], 8, None).tokens == [] and model.asked == [3, 3]  # a plain step
