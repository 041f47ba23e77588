"""Opt-in checks on the real default pair (`biglittle models fetch`): pytest --run-integration."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROMPTS = [
    "Translate German to English: Er akzeptierte widerspruchslos ihre Erklärung.",
    "Summarize in one sentence: The package provides a command-line tool to convert images between formats.",
    "Write a Python function that returns the square of a number.",
]


@pytest.fixture(scope="module")
def real_pair():
    from biglittle import load_pair
    from biglittle.runtime.fetch import default_pair_dirs

    target, draft = default_pair_dirs()
    return load_pair(str(target), str(draft))


@pytest.mark.parametrize("prompt", PROMPTS)
def test_speculative_greedy_equals_target_greedy_on_the_real_pair(real_pair, prompt):
    ar = real_pair.generate(prompt, method="ar", chat=True, max_new_tokens=24)
    spec = real_pair.generate(prompt, method="speculative", gamma=4, chat=True, max_new_tokens=24)
    assert spec.token_ids == ar.token_ids
    assert spec.stats.accepted > 0


@pytest.fixture(scope="module")
def real_int8_pair():
    from biglittle import load_pair
    from biglittle.runtime.fetch import default_pair_dirs

    target, draft = default_pair_dirs()
    return load_pair(str(target), str(draft), dtype="int8")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_speculative_greedy_equals_target_greedy_on_the_real_int8_pair(real_int8_pair, prompt):
    """int8 scoring is batch-invariant, so exactness holds at int8 too (torch's dynamic int8 breaks it)."""
    ar = real_int8_pair.generate(prompt, method="ar", chat=True, max_new_tokens=24)
    for gamma in (2, 5):
        spec = real_int8_pair.generate(prompt, method="speculative", gamma=gamma, chat=True, max_new_tokens=24)
        assert spec.token_ids == ar.token_ids
        assert spec.stats.accepted > 0


LLAMACPP_TOKENS = Path(__file__).parent / "fixtures" / "llamacpp_tokens.json"


@pytest.mark.parametrize("role", ["target", "draft"])
def test_tokenization_matches_llamacpp_on_sample_strings(role):
    """biglittle's tokenizers of the converted pair give llama.cpp's ids (llama-tokenize on the GGUF files, recorded
    by scripts/llamacpp_fixtures.py): code, umlauts, CJK, emoji, numbers, whitespace runs, the chat template."""
    from biglittle.runtime.fetch import default_pair_dirs
    from biglittle.runtime.models import load_tokenizer

    tokenizer = load_tokenizer(str(default_pair_dirs()[0 if role == "target" else 1]))
    samples = json.loads(LLAMACPP_TOKENS.read_text())["samples"]
    assert len(samples) >= 10
    differing = {
        name: (tokenizer(sample["text"]).input_ids, sample[role])
        for name, sample in samples.items()
        if tokenizer(sample["text"]).input_ids != sample[role]
    }
    assert not differing, differing
