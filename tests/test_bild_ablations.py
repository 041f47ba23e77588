"""BiLD's ablations (Kim et al. 2023): fallback only and rollback only, against step-by-step references.

The references run both models on the whole text at every step (no caches, no batching) and apply the
policy as the paper states it, so they share no code with the decoding loop.
"""

import pytest
import torch
from conftest import PROMPTS

from biglittle import BigLittleError, GenerationConfig

MAX_NEW = 30


def next_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0, -1]


def reference_fallback_only(pair, prompt_ids, fallback_threshold, max_little_steps):
    """Each token: the big model's after max_little_steps little tokens in a row or where the little model's top
    probability is below the threshold, else the little model's; nothing is ever replaced."""
    tokens, run, eos = list(prompt_ids), 0, pair.target.eos_token_ids
    vocab = pair.target_runner.vocab_size
    while len(tokens) - len(prompt_ids) < MAX_NEW:
        little = next_logits(pair.draft.model, tokens)[:vocab]
        if run == max_little_steps or little.softmax(-1).max() < fallback_threshold:
            token, run = int(next_logits(pair.target.model, tokens)[:vocab].argmax()), 0
        else:
            token, run = int(little.argmax()), run + 1
        tokens.append(token)
        if token in eos:
            break
    return tokens[len(prompt_ids) :]


def reference_rollback_only(pair, prompt_ids, rollback_threshold, steps):
    """Rounds: the little model writes `steps` tokens; the big model replaces the first one whose -log p exceeds
    the threshold and that differs from its own choice (and drops the rest), else adds its own next token."""
    tokens, eos = list(prompt_ids), pair.target.eos_token_ids
    vocab = pair.target_runner.vocab_size
    while len(tokens) - len(prompt_ids) < MAX_NEW:
        drafted = []
        for _ in range(min(steps, MAX_NEW - (len(tokens) - len(prompt_ids)))):
            drafted.append(int(next_logits(pair.draft.model, tokens + drafted)[:vocab].argmax()))
            if drafted[-1] in eos:
                break
        new = None
        for position, token in enumerate(drafted):
            big = next_logits(pair.target.model, tokens + drafted[:position])[:vocab]
            distance = -float(big.log_softmax(-1)[token])
            if distance > rollback_threshold and int(big.argmax()) != token:
                new = drafted[:position] + [int(big.argmax())]
                break
        if new is None:
            new = drafted + [int(next_logits(pair.target.model, tokens + drafted)[:vocab].argmax())]
        for token in new:
            tokens.append(token)
            if token in eos or len(tokens) - len(prompt_ids) == MAX_NEW:
                return tokens[len(prompt_ids) :]
    return tokens[len(prompt_ids) :]


def test_fallback_only_follows_the_papers_policy(decoder_pair):
    handovers = 0
    for prompt in PROMPTS:
        prompt_ids = decoder_pair.encode(prompt)
        result = decoder_pair.generate(
            prompt_ids,
            method="bild",
            rollback=False,
            rollback_threshold=0.5,  # would replace little tokens, were rollback on
            fallback_threshold=0.6,
            max_little_steps=4,
            max_new_tokens=MAX_NEW,
        )
        assert result.token_ids == reference_fallback_only(decoder_pair, prompt_ids, 0.6, 4), prompt
        assert result.stats.rollbacks == 0 and result.stats.accepted == result.stats.proposed
        handovers += result.stats.fallbacks
    assert handovers > len(PROMPTS)  # the big model wrote tokens, not just the end of each text


def test_rollback_only_follows_the_papers_policy(decoder_pair):
    rollbacks = 0
    for prompt in PROMPTS:
        prompt_ids = decoder_pair.encode(prompt)
        result = decoder_pair.generate(
            prompt_ids,
            method="bild",
            fallback=False,
            rollback_threshold=1.0,
            max_little_steps=3,
            max_new_tokens=MAX_NEW,
        )
        assert result.token_ids == reference_rollback_only(decoder_pair, prompt_ids, 1.0, 3), prompt
        assert max(result.stats.accepted_lengths) <= 3
        rollbacks += result.stats.rollbacks
    assert rollbacks > 0


def test_fallback_only_never_falling_back_is_the_little_model_alone(decoder_pair, tiny_models):
    from biglittle import load_pair

    little_alone = load_pair(tiny_models["gpt2_draft"])
    for prompt in PROMPTS:
        little = little_alone.generate(prompt, method="ar", max_new_tokens=MAX_NEW)
        bild = decoder_pair.generate(
            prompt, method="bild", rollback=False, fallback_threshold=0.0, max_little_steps=None, max_new_tokens=MAX_NEW
        )
        assert bild.token_ids == little.token_ids and bild.stats.target_calls == 0


def test_fallback_only_always_falling_back_is_the_big_model_alone(decoder_pair):
    for prompt in PROMPTS:
        ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=MAX_NEW)
        bild = decoder_pair.generate(
            prompt, method="bild", rollback=False, fallback_threshold=1.0, max_new_tokens=MAX_NEW
        )
        assert bild.token_ids == ar.token_ids and bild.stats.proposed == 0


def test_rollback_only_with_threshold_zero_is_the_big_models_greedy_output(decoder_pair):
    for prompt in PROMPTS:
        ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=MAX_NEW)
        bild = decoder_pair.generate(
            prompt, method="bild", fallback=False, rollback_threshold=0.0, max_little_steps=5, max_new_tokens=MAX_NEW
        )
        assert bild.token_ids == ar.token_ids


def test_fallback_only_leaves_the_little_models_ending_unchecked(decoder_pair):
    """Without rollback, a stretch in which the little model ends the text has nothing for the big model to do."""
    ended_alone = 0
    for prompt in PROMPTS:
        stats = decoder_pair.generate(
            prompt, method="bild", rollback=False, fallback_threshold=0.3, max_new_tokens=60
        ).stats
        assert stats.fallbacks == stats.target_calls  # every big pass is a hand-over
        ended_alone += stats.unverified > 0
    assert ended_alone > 0


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(method="bild", fallback=False, rollback=False), "leave BiLD no policy"),
        (dict(method="bild", fallback=False, max_little_steps=None), "needs --max-little-steps"),
        (dict(method="speculative", rollback=False), "--method bild only"),
    ],
)
def test_ablations_that_make_no_sense_are_refused(settings, message):
    with pytest.raises(BigLittleError, match=message):
        GenerationConfig(**settings).validate()
