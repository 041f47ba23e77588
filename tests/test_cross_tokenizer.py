"""A draft with another tokenizer: the conversion through text, greedy identity, the exact distribution, refusals.

The pair (conftest.cross_models): the word-level Llama target and a GPT-2 draft whose tokenizer splits the
longer words in two, trained on the same toy text.
"""

import json
import random

import pytest
import torch
from conftest import PROMPTS, VOCAB
from stats_checks import ALPHA, chi_square_pvalue, exact_distribution, sample_first_two
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from biglittle import BigLittleError, load_pair
from biglittle.cli import main
from biglittle.decoding.cross_tokenizer import CrossTokenizerDrafter, TextBridge
from biglittle.decoding.sampling import SamplingConfig


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """Characters merged into "ca" and "cat": a text's tokens depend on what follows."""
    vocab = {"<unk>": 0, "</s>": 1, "c": 2, "a": 3, "t": 4, "s": 5, "ca": 6, "cat": 7}
    core = Tokenizer(models.BPE(vocab, [("c", "a"), ("ca", "t")], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="</s>")


def test_new_text_is_tokenized_with_the_committed_tokens_before_it():
    target = bpe_tokenizer()
    bridge = TextBridge(target, target, {1}, {1})
    assert bridge.target_continuation([7], "cat") == [7]  # not "c", "a", "t", as the characters alone would be
    assert bridge.target_continuation([2, 3, 7], "s") == [5]  # "cacat" + "s" is "ca" "cat" "s": the text decides
    # "ca" + "ts" would be "cat" "s", but "ca" is written: its own tokens, whose text follows "ca" exactly.
    assert bridge.target_continuation([6], "ts") == [4, 5]
    assert bridge.target_continuation([7], "x") == [] and bridge.target_continuation([7], "") == []  # no "x" token


def test_new_text_keeps_the_space_before_a_word(cross_pair):
    bridge = cross_pair.bridge
    context = bridge.draft_ids(cross_pair.encode("the old man"))
    drafted = cross_pair.draft.tokenizer("wants some bread", add_special_tokens=False).input_ids
    assert bridge.new_text(context, drafted) == " wants some bread"  # decoded alone it has no leading space
    assert bridge.draft_text(drafted) == "wants some bread"
    committed = cross_pair.encode("the old man")
    assert bridge.target_continuation(committed, " wants some bread") == [
        VOCAB.index(w) for w in ("wants", "some", "bread")
    ]


def random_prompts(count, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB[4:]) for _ in range(rng.randint(1, 10))) for _ in range(count)]


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_greedy_output_is_the_targets_with_a_draft_of_another_tokenizer(cross_pair, gamma):
    proposed = accepted = 0
    for prompt in PROMPTS + random_prompts(6, seed=gamma):
        ar = cross_pair.generate(prompt, method="ar", max_new_tokens=30)
        spec = cross_pair.generate(prompt, method="speculative", gamma=gamma, max_new_tokens=30)
        assert spec.token_ids == ar.token_ids, prompt
        assert spec.stats.target_calls <= ar.stats.target_calls
        proposed, accepted = proposed + spec.stats.proposed, accepted + spec.stats.accepted
    assert 0.1 < accepted / proposed < 0.95  # drafts both kept and turned down


def test_hybrid_drafting_with_a_draft_of_another_tokenizer(cross_pair):
    prompt = "the cat sees a fish . the cat"
    ar = cross_pair.generate(prompt, method="ar", max_new_tokens=20)
    assert cross_pair.generate(prompt, drafter="hybrid", gamma=3, max_new_tokens=20).token_ids == ar.token_ids


def test_sampling_with_a_draft_of_another_tokenizer_preserves_the_target_distribution(cross_pair):
    """The little model samples its own tokens; their conversion is verified as point masses: chi-square at
    significance ALPHA over 1,500 generations of the first two tokens, as test_speculative.py (fewer: each costs
    several little-model steps)."""
    prompt = "the cat"
    expected = exact_distribution(cross_pair, prompt, SamplingConfig(1.0))
    counts = sample_first_two(cross_pair, prompt, "speculative", 1500, gamma=2, temperature=1.0)
    assert chi_square_pvalue(counts, expected) > ALPHA


def test_the_drafts_cache_holds_what_it_would_compute_afresh(cross_pair):
    """After rounds in which the target wrote something else than the little model drafted, the little model's
    cache (kept as far as its tokens still match the text) equals a fresh forward over the text."""
    drafter = CrossTokenizerDrafter(cross_pair.draft_runner, cross_pair.bridge, SamplingConfig(0.0), 32)
    tokens = cross_pair.encode("my friend")
    drafter.start(tokens)
    overruled = 0
    for _ in range(3):
        drafted = drafter.propose(tokens, 3, None).tokens
        other = next(VOCAB.index(w) for w in ("quickly", "eats", "the") if VOCAB.index(w) not in drafted[1:2])
        tokens = tokens + drafted[:1] + [other]  # its first token kept, the second not
        overruled += len(drafted) > 1
    assert overruled  # the cache held tokens the text no longer has
    context = drafter._draft_prompt + cross_pair.bridge.draft_ids(tokens[drafter._prompt_length :])
    drafter._keep_matching_cache(context)
    assert 0 < cross_pair.draft_runner.cache_len < len(context)
    cached = cross_pair.draft_runner.forward(context, 1)[0]
    with torch.no_grad():
        fresh = cross_pair.draft.model(torch.tensor([context])).logits[0, -1]
    assert torch.allclose(cached, fresh, atol=1e-5)


def test_a_draft_that_cannot_write_the_targets_text_is_refused_in_one_line(capsys, cross_models):
    with pytest.raises(BigLittleError, match=r"cannot represent the target's text: 'quickly' comes back as"):
        load_pair(cross_models["target"], cross_models["draft_without_q"], cross_tokenizer=True)
    argv = ["generate", "--target", cross_models["target"], "--draft", cross_models["draft_without_q"]]
    code = main([*argv, "--cross-tokenizer", "the cat"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot represent" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(method="bild"), "sharing the target's tokenizer"),
        (dict(tree=4), "--tree needs"),
        (dict(gamma="auto"), "give --gamma N"),
    ],
)
def test_what_a_draft_of_another_tokenizer_cannot_do_is_refused(cross_pair, settings, message):
    with pytest.raises(BigLittleError, match=message):
        cross_pair.generate("the cat", max_new_tokens=4, **settings)


def test_the_command_line_drafts_across_tokenizers_only_when_asked(capsys, cross_models):
    argv = ["generate", "--target", cross_models["target"], "--draft", cross_models["draft"], "--json"]
    code = main([*argv, "the cat"])
    err = capsys.readouterr().err
    assert code == 2 and "do not share a tokenizer" in err and "--cross-tokenizer" in err
    code = main([*argv, "--cross-tokenizer", "--max-new-tokens", "8", "the cat"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["stats"]["proposed"] > 0
