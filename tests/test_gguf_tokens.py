"""A GGUF's special (CONTROL) and added (USER_DEFINED) tokens carried into a converted tokenizer, as the original
tokenizer and llama.cpp have them: on a tiny GGUF vocabulary and a tiny tokenizer that splits at punctuation."""

from __future__ import annotations

import gguf
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, PreTrainedTokenizerFast

from biglittle.runtime.gguf_tokens import add_gguf_tokens, gguf_added_tokens, repair_tokenizer
from biglittle.runtime.models import load_tokenizer

VOCAB = ["[UNK]", "a", "b", "<", "|", "fim", ">", "tool", "<|fim|>", "<tool>", "[PAD7]"]
TYPES = [2, 1, 1, 1, 1, 1, 1, 1, 3, 4, 5]  # gguf.TokenType: UNKNOWN, NORMAL..., CONTROL, USER_DEFINED, UNUSED
IDS = {token: index for index, token in enumerate(VOCAB)}
TEXT = "a<|fim|>b <tool>"


def write_gguf(path):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list(VOCAB)
    writer.add_token_types(TYPES)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def converted_tokenizer() -> PreTrainedTokenizerFast:
    """What a conversion that dropped the added tokens leaves: they are in the vocabulary, but text is split first."""
    core = Tokenizer(models.WordLevel(IDS, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def test_control_tokens_become_special_and_user_defined_ones_added(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf")
    assert gguf_added_tokens(path) == (["<|fim|>"], ["<tool>"])
    tokenizer = converted_tokenizer()
    assert tokenizer(TEXT).input_ids == [IDS[t] for t in ("a", "<", "|", "fim", "|", ">", "b", "<", "tool", ">")]
    add_gguf_tokens(tokenizer, path)
    ids = tokenizer(TEXT).input_ids
    assert ids == [IDS["a"], IDS["<|fim|>"], IDS["b"], IDS["<tool>"]] and len(tokenizer) == len(VOCAB)
    kept = tokenizer.convert_ids_to_tokens(tokenizer(TEXT).input_ids, skip_special_tokens=True)
    assert kept == ["a", "b", "<tool>"]  # the control token is special, the user-defined one is not


def test_repair_rewrites_the_tokenizer_of_a_converted_model(tmp_path):
    model_dir = tmp_path / "model"
    LlamaConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        model_dir
    )
    converted_tokenizer().save_pretrained(model_dir)
    repair_tokenizer(model_dir, write_gguf(tmp_path / "tiny.gguf"))
    assert load_tokenizer(str(model_dir))(TEXT).input_ids == [IDS["a"], IDS["<|fim|>"], IDS["b"], IDS["<tool>"]]
    assert not list(model_dir.glob(".tokenizer-*"))  # no temporary folder left
