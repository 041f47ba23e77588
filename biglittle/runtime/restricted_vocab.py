"""A little model that scores only K tokens of the vocabulary (q = 0 for the rest).

Its output layer is often a large part of a little model's cost (Qwen2.5-0.5B: 136M of its 494M
weights score the 151,936 tokens), yet most of those tokens are rare. Keeping K rows cuts that
cost. Speculative decoding stays exact: the rejection rule only needs q to be the distribution
the draft sampled from, and a token the draft cannot propose still comes out of the target
through the residual norm(max(0, p - q)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import BigLittleError


class RestrictedHead(nn.Module):
    """The rows of an output layer for `token_ids`, writing -inf logits for every other token."""

    def __init__(self, head: nn.Module, token_ids: torch.Tensor):
        super().__init__()
        self.vocab_rows = head.weight.shape[0]
        self.register_buffer("token_ids", token_ids)
        self.weight = nn.Parameter(head.weight.detach()[token_ids].clone(), requires_grad=False)
        bias = getattr(head, "bias", None)
        self.bias = None if bias is None else nn.Parameter(bias.detach()[token_ids].clone(), requires_grad=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        scores = F.linear(hidden, self.weight, self.bias)
        logits = scores.new_full((*scores.shape[:-1], self.vocab_rows), float("-inf"))
        return logits.index_copy_(-1, self.token_ids, scores)


def frequent_token_ids(tokenizer: PreTrainedTokenizerBase, k: int) -> torch.Tensor:
    """The K lowest ids of the learned vocabulary, plus every special and added token.

    Byte-level BPE vocabularies (GPT-2, Llama 3, Qwen) number tokens in merge order, which
    follows frequency in the tokenizer's training corpus: low ids are the frequent tokens.
    Special tokens (end of text, chat markers) are always kept, so the draft can end a turn.
    """
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    regular = sorted(set(tokenizer.get_vocab().values()) - special)
    return torch.tensor(sorted(set(regular[:k]) | special))


def restrict_vocabulary(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, k: int) -> None:
    """Replace `model`'s output layer by one that scores only the K most frequent tokens."""
    head = model.get_output_embeddings()
    if k < 1:
        raise BigLittleError(f"draft-vocab must be at least 1, got {k}")
    if head is None or not hasattr(head, "weight"):
        raise BigLittleError(f"{type(model).__name__} has no output layer to restrict")
    token_ids = frequent_token_ids(tokenizer, k).to(head.weight.device)
    if len(token_ids) >= head.weight.shape[0]:
        return  # nothing left out: keep the full layer
    model.set_output_embeddings(RestrictedHead(head, token_ids))
