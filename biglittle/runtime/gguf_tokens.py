"""A GGUF vocabulary's added tokens, carried over into the tokenizer transformers converts from it.

transformers' GGUF conversion keeps only a few special tokens (for Qwen2.5-Coder: <|endoftext|>, <|im_start|>,
<|im_end|>). The original tokenizer had more: <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>, <|file_sep|>, ...
as special tokens and <tool_call> as an added one. Without them a fill-in-the-middle prompt is tokenized as
plain text (`<|`, `f`, `im`, `_prefix`, ...), unlike llama.cpp and the original tokenizer. The GGUF marks them
by token type (CONTROL: special; USER_DEFINED: added); their ids are already the vocabulary's, so registering
them changes no id and not the vocabulary's size (tests/test_integration.py compares with llama.cpp's ids).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CONTROL, USER_DEFINED = 3, 4  # gguf.TokenType


def gguf_added_tokens(gguf_path: Path) -> tuple[list[str], list[str]]:
    """(special, other added) tokens of a GGUF vocabulary: its CONTROL and USER_DEFINED tokens, in id order."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    tokens, types = reader.fields["tokenizer.ggml.tokens"], reader.fields["tokenizer.ggml.token_type"]
    special, other = [], []
    for token_part, type_part in zip(tokens.data, types.data):
        kind = int(types.parts[type_part][0])
        if kind in (CONTROL, USER_DEFINED):
            (special if kind == CONTROL else other).append(bytes(tokens.parts[token_part]).decode())
    return special, other


def add_gguf_tokens(tokenizer, gguf_path: Path) -> None:
    """Registers the GGUF's special and added tokens with `tokenizer` (a fast transformers tokenizer), in place."""
    from transformers import AddedToken

    special, other = gguf_added_tokens(gguf_path)
    size = len(tokenizer)
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in other])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(token, special=True, normalized=False) for token in special]},
        replace_additional_special_tokens=False,
    )
    assert len(tokenizer) == size, "a GGUF's added tokens are in its vocabulary already"


def repair_tokenizer(model_dir: Path, gguf_path: Path) -> None:
    """Adds the GGUF's tokens to the tokenizer of a model converted without them; each file is replaced whole."""
    from .models import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    add_gguf_tokens(tokenizer, gguf_path)
    saved = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=model_dir))
    try:
        tokenizer.save_pretrained(saved)
        for path in saved.iterdir():
            os.replace(path, model_dir / path.name)
    finally:
        shutil.rmtree(saved, ignore_errors=True)
