"""The big model's own first layers as the little model (BiLD's early-exit variant, self-speculation).

The early exit is the target's first L layers, then its final norm and output layer. It is a
shallow copy of the target whose layer list holds only those L layer modules: every weight is
shared with the target (no second copy in memory), and it is an ordinary transformers model,
so caches, cropping and both decoding methods work on it unchanged.

With a Llama or Qwen2 target the pair's runners also share work (shared_cache.py): one KV
cache, whose first L layers the draft fills, and the draft's layer-L hidden states, from which the
target's verification pass goes on, so it runs layers 1..L only for the last proposed token. Other
targets (GPT-2, ...) keep a KV cache per model; the output is the same either way.
"""

from __future__ import annotations

import copy

from torch import nn
from transformers import PreTrainedModel

from ...errors import BigLittleError
from .head import final_norm_name


def early_exit_model(model: PreTrainedModel, num_layers: int, head: nn.Module | None = None) -> PreTrainedModel:
    """A view of `model` that runs only its first `num_layers` layers (weights shared).

    `head` (a trained ExitHead, see head.py) takes the place of the final norm in the view only.
    """
    if model.config.is_encoder_decoder:
        raise BigLittleError("early-exit drafts need a decoder-only target")
    base = model.base_model
    name, layers = layer_stack(base)
    if not 1 <= num_layers < len(layers):
        raise BigLittleError(
            f"early exit after {num_layers} layers: the target has {len(layers)}; choose 1..{len(layers) - 1}"
        )
    exit_base = _shallow_module_copy(base)
    exit_base.config = copy.copy(base.config)
    exit_base.config.num_hidden_layers = num_layers
    setattr(exit_base, name, nn.ModuleList(list(layers)[:num_layers]))
    if head is not None:
        setattr(exit_base, final_norm_name(exit_base), head)
    exit_model = _shallow_module_copy(model)
    exit_model.config = exit_base.config
    setattr(exit_model, model.base_model_prefix, exit_base)
    return exit_model


def layer_stack(base: nn.Module) -> tuple[str, nn.ModuleList]:
    """The base model's stack of transformer layers (`layers` in Llama / Qwen2, `h` in GPT-2)."""
    count = base.config.num_hidden_layers
    for name, child in base.named_children():
        if isinstance(child, nn.ModuleList) and len(child) == count:
            return name, child
    raise BigLittleError(f"cannot find the layer stack of {type(base).__name__} for an early exit")


def _shallow_module_copy(module: nn.Module) -> nn.Module:
    """A copy sharing every submodule and weight, whose own submodule table can be changed."""
    duplicate = copy.copy(module)
    for table in ("_modules", "_parameters", "_buffers"):
        duplicate.__dict__[table] = dict(module.__dict__[table])
    return duplicate
