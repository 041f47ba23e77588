"""Speculative decoding on tiny real models: greedy identity with ar, and the exact target distribution."""

import random

import pytest
from conftest import PROMPTS, SEQ2SEQ_PROMPTS, VOCAB
from stats_checks import ALPHA, chi_square_pvalue, exact_distribution, sample_first_two

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


SAMPLING_SETTINGS = [
    dict(temperature=1.0),
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.5, top_p=0.8),
]


@pytest.mark.parametrize("settings", SAMPLING_SETTINGS, ids=["t1", "t0.7-topk5", "t1.5-topp0.8"])
def test_speculative_sampling_preserves_the_target_distribution(decoder_pair, settings):
    """Chi-square test at significance ALPHA over 2,500 generations of the first two tokens.

    gamma = 2 with three new tokens: both tokens come out of one draft-and-verify round, so
    accepted drafts, corrections and bonus tokens all contribute.
    """
    prompt = "the cat"
    sampling = SamplingConfig(settings["temperature"], settings.get("top_k", 0), settings.get("top_p", 1.0))
    expected = exact_distribution(decoder_pair, prompt, sampling)
    counts = sample_first_two(decoder_pair, prompt, "speculative", 2500, gamma=2, **settings)
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
