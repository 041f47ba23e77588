"""BiLD on tiny real models: its exact limits, its counters, and caches after rollbacks."""

import pytest
import torch
from conftest import PROMPTS, SEQ2SEQ_PROMPTS
from scripted import ContextRunner

from biglittle.decoding.drafters import ModelDrafter
from biglittle.decoding.loop import decode
from biglittle.decoding.methods import Bild
from biglittle.decoding.sampling import SamplingConfig


@pytest.fixture(scope="module")
def little_alone(tiny_models):
    from biglittle import load_pair

    return load_pair(tiny_models["gpt2_draft"])


def test_zero_rollback_threshold_gives_the_big_models_greedy_output(decoder_pair):
    rollbacks = 0
    for prompt in PROMPTS:
        ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=40)
        bild = decoder_pair.generate(prompt, method="bild", rollback_threshold=0.0, max_new_tokens=40)
        assert bild.token_ids == ar.token_ids, prompt
        rollbacks += bild.stats.rollbacks
    assert rollbacks > 0  # the limit was reached by rolling back, not by luck


def test_zero_rollback_threshold_encoder_decoder(seq2seq_pair):
    for prompt in SEQ2SEQ_PROMPTS:
        ar = seq2seq_pair.generate(prompt, method="ar", max_new_tokens=20)
        bild = seq2seq_pair.generate(prompt, method="bild", rollback_threshold=0.0, max_new_tokens=20)
        assert bild.token_ids == ar.token_ids


def test_without_fallback_bild_gives_the_little_models_greedy_output(decoder_pair, little_alone):
    differs = 0
    for prompt in PROMPTS:
        little = little_alone.generate(prompt, method="ar", max_new_tokens=40)
        bild = decoder_pair.generate(
            prompt, method="bild", fallback_threshold=0.0, max_little_steps=None, max_new_tokens=40
        )
        assert bild.token_ids == little.token_ids, prompt
        assert bild.stats.target_calls == 0
        differs += little.token_ids != decoder_pair.generate(prompt, method="ar", max_new_tokens=40).token_ids
    assert differs > 0  # the two models disagree somewhere, so the limit is not trivial


def test_always_falling_back_without_rollback_gives_the_big_models_greedy_output(decoder_pair):
    for prompt in PROMPTS:
        ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=40)
        bild = decoder_pair.generate(
            prompt, method="bild", fallback_threshold=1.0, rollback_threshold=float("inf"), max_new_tokens=40
        )
        assert bild.token_ids == ar.token_ids
        assert bild.stats.proposed == 0 and bild.stats.fallbacks == bild.stats.target_calls


def test_fallbacks_and_rollbacks_are_counted(decoder_pair):
    totals = dict(fallbacks=0, rollbacks=0, discarded=0)
    for prompt in PROMPTS:
        stats = decoder_pair.generate(
            prompt, method="bild", fallback_threshold=0.5, rollback_threshold=1.0, max_new_tokens=40
        ).stats
        assert stats.fallbacks == stats.target_calls
        assert stats.rollbacks <= stats.fallbacks
        assert stats.accepted + stats.fallbacks >= stats.new_tokens  # each big pass adds one token
        assert stats.discarded == stats.proposed - stats.accepted
        for key in totals:
            totals[key] += getattr(stats, key)
    assert totals["fallbacks"] > 0 and totals["rollbacks"] > 0 and totals["discarded"] >= totals["rollbacks"]


def test_max_little_steps_forces_a_fallback(decoder_pair):
    stats = decoder_pair.generate(
        "the cat", method="bild", fallback_threshold=0.0, max_little_steps=2, max_new_tokens=30, temperature=1.0, seed=1
    ).stats
    assert max(stats.accepted_lengths) <= 2
    assert stats.fallbacks >= stats.new_tokens // 3


def test_bild_samples_at_temperature_above_zero(decoder_pair):
    texts = {
        decoder_pair.generate("the cat", method="bild", temperature=1.0, seed=seed, max_new_tokens=20).text
        for seed in range(6)
    }
    assert len(texts) > 1


def full_forward_logits(model, token_ids):
    with torch.no_grad():
        return model(torch.tensor([token_ids], device=model.device)).logits[0, -1]


@pytest.mark.models  # its pairs come through request.getfixturevalue
@pytest.mark.parametrize("pair_name", ["decoder_pair", "exit_pair"])  # a cache per model; an early exit sharing one
def test_caches_after_rollbacks_match_a_fresh_forward(request, pair_name):
    pair = request.getfixturevalue(pair_name)
    prompt_ids = pair.encode("the old man")
    runs = (
        pair.generate(
            prompt_ids,
            method="bild",
            fallback_threshold=0.5,
            rollback_threshold=0.5,
            max_new_tokens=40,
            temperature=1.0,
            seed=seed,
        )
        for seed in range(3, 23)
    )
    result = next((run for run in runs if run.stats.rollbacks > 0), None)  # the first seed with rollbacks
    assert result is not None, "no rollback in 20 seeds: nothing tested"
    tokens = prompt_ids + result.token_ids
    # The draft first: a target sharing its cache then finds layers 1..L done and runs the deeper ones only.
    for runner, loaded in ((pair.draft_runner, pair.draft), (pair.target_runner, pair.target)):
        assert runner.cache_len <= len(tokens) - 1
        cached = runner.forward(tokens, 1)[0]
        fresh = full_forward_logits(loaded.model, tokens)[: runner.vocab_size]
        assert torch.allclose(cached, fresh, atol=1e-4)


# Hand-overs at fallback thresholds strictly between 0 and 1 ------------------------------------------


def confident(script, confidence, vocab=8):
    """next_logits of a model that writes script[i] as the i-th new token with probability confidence[i]."""

    def next_logits(prefix):
        position = len(prefix) - len(PROMPT)
        probs = torch.full((vocab,), (1 - confidence[position]) / (vocab - 1))
        probs[script[position]] = confidence[position]
        return probs.log()

    return next_logits


PROMPT = [7, 7]
SCRIPT = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5]  # ten tokens are written; the big model also scores the 11th
LITTLE_CONFIDENCE = [0.9, 0.8, 0.4, 0.9, 0.3, 0.35, 0.95, 0.9, 0.9, 0.9, 0.9]


@pytest.mark.parametrize(
    "fallback,rounds",
    [
        # 0.5: the little model writes while its top probability is >= 0.5 and hands over at 0.4, 0.3, 0.35;
        # the big model writes each of those tokens itself. The last round is cut at max_new_tokens.
        (0.5, [["draft", "draft", "target"], ["draft", "target"], ["target"], ["draft"] * 4]),
        # 0.85: also hands over at 0.8 (and writes alone only at 0.9 and 0.95).
        (0.85, [["draft", "target"], ["target"], ["draft", "target"], ["target"], ["draft"] * 4]),
    ],
)
def test_the_little_model_hands_over_where_it_is_unsure(fallback, rounds):
    greedy = SamplingConfig()
    little = ContextRunner(confident(SCRIPT, LITTLE_CONFIDENCE), 8)
    big = ContextRunner(confident(SCRIPT, [0.99] * len(SCRIPT)), 8)  # agrees with every little token
    commits = []
    output, stats = decode(
        PROMPT,
        big,
        ModelDrafter(little, greedy, set(), fallback_threshold=fallback),
        Bild(rollback_threshold=2.0, max_little_steps=10, sampling=greedy),
        max_new_tokens=10,
        max_length=100,
        eos_token_ids=set(),
        generator=None,
        on_commit=commits.append,
    )
    assert output == SCRIPT[:10]
    assert [commit.sources for commit in commits] == rounds
    assert stats.fallbacks == stats.target_calls == len(rounds) and stats.rollbacks == 0


def test_fallback_threshold_one_hands_over_even_when_the_little_model_is_certain():
    certain = ContextRunner(lambda prefix: torch.tensor([0.0, 100.0, 0.0, 0.0]), 4)  # p = 1.0 in float32
    drafter = ModelDrafter(certain, SamplingConfig(), set(), fallback_threshold=1.0)
    drafter.start([0])
    assert drafter.propose([0], 5, None).tokens == []


def test_the_little_model_hands_over_only_below_the_threshold():
    """--fallback-threshold: hand over when the top probability is *below* it; exactly at it, keep writing."""
    even = ContextRunner(lambda prefix: torch.tensor([0.0, 0.0]), 2)  # top probability exactly 0.5
    for threshold, drafted in ((0.5, 3), (0.5001, 0)):
        drafter = ModelDrafter(even, SamplingConfig(), set(), fallback_threshold=threshold)
        drafter.start([0])
        assert len(drafter.propose([0], 3, None).tokens) == drafted
