"""Unigram and bigram drafts: the counts, add-k smoothing, greedy identity, the exact distribution, the cache."""

import random

import pytest
import torch
from conftest import PROMPTS, sentence
from stats_checks import ALPHA, chi_square_pvalue, exact_distribution, sample_first_two

from biglittle import BigLittleError
from biglittle.cli import main
from biglittle.decoding.sampling import SamplingConfig
from biglittle.decoding.trivial_drafts import NgramTable, TokenFrequencies


@pytest.fixture(scope="module")
def toy_text(tmp_path_factory):
    """Lines of the toy grammar: the text the drafts are estimated from."""
    rng = random.Random(11)
    path = tmp_path_factory.mktemp("draft-text") / "toy.txt"
    path.write_text("\n".join(" ".join(sentence(rng)) for _ in range(400)) + "\n")
    return str(path)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path / "cache"))


def test_counts_of_tokens_and_of_pairs():
    table = NgramTable.count([[1, 2, 3, 2, 3], [3, 2, 9]], vocab_size=5)  # 9 is outside the vocabulary
    assert table.unigram_counts.tolist() == [0, 1, 3, 3, 0]
    pairs = {
        (context, int(table.next_tokens[i]), int(table.pair_counts[i]))
        for context in range(5)
        for i in range(int(table.context_starts[context]), int(table.context_starts[context + 1]))
    }
    assert pairs == {(1, 2, 1), (2, 3, 2), (3, 2, 2)}  # (2, 9) is left out with 9


def test_add_k_smoothing():
    table = NgramTable.count([[1, 2, 3, 2, 3], [3, 2]], vocab_size=5)
    k, vocab = 0.5, 5
    unigram = TokenFrequencies(table, 1, k)
    assert unigram.probs(0).tolist() == pytest.approx([(c + k) / (7 + k * vocab) for c in [0, 1, 3, 3, 0]])
    bigram = TokenFrequencies(table, 2, k)
    for context in range(vocab):
        assert float(bigram.probs(context).sum()) == pytest.approx(1.0)
    u = unigram.probs(0)
    expected = (torch.tensor([0, 0, 0, 2, 0]) + k * vocab * u) / (2 + k * vocab)  # after token 2: (2, 3) twice
    assert bigram.probs(2).tolist() == pytest.approx(expected.tolist())
    assert bigram.probs(4).tolist() == pytest.approx(u.tolist())  # a context never seen: the unigram model


def test_a_greedy_bigram_draft_follows_its_own_tokens():
    from biglittle.decoding.trivial_drafts import TrivialDrafter

    table = NgramTable.count([[1, 2, 3, 4, 0]] * 5, vocab_size=5)
    drafter = TrivialDrafter(TokenFrequencies(table, 2, 0.01), SamplingConfig(0.0), {0}, vocab_size=6)
    proposal = drafter.propose([3, 1], 5, None)
    assert proposal.tokens == [2, 3, 4, 0] and proposal.ended  # each after the one before it, to the end token
    unigram = TrivialDrafter(TokenFrequencies(table, 1, 0.01), SamplingConfig(1.0), {0}, vocab_size=6)
    sampled = unigram.propose([1], 3, torch.Generator().manual_seed(0))
    assert sampled.probs.shape == (len(sampled), 6) and float(sampled.probs[0, 5]) == 0.0  # padded to the target's
    assert drafter.timings.calls == 4


@pytest.mark.parametrize("drafter", ["unigram", "bigram"])
def test_greedy_with_a_trivial_draft_equals_greedy_ar(decoder_pair, toy_text, drafter):
    proposed = accepted = 0
    for prompt in PROMPTS:
        ar = decoder_pair.generate(prompt, method="ar", max_new_tokens=30)
        spec = decoder_pair.generate(
            prompt, method="speculative", drafter=drafter, draft_text=toy_text, gamma=3, max_new_tokens=30
        )
        assert spec.token_ids == ar.token_ids, prompt
        proposed, accepted = proposed + spec.stats.proposed, accepted + spec.stats.accepted
        assert spec.stats.draft_calls == spec.stats.proposed  # one timed draft step per proposed token
    assert 0 < accepted < proposed  # drafts both kept and turned down


def test_the_bigram_draft_is_better_than_the_unigram_one(decoder_pair, toy_text):
    def alpha(drafter):
        stats = [
            decoder_pair.generate(p, drafter=drafter, draft_text=toy_text, gamma=2, max_new_tokens=30).stats
            for p in PROMPTS
        ]
        return sum(s.accepted for s in stats) / sum(s.proposed for s in stats)

    assert alpha("bigram") > alpha("unigram") + 0.1


SAMPLING = [("bigram", dict(temperature=0.7, top_k=5)), ("unigram", dict(temperature=1.5, top_p=0.8))]


@pytest.mark.parametrize("drafter, settings", SAMPLING, ids=["bigram-t0.7-topk5", "unigram-t1.5-topp0.8"])
def test_trivial_drafts_preserve_the_target_distribution(decoder_pair, toy_text, drafter, settings):
    """Chi-square at significance ALPHA over 2,500 generations of the first two tokens (as test_speculative.py)."""
    prompt = "the cat"
    sampling = SamplingConfig(settings["temperature"], settings.get("top_k", 0), settings.get("top_p", 1.0))
    expected = exact_distribution(decoder_pair, prompt, sampling)
    counts = sample_first_two(
        decoder_pair, prompt, "speculative", 2500, gamma=2, drafter=drafter, draft_text=toy_text, **settings
    )
    assert chi_square_pvalue(counts, expected) > ALPHA


def test_counts_are_kept_under_the_cache_and_reused(decoder_pair, toy_text, tmp_path):
    from biglittle.draft_text import ngram_table

    tokenizer, vocab = decoder_pair.tokenizer, decoder_pair.target_runner.vocab_size
    first = ngram_table(tokenizer, vocab, 1, toy_text, cache=tmp_path, progress=False)
    (stored,) = (tmp_path / "drafts").glob("*.pt")
    again = ngram_table(tokenizer, vocab, 1, toy_text, cache=tmp_path, progress=False)
    assert torch.equal(first.pair_counts, again.pair_counts)
    NgramTable.count([[5, 6]], vocab).save(stored)  # proof that a second call reads the file
    assert ngram_table(tokenizer, vocab, 1, toy_text, cache=tmp_path, progress=False).pair_counts.tolist() == [1.0]
    stored.write_bytes(b"damaged")  # counted again
    assert torch.equal(
        ngram_table(tokenizer, vocab, 1, toy_text, cache=tmp_path, progress=False).pair_counts, first.pair_counts
    )
    with open(toy_text, "a") as fh:  # other text: other counts, in another file
        fh.write("the dog eats the red apple .\n")
    ngram_table(tokenizer, vocab, 1, toy_text, cache=tmp_path, progress=False)
    assert len(list((tmp_path / "drafts").glob("*.pt"))) == 2


def test_bad_draft_text_is_a_one_line_error(capsys, tiny_models, tmp_path):
    target = tiny_models["llama_target"]
    code = main(["generate", "--target", target, "--drafter", "bigram", "the cat"])
    err = capsys.readouterr().err
    assert code == 2 and "needs --draft-text" in err and len(err.strip().splitlines()) == 1
    code = main(["generate", "--target", target, "--drafter", "unigram", "--draft-text", str(tmp_path / "no"), "x"])
    err = capsys.readouterr().err
    assert code == 2 and "neither a task" in err and len(err.strip().splitlines()) == 1


def test_generate_with_a_bigram_draft_on_the_command_line(capsys, tiny_models, toy_text):
    target = tiny_models["llama_target"]
    argv = ["generate", "--target", target, "--drafter", "bigram", "--draft-text", toy_text, "--json", "the cat"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0 and '"proposed"' in out
    with pytest.raises(BigLittleError, match="tree"):
        from biglittle import GenerationConfig

        GenerationConfig(drafter="bigram", draft_text=toy_text, tree=4).validate()
