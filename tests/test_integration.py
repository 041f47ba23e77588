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
    from biglittle.runtime.fetch import _has_gguf_tokens, default_pair_dirs
    from biglittle.runtime.models import load_tokenizer

    model_dir = default_pair_dirs()[0 if role == "target" else 1]
    assert _has_gguf_tokens(model_dir), (
        "converted without the GGUF's special tokens: `biglittle models fetch --keep-gguf`"
    )
    tokenizer = load_tokenizer(str(model_dir))
    samples = json.loads(LLAMACPP_TOKENS.read_text())["samples"]
    assert len(samples) >= 10
    differing = {
        name: (tokenizer(sample["text"]).input_ids, sample[role])
        for name, sample in samples.items()
        if tokenizer(sample["text"]).input_ids != sample[role]
    }
    assert not differing, differing


def test_llamacpp_greedy_modes_on_the_bench_prompt_match_biglittle(real_pair, tmp_path):
    """The real llama.cpp peer (`make peers`) on one translation prompt, as the bench asks it: its three modes return
    biglittle's big model's greedy tokens (a short, unambiguous answer: no near-tie expected), its speculative mode
    reports its drafts, and its servers stop at the end."""
    import torch

    from biglittle.bench.llamacpp import LlamaCppPeer
    from biglittle.bench.run import Executor
    from biglittle.bench.settings import LLAMACPP_ENGINES, Setting
    from biglittle.data import build_prompt

    peer = LlamaCppPeer.find(None, torch.get_num_threads(), tmp_path)
    if peer.unavailable:
        pytest.skip(peer.unavailable)  # optional: `make peers`
    source = "Wenn man nichts dagegen machen kann, sollte man mitmachen."
    prompt_ids = real_pair.tokenizer(build_prompt("translation", source, real_pair.tokenizer)).input_ids
    ar = real_pair.generate(prompt_ids, method="ar", max_new_tokens=16)
    executor = Executor({"main": real_pair}, {"translation": 16}, peer)
    try:
        outcomes = {
            label: executor.run(Setting(label, "llamacpp", engine=engine), prompt_ids, seed=0, budget=16)
            for engine, (label, _mode) in LLAMACPP_ENGINES.items()
        }
    finally:
        peer.close()
    assert peer.failures == {}
    for label, outcome in outcomes.items():
        assert outcome["token_ids"] == ar.token_ids, (label, outcome["text"], ar.text)
        assert outcome["stats"]["llamacpp"]["prompt_n"] == len(prompt_ids)
    speculative = next(o for label, o in outcomes.items() if "speculative" in label)["stats"]
    assert speculative["proposed"] >= speculative["accepted"] > 0
    assert all(server.process is None for server in peer.servers.values())
