"""One model and its KV cache behind a tiny interface: feed tokens -> logits, crop to a length.

Decoder-only and encoder-decoder models look the same from outside: the runner owns the cache
and (encoder-decoder) the encoder output computed once per prompt, and `forward(tokens)`
feeds only the tokens its cache has not seen. The decoding loop keeps every runner's cache at
most `len(tokens) - 1` long, so a bonus token, BiLD's catch-up over the little model's tokens
and recovery after a rollback are all the same call: crop, then forward.

A decoder-only model also scores trees of proposed tokens (`forward_tree`): each node attends to
the committed text, its ancestors and itself, at the position its depth gives, so its logits are
those of the chain from the root to it; the cache then holds every fed node until `retain` keeps
the accepted path's entries, in order, as if that path alone had been fed.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel

from ..errors import BigLittleError
from .quantize import prefilling


@dataclass
class Timings:
    """A runner's forward passes since its last start: count, seconds and (tokens fed, seconds) of each."""

    calls: int = 0
    seconds: float = 0.0
    call_log: list[tuple[int, float]] = field(default_factory=list)

    def record(self, num_tokens: int, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds
        self.call_log.append((num_tokens, seconds))


class Runner:
    """What the decoding loop sees of a model: start, forward (timed, counted), crop.

    Subclasses own the cache: `cache_len`, `start`, `crop` and `_feed` (the model call itself).
    """

    def __init__(self, model: PreTrainedModel, vocab_size: int):
        self.model = model
        self.vocab_size = vocab_size  # the pair's shared vocabulary; padded rows are cut off
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        self.device = model.device
        self.timings = Timings()

    cache_len: int  # tokens the cache holds

    def start(self, prompt_ids: list[int]) -> list[int]:
        """Forget the previous prompt; returns the token sequence the decoding loop extends."""
        raise NotImplementedError

    def crop(self, length: int) -> None:
        """Keep the cache of the first `length` tokens only (a no-op when it holds no more)."""
        raise NotImplementedError

    def _feed(self, tokens: list[int], num_logits: int, hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the model on the tokens the cache has not seen: (logits, final states or None) of the last num_logits."""
        raise NotImplementedError

    @torch.inference_mode()
    def forward(self, tokens: list[int], num_logits: int) -> torch.Tensor:
        """Logits [num_logits, vocab] predicting the token after each of the last num_logits positions."""
        return self.forward_with_hidden(tokens, num_logits, hidden=False)[0]

    @torch.inference_mode()
    def forward_with_hidden(
        self, tokens: list[int], num_logits: int, hidden: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits [num_logits, vocab], the last layer's states after the final norm [num_logits, hidden_size]
        or None when `hidden` is False) at the last num_logits positions."""
        num_new = len(tokens) - self.cache_len
        if not num_new >= num_logits >= 1:
            raise RuntimeError(
                f"{type(self).__name__}: {num_new} unseen tokens for {num_logits} logits "
                f"(cache {self.cache_len}, tokens {len(tokens)}): crop the cache first"
            )
        with prefilling(len(tokens) - num_logits if self.cache_len == 0 else 0):
            logits, states = self._timed(num_new, lambda: self._feed(tokens, num_logits, hidden))
        return logits[:, : self.vocab_size], states

    def forward_tree(
        self, tokens: list[int], node_tokens: list[int], parents: list[int], feed: list[int]
    ) -> torch.Tensor:
        """Logits [rows, vocab]: after the last committed token when this pass feeds it, then after each node in `feed`.

        `node_tokens` and `parents` describe the tree proposed so far (parent -1: the last committed token; parents
        listed before their children). The pass feeds the committed tokens the cache has not seen, then the nodes in
        `feed`, whose ancestors are fed in this pass (earlier in `feed`) or were in an earlier pass of this round.
        """
        raise BigLittleError(f"{type(self).__name__} scores chains only; trees need a decoder-only model runner")

    def score(self, tokens: list[int], node_tokens: list[int], parents: list[int] | None) -> torch.Tensor:
        """The target's logits [1 + nodes, vocab] over a proposal: after the last committed token, then after each node.
        A chain (parents None) is fed as plain tokens; a tree with tree attention."""
        if parents is None:
            return self.forward(tokens + node_tokens, len(node_tokens) + 1)
        return self.forward_tree(tokens, node_tokens, parents, list(range(len(node_tokens))))

    def retain(self, start: int, path: tuple[int, ...] | list[int]) -> None:
        """After a round that began with `start` committed tokens: keep the cache of those and of the proposal's
        accepted `path` (node indices, root first), as far as this runner has fed them."""
        self.crop(start + len(path))  # a chain's nodes sit at start, start + 1, ...

    def _timed(self, num_new: int, run):
        started = time.perf_counter()
        result = run()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # so that time is charged to the model that spent it
        self.timings.record(num_new, time.perf_counter() - started)
        return result


class ModelRunner(Runner):
    """One model with a KV cache of its own (runtime/early_exit/shared_cache.py has runners that share one)."""

    def __init__(self, model: PreTrainedModel, vocab_size: int):
        super().__init__(model, vocab_size)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache = None
        self._encoder_outputs = None
        self.cache_len = 0
        self._slots: dict[int, int] = {}  # proposal node -> its cache entry, for the tree nodes fed this round

    @torch.inference_mode()
    def start(self, prompt_ids: list[int]) -> list[int]:
        """Forget the previous prompt; returns the token sequence the decoding loop extends."""
        self.cache_len = 0
        self._slots = {}
        self.timings = Timings()
        if not self.is_encoder_decoder:
            self._cache = DynamicCache()
            return list(prompt_ids)
        self._cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        started = time.perf_counter()
        prompt = torch.tensor([prompt_ids], device=self.device)
        self._encoder_outputs = self.model.get_encoder()(input_ids=prompt)
        self.timings.seconds += time.perf_counter() - started  # the encoder's pass: time, not a decoder call
        return [self.model.config.decoder_start_token_id]

    def _feed(self, tokens: list[int], num_logits: int, hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_ids = torch.tensor([tokens[self.cache_len :]], device=self.device)
        kwargs = {"past_key_values": self._cache, "use_cache": True, "output_hidden_states": hidden}
        if self._keeps_logits:
            kwargs["logits_to_keep"] = num_logits  # skips the output layer for the rest
        if self.is_encoder_decoder:
            out = self.model(encoder_outputs=self._encoder_outputs, decoder_input_ids=input_ids, **kwargs)
        else:
            out = self.model(input_ids=input_ids, **kwargs)
        self.cache_len = len(tokens)
        if not hidden:
            return out.logits[0, -num_logits:], None
        states = out.decoder_hidden_states if self.is_encoder_decoder else out.hidden_states
        return out.logits[0, -num_logits:], states[-1][0, -num_logits:]

    def crop(self, length: int) -> None:
        """Keep the cache of the first `length` tokens only (a no-op when it holds no more)."""
        if self._slots:
            if length > self.cache_len - len(self._slots):
                raise RuntimeError("the cache holds tree nodes: retain the accepted path before cropping into them")
            self._slots = {}
        if length < self.cache_len:
            self._cache.crop(length)
            self.cache_len = length

    @torch.inference_mode()
    def forward_tree(
        self, tokens: list[int], node_tokens: list[int], parents: list[int], feed: list[int]
    ) -> torch.Tensor:
        if self.is_encoder_decoder:
            raise BigLittleError("trees of proposals need a decoder-only target and draft")
        committed = self.cache_len - len(self._slots)
        catch_up = tokens[committed:]
        if catch_up and self._slots:
            raise RuntimeError("the cache holds tree nodes of an earlier round: retain the accepted path first")
        depths = _depths(parents)
        first_slot = self.cache_len + len(catch_up)
        for index, node in enumerate(feed):
            self._slots[node] = first_slot + index
        mask = _tree_mask(
            self,
            len(tokens),
            committed,
            len(catch_up),
            [self._visible(node, parents) for node in feed],
            self.model.dtype,
        )
        positions = list(range(committed, len(tokens))) + [len(tokens) - 1 + depths[node] for node in feed]
        input_ids = catch_up + [node_tokens[node] for node in feed]
        num_logits = (1 if catch_up else 0) + len(feed)

        def run():
            out = self.model(
                input_ids=torch.tensor([input_ids], device=self.device),
                attention_mask=mask,
                position_ids=torch.tensor([positions], device=self.device),
                past_key_values=self._cache,
                use_cache=True,
                **({"logits_to_keep": num_logits} if self._keeps_logits else {}),
            )
            return out.logits[0, -num_logits:]

        with prefilling(len(tokens) - 1 if self.cache_len == 0 else 0):
            logits = self._timed(len(input_ids), run)
        self.cache_len += len(input_ids)
        return logits[:, : self.vocab_size]

    def retain(self, start: int, path: tuple[int, ...] | list[int]) -> None:
        if not self._slots:
            return super().retain(start, path)
        kept = list(range(start))
        for node in path:  # the path's nodes this runner fed, up to the first it did not
            if node not in self._slots:
                break
            kept.append(self._slots[node])
        index = torch.tensor(kept, device=self.device)
        for layer in self._cache.layers:
            layer.keys, layer.values = layer.keys.index_select(-2, index), layer.values.index_select(-2, index)
        self.cache_len, self._slots = len(kept), {}

    def _visible(self, node: int, parents: list[int]) -> list[int]:
        """The cache entries of `node`'s ancestors and of itself, root side first."""
        entries = []
        while node != -1:
            entries.append(self._slots[node])
            node = parents[node]
        return entries[::-1]


def _depths(parents: list[int]) -> list[int]:
    depths: list[int] = []
    for parent in parents:
        depths.append(1 if parent == -1 else depths[parent] + 1)
    return depths


def _tree_mask(
    runner: ModelRunner,
    committed_total: int,
    committed_cached: int,
    catch_up: int,
    visible: list[list[int]],
    dtype: torch.dtype,
) -> torch.Tensor:
    """Additive attention mask [1, 1, rows, keys]: catch-up rows see the text up to themselves, node rows the
    committed text plus their `visible` entries (ancestors and themselves); 0 where seen, else the dtype's minimum."""
    rows = catch_up + len(visible)
    keys = runner.cache_len + rows
    mask = torch.full((rows, keys), torch.finfo(dtype).min, dtype=dtype)
    for row in range(catch_up):
        mask[row, : committed_cached + row + 1] = 0
    for row, entries in enumerate(visible, start=catch_up):
        mask[row, :committed_total] = 0
        mask[row, entries] = 0
    return mask[None, None].to(runner.device)
