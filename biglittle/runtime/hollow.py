"""A model's layers with tiny matrices: what one of its steps costs whatever the size of its weights.

On a CPU a decoding step costs reading the weights (the memory floor, cost/profile.py), multiplying by them, and a
fixed part that the weights' size does not change: each layer's operator calls, Python, the cache and the attention's
bookkeeping. A copy with the same architecture, layers, heads and precision but matrices a few columns wide costs
almost only that fixed part, so timing it splits a step's cost (`biglittle profile` prints it beside the floor).
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

from .models import DTYPES, apply_precision
from .quantize import precision_of

HEAD_DIM = 8  # columns per attention head in the copy
VOCAB = 512  # tokens of the copy's embeddings and output layer


def hollow_copy(model: PreTrainedModel) -> PreTrainedModel | None:
    """`model`'s architecture, layers, heads and precision with random weights, HEAD_DIM columns per head, MLPs four
    heads' width and at most VOCAB tokens; None for an encoder-decoder, or a config without `num_attention_heads`."""
    config = copy.deepcopy(model.config)
    heads = getattr(config, "num_attention_heads", None)
    if config.is_encoder_decoder or not heads:
        return None
    config.hidden_size = HEAD_DIM * heads  # GPT-2's n_embd through its attribute map
    if getattr(config, "head_dim", None):
        config.head_dim = HEAD_DIM
    for name in ("intermediate_size", "n_inner"):  # n_inner None: GPT-2 makes it 4 x n_embd itself
        if getattr(config, name, None):
            setattr(config, name, 4 * config.hidden_size)
    config.vocab_size = min(VOCAB, config.vocab_size)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):  # ids past the copy's vocabulary
        if isinstance(getattr(config, name, None), int) and getattr(config, name) >= config.vocab_size:
            setattr(config, name, 0)
    with torch.device(model.device):
        hollow = type(model)(config).eval()
    precision = precision_of(model)
    apply_precision(hollow, {str(dtype): name for name, dtype in DTYPES.items()}.get(precision, precision))
    return hollow
