"""A little model restricted to the K most frequent tokens: cheaper, and speculative decoding stays exact."""

import pytest
import torch
from conftest import PROMPTS, VOCAB
from stats_checks import ALPHA, chi_square_pvalue, detectable_tv, exact_distribution, pooled_cells, sample_first_two

from biglittle import BigLittleError, load_pair
from biglittle.decoding.sampling import SamplingConfig
from biglittle.runtime.restricted_vocab import frequent_token_ids

K = 16  # of the 28 word tokens: '?', '!', '.', 'quickly', 'very', ... cannot be drafted


@pytest.fixture(scope="module")
def restricted_pair(tiny_models):
    return load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"], draft_vocab=K, draft_vocab_ranking="ids")


def test_the_draft_scores_only_the_kept_tokens(restricted_pair, tokenizer):
    kept = frequent_token_ids(tokenizer, K)
    assert len(kept) == K + 4 and set(range(4)) <= set(kept.tolist())  # 4 specials always kept
    ids = torch.tensor([restricted_pair.encode("the cat sees")])
    with torch.no_grad():
        logits = restricted_pair.draft.model(ids).logits[0, -1]
    outside = torch.ones(len(VOCAB), dtype=torch.bool)
    outside[kept] = False
    assert torch.isneginf(logits[outside]).all() and torch.isfinite(logits[kept]).all()
    assert restricted_pair.draft.model.get_output_embeddings().weight.shape[0] == K + 4


def test_kept_logits_equal_the_full_models(tiny_models, restricted_pair, tokenizer):
    full = load_pair(tiny_models["gpt2_draft"]).target.model
    ids = torch.tensor([restricted_pair.encode("my friend likes")])
    kept = frequent_token_ids(tokenizer, K)
    with torch.no_grad():
        torch.testing.assert_close(restricted_pair.draft.model(ids).logits[..., kept], full(ids).logits[..., kept])


def test_greedy_speculative_with_a_restricted_draft_equals_ar(restricted_pair):
    rejected_by_restriction = 0
    for prompt in PROMPTS:
        ar = restricted_pair.generate(prompt, method="ar", max_new_tokens=30)
        spec = restricted_pair.generate(prompt, method="speculative", gamma=3, max_new_tokens=30)
        assert spec.token_ids == ar.token_ids, prompt
        rejected_by_restriction += sum(token >= 4 + K for token in ar.token_ids)
    assert rejected_by_restriction > 0  # the target did write tokens the draft can never propose


def test_restricted_draft_sampling_preserves_the_target_distribution(restricted_pair):
    """Chi-square at significance ALPHA over 2,500 generations of the first two tokens."""
    expected = exact_distribution(restricted_pair, "the cat", SamplingConfig(1.0))
    assert sum(p for (x1, x2), p in expected.items() if x1 >= 4 + K or (x2 or 0) >= 4 + K) > 0.05
    counts = sample_first_two(restricted_pair, "the cat", "speculative", 2500, gamma=2, temperature=1.0)
    # Power: 2,500 runs detect a bias of total variation >= 0.085 with 99% power at ALPHA (exactness of the
    # rule itself is proved with no noise by enumeration in test_exactness.py and test_speculative.py).
    assert detectable_tv(2500, pooled_cells(expected, 2500)) <= 0.085
    assert chi_square_pvalue(counts, expected) > ALPHA


def test_early_exit_draft_restriction_leaves_the_targets_head_alone(tiny_models):
    pair = load_pair(tiny_models["llama_target"], "early-exit:2", draft_vocab=K, draft_vocab_ranking="ids")
    assert pair.target.model.get_output_embeddings().weight.shape[0] == len(VOCAB)
    assert pair.draft.model.get_output_embeddings().weight.shape[0] == K + 4


def test_a_vocabulary_of_zero_is_refused(tiny_models):
    with pytest.raises(BigLittleError, match="at least 1"):
        load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"], draft_vocab=0, draft_vocab_ranking="ids")


def test_draft_vocab_from_the_command_line(capsys, tiny_models):
    from biglittle.cli import main

    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"]]
    assert (
        main(
            [
                "generate",
                *models,
                "--draft-vocab",
                str(K),
                "--draft-vocab-ranking",
                "ids",
                "--compare-ar",
                "the old man",
            ]
        )
        == 0
    )
    assert "same output as ar: yes" in capsys.readouterr().err
    assert main(["generate", *models, "--draft-vocab", "0", "the old man"]) == 2
    assert capsys.readouterr().err.strip() == "biglittle: error: draft-vocab must be at least 1, got 0"


def test_an_int8_draft_keeps_an_int8_output_layer_of_the_kept_rows(tiny_models, tokenizer):
    """The restricted layer must read fewer bytes than the full one: int8 rows, not an fp32 copy of them."""
    from biglittle.runtime.quantize import Int8Linear

    full = load_pair(tiny_models["gpt2_draft"], dtype="int8").target.model
    restricted = load_pair(
        tiny_models["llama_target"], tiny_models["gpt2_draft"], dtype="int8", draft_vocab=K, draft_vocab_ranking="ids"
    )
    head = restricted.draft.model.get_output_embeddings()
    assert isinstance(head.scores, Int8Linear) and head.scores.out_features == K + 4
    ids = torch.tensor([restricted.encode("my friend likes")])
    kept = frequent_token_ids(tokenizer, K)
    with torch.no_grad():
        assert torch.equal(restricted.draft.model(ids).logits[..., kept], full(ids).logits[..., kept])


def test_the_corpus_ranking_counts_tokens_and_is_kept(tokenizer, tmp_path, monkeypatch):
    from biglittle.runtime import vocab_ranking

    source = tmp_path / "code.py"
    source.write_text("the cat sees the ball . the dog !\n")
    monkeypatch.setattr(vocab_ranking, "stdlib_sources", lambda: [source])
    monkeypatch.setattr(vocab_ranking, "task_texts", lambda cache: iter(["a bird ! a bird ?"]))
    ranking = vocab_ranking.corpus_ranking(tokenizer, cache=tmp_path)
    ids = {word: VOCAB.index(word) for word in ("the", "a", "bird", "!", "cat")}
    assert ranking[:4] == [ids["the"], ids["a"], ids["bird"], ids["!"]]  # 3, 2, 2, 2 times (ties by id)
    kept = frequent_token_ids(tokenizer, 2, ranking)
    assert set(kept.tolist()) == {0, 1, 2, 3, ids["the"], ids["a"]}  # the two most frequent, with the specials
    monkeypatch.setattr(vocab_ranking, "count_tokens", lambda *a, **k: pytest.fail("counted again"))
    assert vocab_ranking.corpus_ranking(tokenizer, cache=tmp_path) == ranking  # read back from the cache
    assert vocab_ranking.coverage(ranking, 1, [ids["the"], ids["cat"]]) == 0.5
