"""Streaming: incremental detokenization (split multi-byte characters, merged tokens, stop strings) and
ModelPair.stream, which must give the same text as generate() as it goes, and stop when its reader leaves."""

from __future__ import annotations

import time

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from biglittle import load_pair
from biglittle.decoding.detokenize import REPLACEMENT_CHARACTER, IncrementalDetokenizer

TEXT = "the cat sees the dog. 日本語 café — naïve 🙂 the end"


@pytest.fixture(scope="module")
def byte_level_bpe() -> Tokenizer:
    """A byte-level BPE tokenizer trained on ASCII only: 'the', ' cat' are merged tokens, while every byte of a
    multi-byte character (日, é, 🙂) is a token of its own, so that one character is split across tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(["the cat sees the dog. the end"] * 20, trainer)
    return tokenizer


def stream_tokens(detokenizer: IncrementalDetokenizer, token_ids: list[int]) -> list[str]:
    return [detokenizer.add([token]) for token in token_ids] + [detokenizer.finish()]


def test_the_tokenizer_splits_characters_and_merges_words(byte_level_bpe):
    ids = byte_level_bpe.encode(TEXT).ids
    pieces = [byte_level_bpe.decode([token]) for token in ids]
    assert any(REPLACEMENT_CHARACTER in piece for piece in pieces)  # a token holding part of a character
    assert "the" in pieces and " cat" in pieces  # merged tokens


def test_pieces_never_break_a_character_and_join_to_the_text(byte_level_bpe):
    ids = byte_level_bpe.encode(TEXT).ids
    pieces = stream_tokens(IncrementalDetokenizer(byte_level_bpe.decode), ids)
    assert "".join(pieces) == byte_level_bpe.decode(ids) == TEXT
    assert not any(REPLACEMENT_CHARACTER in piece for piece in pieces)
    assert "" in pieces[:-1]  # held back while a character was unfinished
    assert " 日" in pieces and " 🙂" in pieces  # released whole (with the space before it) once its last byte came


def test_several_tokens_at_once(byte_level_bpe):
    ids = byte_level_bpe.encode(TEXT).ids
    detokenizer = IncrementalDetokenizer(byte_level_bpe.decode)
    pieces = [detokenizer.add(ids[start : start + 3]) for start in range(0, len(ids), 3)] + [detokenizer.finish()]
    assert "".join(pieces) == TEXT and not any(REPLACEMENT_CHARACTER in piece for piece in pieces)


def test_trailing_whitespace_waits_for_the_next_token():
    # A tokenizer whose clean-up removes a space before punctuation: "a" + " " + "." decodes to "a.", not "a .".
    def decode(ids):
        return "".join(["a", " ", "."][i] for i in ids).replace(" .", ".")

    detokenizer = IncrementalDetokenizer(decode)
    assert stream_tokens(detokenizer, [0, 1, 2]) == ["a", "", ".", ""]


@pytest.mark.parametrize(
    ("include_stop", "expected"),
    [(True, "the cat sees the dog. 日本"), (False, "the cat sees the dog. ")],
)
def test_stop_string_across_tokens(byte_level_bpe, include_stop, expected):
    ids = byte_level_bpe.encode(TEXT).ids
    detokenizer = IncrementalDetokenizer(byte_level_bpe.decode, ("日本",), include_stop)
    pieces = stream_tokens(detokenizer, ids)
    assert "".join(pieces) == expected and detokenizer.stopped
    # Nothing of a stop string is let out before it is known not to be one: "the c" could still become "the cow".
    detokenizer = IncrementalDetokenizer(byte_level_bpe.decode, ("the cow",), include_stop=False)
    pieces = stream_tokens(detokenizer, ids)
    assert "".join(pieces) == TEXT and not detokenizer.stopped
    emitted = ""
    for piece in pieces:
        emitted += piece
        assert not emitted.endswith(("the", "the ", "the c"))


def test_stream_gives_generate_s_text_as_it_goes(decoder_pair):
    for settings in (
        {"method": "speculative", "gamma": 3},
        {"method": "bild", "fallback_threshold": 0.5, "rollback_threshold": 1.0},
        {"method": "ar", "stop": ("fish",)},
        {"method": "speculative", "temperature": 1.0, "seed": 3},
    ):
        expected = decoder_pair.generate("a bird sees the", max_new_tokens=24, **settings)
        chunks = list(decoder_pair.stream("a bird sees the", max_new_tokens=24, **settings))
        assert chunks[-1].result is not None and all(chunk.result is None for chunk in chunks[:-1])
        assert "".join(chunk.text for chunk in chunks) == expected.text == chunks[-1].result.text, settings
        assert [token for chunk in chunks for token in chunk.token_ids] == expected.token_ids
        for chunk in chunks[:-1]:
            assert len(chunk.sources) == len(chunk.token_ids) and "".join(chunk.token_texts) == chunk.text
        drafted = sum(chunk.sources.count("draft") for chunk in chunks)
        assert drafted == expected.stats.accepted
        assert sum(len(chunk.discarded) for chunk in chunks) == expected.stats.discarded


def test_leaving_the_stream_stops_the_generation(tiny_models):
    pair = load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"])
    pair.target.model.generation_config.eos_token_id = []  # endless: only max_new_tokens ends it
    rounds = []
    generate = pair.generate

    def slow_generate(prompt, config=None, *, on_commit=None, **settings):
        def slow(commit):
            rounds.append(commit.total)
            time.sleep(0.02)
            on_commit(commit)

        return generate(prompt, config, on_commit=slow, **settings)

    pair.generate = slow_generate
    stream = pair.stream("the cat", method="ar", max_new_tokens=100)
    first = next(stream)
    assert first.token_ids and first.result is None
    stream.close()  # what `break` does: the generation ends after its current round
    assert len(rounds) < 10
    rounds.clear()
    chunks = list(pair.stream("the cat", method="ar", max_new_tokens=3))  # the pair serves the next one
    assert len(chunks[-1].result.token_ids) == 3 and rounds == [1, 2, 3]


def test_bad_settings_are_refused_before_streaming(decoder_pair):
    from biglittle.errors import BigLittleError

    with pytest.raises(BigLittleError, match="gamma must be at least 1"):
        decoder_pair.stream("the cat", gamma=0)
