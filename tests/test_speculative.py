"""Speculative decoding on tiny real models: greedy identity with ar, and the exact target distribution."""

import random

import pytest
from conftest import PROMPTS, SEQ2SEQ_PROMPTS, VOCAB
from exact import assert_exact, first_two, target_first_two
from scripted import ContextRunner, memoized
from stats_checks import ALPHA, chi_square_pvalue, detectable_tv, exact_distribution, pooled_cells, sample_first_two

from biglittle.decoding.drafters import ModelDrafter
from biglittle.decoding.methods import Speculative
from biglittle.decoding.sampling import SamplingConfig


def random_prompts(count, seed):
    rng = random.Random(seed)
    words = VOCAB[4:]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(count)]


@pytest.mark.parametrize("gamma", [1, 2, 3, 5, 8])
def test_greedy_speculative_equals_greedy_ar_decoder_only(decoder_pair, gamma):
    for prompt in PROMPTS + random_prompts(12, seed=gamma):
        ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=40)
        spec = decoder_pair.generate(prompt, method="speculative", gamma=gamma, max_new_tokens=40)
        assert spec.token_ids == ar.token_ids, prompt
        assert spec.stats.target_calls <= ar.stats.target_calls


def test_greedy_speculative_was_tested_with_rejections(decoder_pair):
    """The identity test above is only meaningful if drafts get rejected as well as accepted."""
    proposed = accepted = 0
    for prompt in PROMPTS:
        stats = decoder_pair.generate(prompt, method="speculative", gamma=4, max_new_tokens=40).stats
        proposed, accepted = proposed + stats.proposed, accepted + stats.accepted
    assert 0.2 < accepted / proposed < 0.95


@pytest.mark.parametrize("gamma", [1, 3, 6])
def test_greedy_speculative_equals_greedy_ar_encoder_decoder(seq2seq_pair, gamma):
    for prompt in SEQ2SEQ_PROMPTS + random_prompts(6, seed=10 + gamma):
        ar = seq2seq_pair.generate(prompt, method="ar", max_new_tokens=20)
        spec = seq2seq_pair.generate(prompt, method="speculative", gamma=gamma, max_new_tokens=20)
        assert spec.token_ids == ar.token_ids, prompt


def test_sampling_repeats_with_a_seed(decoder_pair):
    runs = [decoder_pair.generate("the cat", temperature=1.0, seed=5, max_new_tokens=30).token_ids for _ in range(2)]
    assert runs[0] == runs[1]


SAMPLING_SETTINGS = {
    "t1": SamplingConfig(1.0),
    "t0.7-topk5": SamplingConfig(0.7, 5),
    "t1.5-topp0.8": SamplingConfig(1.5, 0, 0.8),
}
# Enumeration skips branches rarer than this; what they add up to bounds the bias the test could miss.
MIN_BRANCH, MAX_PRUNED = 2e-6, 0.01


@pytest.mark.parametrize("setting", list(SAMPLING_SETTINGS))
def test_speculative_sampling_preserves_the_target_distribution(decoder_pair, setting):
    """Exact enumeration (tests/exact.py) of the first two tokens of a gamma = 2 run on the tiny pair: every
    draft sample and every branch of the rule, weighed by its probability, against p(x1) p(x2 | x1). With the
    pruned mass below MAX_PRUNED, it fails every bias of total variation above 0.01 with certainty (a residual
    taken from the wrong draft position is 0.03 here). The models are run without a cache, each distinct
    prefix once; the runners' caches have tests of their own."""
    sampling = SAMPLING_SETTINGS[setting]
    vocab, eos, prompt = (
        decoder_pair.target_runner.vocab_size,
        decoder_pair.target.eos_token_ids,
        decoder_pair.encode("the cat"),
    )
    target_logits = memoized(decoder_pair.target.model, vocab)
    draft = ModelDrafter(ContextRunner(memoized(decoder_pair.draft.model, vocab), vocab), sampling, eos)
    enumerated, pruned = first_two(
        ContextRunner(target_logits, vocab), draft, Speculative(2, sampling), prompt, eos, MIN_BRANCH
    )
    assert pruned < MAX_PRUNED
    assert_exact(enumerated, pruned, target_first_two(target_logits, prompt, sampling, eos))


# The same through pair.generate and the pair's own runners, sampled: 2,500 runs over about 30 pooled
# cells detect a bias of total variation >= 0.085 with 99% power at ALPHA (asserted below).
GENERATE_TRIALS, GENERATE_TV = 2500, 0.085


def test_generate_samples_the_target_distribution(decoder_pair):
    expected = exact_distribution(decoder_pair, "the cat", SamplingConfig(1.0))
    counts = sample_first_two(decoder_pair, "the cat", "speculative", GENERATE_TRIALS, gamma=2, temperature=1.0)
    assert detectable_tv(GENERATE_TRIALS, pooled_cells(expected, GENERATE_TRIALS)) <= GENERATE_TV
    assert chi_square_pvalue(counts, expected) > ALPHA


def test_distribution_test_detects_a_sampler_that_is_not_exact(tiny_models, decoder_pair):
    """Power check: the draft's own samples (what skipping verification would emit) fail the test."""
    from biglittle import load_pair

    draft_alone = load_pair(tiny_models["gpt2_draft"])
    sampling = SamplingConfig(1.0)
    expected = exact_distribution(decoder_pair, "the cat", sampling)
    counts = sample_first_two(draft_alone, "the cat", "ar", 1000, temperature=1.0)
    assert chi_square_pvalue(counts, expected) < ALPHA


@pytest.mark.parametrize("method", ["ar", "speculative", "bild"])
def test_the_prefix_is_never_run_again(decoder_pair, method):
    """Each round feeds the target only the token it has not seen plus the new proposals."""
    result = decoder_pair.generate("the old man", method=method, max_new_tokens=30, temperature=1.0, seed=2)
    stats = result.stats
    rounds = sum(stats.accepted_lengths.values())
    fed = sum(tokens for tokens, _ in stats.target_call_log)
    assert rounds == stats.target_calls
    assert fed == stats.prompt_tokens + stats.proposed + rounds - 1


def test_the_encoder_runs_once_per_prompt(seq2seq_pair, monkeypatch):
    encoder = seq2seq_pair.target.model.get_encoder()
    calls = []
    original = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    result = seq2seq_pair.generate(SEQ2SEQ_PROMPTS[0], method="speculative", gamma=3, max_new_tokens=20)
    assert result.stats.target_calls > 1
    assert len(calls) == 1
