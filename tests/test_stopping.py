"""Stopping inside a draft: end-of-sequence, max_new_tokens and stop strings."""

import pytest
from scripted import ScriptedRunner

from biglittle.decoding.drafters import ModelDrafter
from biglittle.decoding.loop import decode
from biglittle.decoding.methods import Bild, Speculative
from biglittle.decoding.sampling import SamplingConfig

EOS = 1
PROMPT = [9, 9]
GREEDY = SamplingConfig()


def run(target_script, draft_script, gamma=4, max_new_tokens=20, drafter_eos=frozenset({EOS}), method=None):
    drafter = ModelDrafter(ScriptedRunner(draft_script), GREEDY, set(drafter_eos))
    return decode(
        PROMPT,
        ScriptedRunner(target_script),
        drafter,
        method or Speculative(gamma, GREEDY),
        max_new_tokens=max_new_tokens,
        max_length=100,
        eos_token_ids={EOS},
        generator=None,
    )


def test_eos_inside_an_accepted_draft_ends_generation_there():
    script = PROMPT + [5, 6, EOS, 7, 7, 7, 7, 7, 7]
    # The drafter does not know EOS, so it drafts past it; the loop must cut after EOS anyway.
    output, stats = run(script, script, gamma=5, drafter_eos=frozenset())
    assert output == [5, 6, EOS]
    assert stats.accepted_lengths[5] == 1  # all five drafts (EOS in the middle) were accepted


def test_drafter_stops_proposing_at_eos():
    script = PROMPT + [5, EOS, 7, 7, 7, 7, 7]
    output, stats = run(script, script, gamma=5)
    assert output == [5, EOS]
    assert stats.proposed == 2  # 5 and EOS, nothing after


def test_max_new_tokens_reached_inside_a_draft():
    script = PROMPT + list(range(2, 9)) * 3
    for max_new_tokens in range(1, 9):
        output, stats = run(script, script, gamma=4, max_new_tokens=max_new_tokens)
        assert output == script[2 : 2 + max_new_tokens]
        assert stats.new_tokens == max_new_tokens


def test_bild_checks_the_stretch_in_which_the_little_model_ends_the_text():
    big = PROMPT + [5, 6, 7, EOS, 3, 3]
    little = PROMPT + [5, 6, 8, EOS, 3, 3]
    method = Bild(rollback_threshold=0.0, max_little_steps=10, sampling=GREEDY)
    output, stats = run(big, little, method=method)
    assert output == [5, 6, 7, EOS]
    assert stats.rollbacks == 1


def test_bild_without_fallback_lets_the_little_model_write_alone():
    big = PROMPT + [5, 6, 7, EOS, 3, 3]
    little = PROMPT + [5, 6, 8, EOS, 3, 3]
    method = Bild(rollback_threshold=0.0, max_little_steps=1 << 30, sampling=GREEDY, fallback_enabled=False)
    output, stats = run(big, little, method=method)
    assert output == [5, 6, 8, EOS]
    assert stats.target_calls == 0 and stats.unverified == 4


@pytest.mark.parametrize("stop", ["eats", "a fish"])
def test_stop_string_ends_the_text(decoder_pair, stop):
    full = decoder_pair.generate("the cat", method="ar", max_new_tokens=30)
    assert stop in full.text, full.text  # the prompt's greedy continuation writes it
    for method in ("ar", "speculative", "bild"):
        result = decoder_pair.generate("the cat", method=method, max_new_tokens=30, stop=(stop,))
        assert result.text.endswith(stop)
        assert result.text == full.text[: full.text.index(stop) + len(stop)]
        assert result.token_ids == full.token_ids[: len(result.token_ids)]
        assert len(result.token_ids) < len(full.token_ids)


def test_context_length_bounds_the_output(decoder_pair):
    prompt = " ".join(["the cat sees a fish ."] * 20)  # 121 tokens of a 128-token context
    result = decoder_pair.generate(prompt, method="speculative", max_new_tokens=50, temperature=1.0, seed=0)
    assert result.stats.prompt_tokens + result.stats.new_tokens <= 128


def test_progress_callback_counts_the_tokens_written(decoder_pair):
    seen = []
    result = decoder_pair.generate(
        "the cat",
        method="speculative",
        max_new_tokens=30,
        temperature=1.0,
        seed=4,
        on_commit=lambda commit: seen.append(commit.total),
    )
    assert seen == sorted(seen) and seen[-1] == len(result.token_ids)
    assert len(seen) == result.stats.target_calls  # one report per round
