"""An early-exit draft and its target sharing one KV cache and the draft's layer-L hidden states.

The early exit after L layers computes, for every token it reads, exactly what the target's first
L layers compute. So its runner and the target's share one state: a single KV cache whose layers
0..L-1 (the shallow ones) both runners fill, whichever reaches a position first, and whose layers
L..N-1 (the deep ones) only the target fills; plus the layer-L hidden states of the positions the
shallow layers hold and the deep ones do not yet. A verification pass runs the shallow layers
only for the tokens the draft has not read (its last proposal) and the deep layers for all the
new positions from the stored states: about (N - L) / N of a full pass, and bit for bit the
same logits wherever the model scores batch-invariantly (int8).

The shallow layers usually hold more positions than the deep ones (the draft runs ahead). Either
runner's crop cuts both parts (a rejected token is wrong in both), and starting either runner
starts both. Only model types whose forward pass is known to be embed -> rotary -> layers ->
norm -> output layer with full attention in every layer (Llama, Qwen2) share; for any other
target `make_runners` gives two ModelRunners with caches of their own, with the same results.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.masking_utils import create_causal_mask

from ..runner import ModelRunner, Runner, Timings

SHARING_MODEL_TYPES = ("llama", "qwen2")


def make_runners(
    target: PreTrainedModel, draft: PreTrainedModel | None, vocab_size: int
) -> tuple[Runner, Runner | None]:
    """(target runner, draft runner); they share one state when `draft` is an early exit of `target`."""
    num_layers = shared_layers(target, draft) if draft is not None else None
    if num_layers is None:
        return ModelRunner(target, vocab_size), ModelRunner(draft, vocab_size) if draft is not None else None
    state = SharedExitState(target, num_layers)
    return ExitTargetRunner(target, vocab_size, state), ExitDraftRunner(draft, vocab_size, state)


def shared_layers(target: PreTrainedModel, draft: PreTrainedModel) -> int | None:
    """L when `draft` runs the target's own first L layer modules and the structure allows sharing, else None."""
    config = target.config
    if config.model_type not in SHARING_MODEL_TYPES or type(draft) is not type(target):
        return None  # a draft of another class may compute its logits otherwise
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or []):
        return None  # sliding-window layers need other masks and cache layers
    target_base, draft_base = target.base_model, draft.base_model
    shallow = list(draft_base.layers)
    if draft_base.embed_tokens is not target_base.embed_tokens or not len(shallow) < len(target_base.layers):
        return None
    if any(mine is not theirs for mine, theirs in zip(shallow, target_base.layers)):
        return None
    return len(shallow)


class SharedExitState:
    """The KV cache of a target and its early exit, and the exit's pending layer-L hidden states."""

    def __init__(self, target: PreTrainedModel, num_layers: int):
        self.base = target.base_model
        self.num_layers = num_layers
        self.reset()

    def reset(self) -> None:
        self.cache = DynamicCache(config=self.base.config)
        self.deep_len = 0  # positions held by layers L..N-1
        self.pending_ids: list[int] = []  # the tokens at positions deep_len..shallow_len - 1
        self.pending: list[torch.Tensor] = []  # their layer-L hidden states, in chunks [1, n, hidden]

    @property
    def shallow_len(self) -> int:
        """Positions held by layers 0..L-1."""
        return self.deep_len + len(self.pending_ids)

    def run_shallow(self, tokens: list[int]) -> torch.Tensor | None:
        """Layers 0..L-1 over the tokens they have not seen; their layer-L states [1, new, hidden] (kept too)."""
        if tokens[self.deep_len : self.shallow_len] != self.pending_ids:
            raise RuntimeError("the shared cache holds other tokens than these: crop first")
        new_ids = tokens[self.shallow_len :]
        if not new_ids:
            return None
        input_ids = torch.tensor([new_ids], device=self.base.embed_tokens.weight.device)
        hidden = self._run_layers(self.base.embed_tokens(input_ids), self.shallow_len, 0, self.num_layers)
        self.pending.append(hidden)
        self.pending_ids += new_ids
        return hidden

    def run_deep(self) -> torch.Tensor:
        """Layers L..N-1 over every pending position; the last layer's hidden states [1, pending, hidden]."""
        hidden = torch.cat(self.pending, dim=1)
        hidden = self._run_layers(hidden, self.deep_len, self.num_layers, len(self.base.layers))
        self.deep_len, self.pending_ids, self.pending = self.shallow_len, [], []
        return hidden

    def crop(self, length: int) -> None:
        """Keep the first `length` positions in every layer (a no-op where fewer are held)."""
        if length >= self.shallow_len:
            return
        self.cache.crop(length)
        self.deep_len = min(self.deep_len, length)
        keep = length - self.deep_len
        self.pending_ids = self.pending_ids[:keep]
        self.pending = [torch.cat(self.pending, dim=1)[:, :keep]] if keep else []

    def _run_layers(self, hidden: torch.Tensor, start: int, first: int, stop: int) -> torch.Tensor:
        """Layers first..stop-1 over positions start.. (hidden [1, n, hidden]), as the model's own forward runs them."""
        positions = torch.arange(start, start + hidden.shape[1], device=hidden.device)  # [n]
        position_ids = positions.unsqueeze(0)
        mask = create_causal_mask(
            config=self.base.config,
            input_embeds=hidden,
            attention_mask=None,
            cache_position=positions,
            past_key_values=_LayerLength(self.cache.layers[first]),
            position_ids=position_ids,
        )
        rotary = self.base.rotary_emb(hidden, position_ids)
        for layer in self.base.layers[first:stop]:
            hidden = layer(
                hidden,
                attention_mask=mask,
                position_ids=position_ids,
                past_key_values=self.cache,
                use_cache=True,
                cache_position=positions,
                position_embeddings=rotary,
            )
        return hidden


class _LayerLength:
    """What transformers' mask functions read of a cache, for one layer. The shallow and deep layers
    hold different lengths; a mask sized for the longer shallow ones happens to work where the attention
    function cuts it to its keys (eager, sdpa, biglittle_rowwise), but one sized for the layers it
    serves needs no such luck."""

    def __init__(self, layer):
        self.layer = layer

    def get_mask_sizes(self, cache_position: torch.Tensor, layer_idx: int) -> tuple[int, int]:
        return self.layer.get_mask_sizes(cache_position)


class _SharedRunner(Runner):
    def __init__(self, model: PreTrainedModel, vocab_size: int, state: SharedExitState):
        super().__init__(model, vocab_size)
        self.state = state

    def start(self, prompt_ids: list[int]) -> list[int]:
        """Forget the previous prompt (for both runners of the pair)."""
        self.timings = Timings()
        self.state.reset()
        return list(prompt_ids)

    def crop(self, length: int) -> None:
        self.state.crop(length)

    def _logits(self, hidden: torch.Tensor, with_states: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This model's final norm and output layer over hidden [1, n, hidden]: (logits [n, rows], the normed
        states [n, hidden] or None)."""
        normed = self.model.base_model.norm(hidden)
        return self.model.get_output_embeddings()(normed)[0], normed[0] if with_states else None


class ExitDraftRunner(_SharedRunner):
    """The early exit: layers 0..L-1 into the shared cache, then its own norm and output layer."""

    @property
    def cache_len(self) -> int:
        return self.state.shallow_len

    def _feed(self, tokens: list[int], num_logits: int, hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._logits(self.state.run_shallow(tokens)[:, -num_logits:], hidden)


class ExitTargetRunner(_SharedRunner):
    """The target: layers 0..L-1 only where the draft has not run them, then layers L..N-1."""

    @property
    def cache_len(self) -> int:
        return self.state.deep_len

    def _feed(self, tokens: list[int], num_logits: int, hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.state.run_shallow(tokens)
        return self._logits(self.state.run_deep()[:, -num_logits:], hidden)
