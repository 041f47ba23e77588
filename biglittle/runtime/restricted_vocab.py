"""A little model that scores only K tokens of the vocabulary (q = 0 for the rest).

Its output layer is often a large part of a little model's cost (Qwen2.5-0.5B: 136M of its 494M
weights score the 151,936 tokens), yet most of those tokens are rare. Keeping K rows cuts that
cost. Speculative decoding stays exact: the rejection rule only needs q to be the distribution
the draft sampled from, and a token the draft cannot propose still comes out of the target
through the residual norm(max(0, p - q)).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import BigLittleError
from .int4 import Int4Linear
from .quantize import Int8Linear


class RestrictedHead(nn.Module):
    """The rows of an output layer for `token_ids`, writing -inf logits for every other token.

    An int8 output layer stays int8 and an int4 one int4 (their rows' own integers and scales), so the restricted
    layer reads K/V of the full one's bytes per step, not an fp32 copy of the rows.
    """

    def __init__(self, head: nn.Module, token_ids: torch.Tensor):
        super().__init__()
        self.vocab_rows = getattr(head, "out_features", None) or head.weight.shape[0]
        self.register_buffer("token_ids", token_ids)
        if isinstance(head, Int4Linear):  # its rows' own integers, scales and zeros
            self.scores: nn.Module = head.rows(token_ids)
            return
        bias = getattr(head, "bias", None)
        bias = None if bias is None else bias.detach()[token_ids].clone()
        if isinstance(head, Int8Linear):  # its rows' own integers and scales
            self.scores = Int8Linear(head.integers()[token_ids], head.scales[token_ids], bias)
            return
        self.scores = _frozen_linear(head.weight.detach()[token_ids], bias)

    @property
    def weight(self) -> torch.Tensor:
        return self.scores.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        scores = self.scores(hidden)
        logits = scores.new_full((*scores.shape[:-1], self.vocab_rows), float("-inf"))
        return logits.index_copy_(-1, self.token_ids, scores)


def _frozen_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype, device=weight.device)
    layer.weight = nn.Parameter(weight.clone(), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias, requires_grad=False)
    return layer


def frequent_token_ids(tokenizer: PreTrainedTokenizerBase, k: int, ranking: list[int] | None = None) -> torch.Tensor:
    """The K most frequent tokens of the learned vocabulary by `ranking` (vocab_ranking.py), plus every special and
    added token, so the draft can end a turn.

    Without a ranking, or past its end, the lowest ids: byte-level BPE vocabularies (GPT-2, Llama 3, Qwen) number
    tokens in merge order, which follows frequency in the tokenizer's own training corpus.
    """
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    regular = set(tokenizer.get_vocab().values()) - special
    ranked = [token for token in dict.fromkeys(ranking or []) if token in regular]
    order = ranked + sorted(regular - set(ranked))
    return torch.tensor(sorted(set(order[:k]) | special))


def restrict_vocabulary(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, k: int, ranking: list[int] | None = None
) -> None:
    """Replace `model`'s output layer by one that scores only the K most frequent tokens (by `ranking`)."""
    head = model.get_output_embeddings()
    if k < 1:
        raise BigLittleError(f"draft-vocab must be at least 1, got {k}")
    if head is None or not hasattr(head, "weight"):
        raise BigLittleError(f"{type(model).__name__} has no output layer to restrict")
    token_ids = frequent_token_ids(tokenizer, k, ranking).to(model.device)
    if len(token_ids) >= (getattr(head, "out_features", None) or head.weight.shape[0]):  # an int8 weight is a copy
        return  # nothing left out: keep the full layer
    model.set_output_embeddings(RestrictedHead(head, token_ids))
