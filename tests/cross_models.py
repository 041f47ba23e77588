"""A pair with two tokenizers over the same toy text: the word-level Llama target and a GPT-2 draft that
splits the longer words in two ("friend" is "fri" + "##end"), so that a target token is sometimes one
draft token and sometimes two, and the draft's text reaches the target in pieces.

The target keeps its trained weights; its tokenizer is saved again without the word-level decoder's
clean-up (which writes "fish ." as "fish." and so cannot tokenize its own text back). The draft is
trained on the target's samples as the target's tokenizer writes them as text. A character-level
tokenizer without a "q" is a draft that cannot write the target's text.
"""

from __future__ import annotations

import random
import shutil

import torch
from conftest import PAD, SPECIALS, VOCAB, WORDS, _save, text_sample
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

CHARACTERS = sorted({character for word in WORDS for character in word} | {" "})
SPLIT = 3  # words longer than four letters are split after their first three


def pieces(word: str) -> list[str]:
    return [word[:SPLIT], "##" + word[SPLIT:]] if len(word) > 4 else [word]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """conftest's word-level tokenizer (same ids), decoding words joined by spaces, nothing cleaned up."""
    core = Tokenizer(models.WordLevel({word: i for i, word in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    )


def char_tokenizer(characters=CHARACTERS) -> PreTrainedTokenizerFast:
    """One token per character (the specials whole); decoding concatenates."""
    vocab = {token: i for i, token in enumerate(SPECIALS + list(characters))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    )


def piece_tokenizer() -> PreTrainedTokenizerFast:
    """Word pieces: the words of four letters or fewer whole, the longer ones in two (WordPiece, no clean-up)."""
    vocab = {token: i for i, token in enumerate(SPECIALS + sorted({p for word in WORDS for p in pieces(word)}))}
    core = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    )
    for word in WORDS:
        assert tokenizer.tokenize(word) == pieces(word), word
    return tokenizer


def draft_sample(rng: random.Random, words: PreTrainedTokenizerFast, draft: PreTrainedTokenizerFast) -> list[int]:
    """A toy text as the target writes it (BOS and EOS included), in the draft's tokens."""
    return draft(words.decode(text_sample(rng)), add_special_tokens=False).input_ids


def train_piece_draft(words, draft, steps: int = 100, seed: int = 5, length: int = 48) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(draft), n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=2, eos_token_id=1
        )
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = [draft_sample(rng, words, draft)[:length] for _ in range(32)]
        ids = torch.tensor([row + [PAD] * (length - len(row)) for row in rows])
        model(input_ids=ids, labels=ids.masked_fill(ids == PAD, -100)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def build_cross_models(root, llama_target: str) -> dict[str, str]:
    """Paths: the target with its clean word tokenizer, the word-piece draft, and a draft missing a letter."""
    words, draft_tokens, chars = word_tokenizer(), piece_tokenizer(), char_tokenizer()
    target = root / "word_target"
    shutil.copytree(llama_target, target)
    words.save_pretrained(target)
    draft = _save(train_piece_draft(words, draft_tokens), draft_tokens, root / "piece_draft")
    untrained = GPT2LMHeadModel(GPT2Config(vocab_size=len(chars), n_embd=16, n_layer=1, n_head=2, n_positions=64))
    missing_q = _save(untrained, char_tokenizer([c for c in CHARACTERS if c != "q"]), root / "char_draft_without_q")
    return {"target": str(target), "draft": draft, "draft_without_q": missing_q}
