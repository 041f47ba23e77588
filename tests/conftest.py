"""Tiny models built inside the tests: one small word-level vocabulary shared by every model.

The models are briefly trained on a toy grammar so that their distributions have structure
(confident and unsure positions, a draft that mostly but not always agrees with its target),
which is what the decoding methods react to. Untrained models would be nearly uniform.
"""

from __future__ import annotations

import functools
import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

# Tiny models run fastest on one thread, and a second test process or job then cannot thrash them.
torch.set_num_threads(1)

SPECIALS = ["<pad>", "</s>", "<s>", "<unk>"]
WORDS = [
    "the",
    "a",
    "my",
    "some",
    "cat",
    "dog",
    "bird",
    "friend",
    "old",
    "man",
    "sees",
    "likes",
    "finds",
    "eats",
    "wants",
    "ball",
    "fish",
    "red",
    "apple",
    "bread",
    "big",
    "house",
    "and",
    "very",
    "quickly",
    ".",
    "!",
    "?",
]
VOCAB = SPECIALS + WORDS  # 32 tokens
PAD, EOS, BOS = 0, 1, 2


def pytest_addoption(parser):
    parser.addoption("--run-integration", action="store_true", help="run tests that need the real default model pair")
    parser.addoption(
        "--run-browser",
        action="store_true",
        help="run the page's test in headless Chromium (Debian's chromium and chromium-driver packages)",
    )
    parser.addoption("--serve-url", help="with --run-browser: test the page of this running `biglittle serve`")
    parser.addoption("--screenshot", help="with --run-browser: save a screenshot of the page here")
    parser.addoption("--device", default="cpu", help="load the tiny pairs on this torch device (the GPU check: cuda)")


def pytest_configure(config):
    """--device: every `load_pair` of the tests puts its models there (scripts/gpu_check.sh runs the suite so)."""
    device = config.getoption("--device")
    if device != "cpu":
        import biglittle
        import biglittle.api

        load_pair = functools.partial(biglittle.api.load_pair, device=device)
        biglittle.load_pair = biglittle.api.load_pair = load_pair  # type: ignore[assignment]


OPT_INS = {
    "integration": ("--run-integration", "needs the real model pair: pass --run-integration"),
    "browser": ("--run-browser", "drives headless Chromium: pass --run-browser"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:  # `-m "not models"`: the quick tests that need no trained tiny model (make mutate runs them)
        if "tiny_models" in getattr(item, "fixturenames", ()):
            item.add_marker("models")
    for marker, (option, reason) in OPT_INS.items():
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def make_tokenizer(vocab: list[str] = VOCAB) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.WordLevel({word: i for i, word in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    )


def sentence(rng: random.Random) -> list[str]:
    subject = rng.choice([["the", "cat"], ["the", "dog"], ["a", "bird"], ["my", "friend"], ["the", "old", "man"]])
    verb = rng.choice(["sees", "likes", "finds", "eats", "wants"])
    obj = rng.choice(
        [["the", "ball"], ["a", "fish"], ["the", "red", "apple"], ["some", "bread"], ["a", "big", "house"]]
    )
    adverb = rng.choice([[], [], ["quickly"], ["very", "quickly"]])
    return subject + adverb + [verb] + obj + [rng.choice([".", ".", "!", "?"])]


def text_sample(rng: random.Random) -> list[int]:
    words = []
    for index in range(rng.choice([1, 2, 3])):
        words += (["and"] if index and rng.random() < 0.3 else []) + sentence(rng)
    return [BOS] + [VOCAB.index(w) for w in words] + [EOS]


def _batches(rng: random.Random, make, batch_size: int, length: int):
    while True:
        rows = []
        for _ in range(batch_size):
            row = make(rng)[:length]
            rows.append(row + [PAD] * (length - len(row)))
        yield torch.tensor(rows)


def train_causal(model, steps: int, seed: int):
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = _batches(rng, text_sample, 32, 40)
    model.train()
    for _ in range(steps):
        ids = next(batches)
        labels = ids.masked_fill(ids == PAD, -100)
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def translation_pair(rng: random.Random) -> tuple[list[int], list[int]]:
    """A toy 'translation': the sentence with its words reversed."""
    source = [VOCAB.index(w) for w in sentence(rng)]
    return [BOS] + source + [EOS], list(reversed(source)) + [EOS]


def train_seq2seq(model, steps: int, seed: int):
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        pairs = [translation_pair(rng) for _ in range(32)]
        source = torch.tensor([s + [PAD] * (14 - len(s)) for s, _ in pairs])
        target = torch.tensor([t + [-100] * (13 - len(t)) for _, t in pairs])
        model(input_ids=source, attention_mask=source != PAD, labels=target).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def _save(model, tokenizer, path):
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _common(**extra):
    return dict(vocab_size=len(VOCAB), bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, **extra)


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tokenizer) -> dict[str, str]:
    """Paths of tiny trained models: a Llama target with a GPT-2 draft, and a T5 target and draft."""
    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(
            **_common(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=128,
                tie_word_embeddings=False,
            )
        )
    )
    gpt2 = GPT2LMHeadModel(GPT2Config(**_common(n_embd=32, n_layer=2, n_head=2, n_positions=128)))
    t5_big = T5ForConditionalGeneration(
        T5Config(
            **_common(
                d_model=64,
                d_ff=128,
                d_kv=16,
                num_layers=2,
                num_decoder_layers=2,
                num_heads=4,
                decoder_start_token_id=PAD,
            )
        )
    )
    t5_little = T5ForConditionalGeneration(
        T5Config(
            **_common(
                d_model=32,
                d_ff=64,
                d_kv=16,
                num_layers=1,
                num_decoder_layers=1,
                num_heads=2,
                decoder_start_token_id=PAD,
            )
        )
    )
    return {
        "llama_target": _save(train_causal(llama, 150, seed=1), tokenizer, root / "llama_target"),
        "gpt2_draft": _save(train_causal(gpt2, 80, seed=2), tokenizer, root / "gpt2_draft"),
        "t5_target": _save(train_seq2seq(t5_big, 150, seed=3), tokenizer, root / "t5_target"),
        "t5_draft": _save(train_seq2seq(t5_little, 40, seed=4), tokenizer, root / "t5_draft"),
    }


@pytest.fixture(scope="session")
def other_vocab_model(tmp_path_factory) -> str:
    """An untrained tiny model whose tokenizer numbers two words the other way round."""
    vocab = list(VOCAB)
    vocab[4], vocab[5] = vocab[5], vocab[4]
    model = GPT2LMHeadModel(GPT2Config(**_common(n_embd=16, n_layer=1, n_head=2, n_positions=64)))
    return _save(model, make_tokenizer(vocab), tmp_path_factory.mktemp("other_vocab"))


@pytest.fixture(scope="session")
def decoder_pair(tiny_models):
    from biglittle import load_pair

    return load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"])


@pytest.fixture(scope="session")
def exit_pair(tiny_models):
    """The Llama target with its first 2 of 4 layers as the draft, sharing the target's KV cache."""
    from biglittle import load_pair

    return load_pair(tiny_models["llama_target"], "early-exit:2")


@pytest.fixture(scope="session")
def seq2seq_pair(tiny_models):
    from biglittle import load_pair

    return load_pair(tiny_models["t5_target"], tiny_models["t5_draft"])


PROMPTS = [
    "the cat",
    "my friend quickly",
    "a bird sees the",
    "the old man wants some bread . and",
    "the dog likes",
    "some",
    "a big house !",
    "very quickly the",
]

SEQ2SEQ_PROMPTS = ["the cat sees a fish .", "my friend likes the red apple !", "a bird quickly finds some bread ?"]


@pytest.fixture(scope="session")
def cross_models(tmp_path_factory, tiny_models) -> dict[str, str]:
    """Two tokenizers over the same text: the word-level Llama target and a character-level draft (cross_models.py)."""
    from cross_models import build_cross_models

    return build_cross_models(tmp_path_factory.mktemp("cross_models"), tiny_models["llama_target"])


@pytest.fixture(scope="session")
def cross_pair(cross_models):
    from biglittle import load_pair

    return load_pair(cross_models["target"], cross_models["draft"], cross_tokenizer=True)
