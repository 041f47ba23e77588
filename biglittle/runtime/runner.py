"""One model and its KV cache behind a tiny interface: feed tokens -> logits, crop to a length.

Decoder-only and encoder-decoder models look the same from outside: the runner owns the cache
and (encoder-decoder) the encoder output computed once per prompt, and `forward(tokens)`
feeds only the tokens its cache has not seen. The decoding loop keeps every runner's cache at
most `len(tokens) - 1` long, so a bonus token, BiLD's catch-up over the little model's tokens
and recovery after a rollback are all the same call: crop, then forward.
"""

from __future__ import annotations

import inspect
import time

import torch
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel


class Runner:
    """What the decoding loop sees of a model: start, forward (timed, counted), crop.

    Subclasses own the cache: `cache_len`, `start`, `crop` and `_feed` (the model call itself).
    """

    def __init__(self, model: PreTrainedModel, vocab_size: int):
        self.model = model
        self.vocab_size = vocab_size  # the pair's shared vocabulary; padded rows are cut off
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        self.device = model.device
        self._reset_stats()

    def _reset_stats(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self.call_log: list[tuple[int, float]] = []  # (tokens fed, seconds) of each forward

    @torch.inference_mode()
    def forward(self, tokens: list[int], num_logits: int) -> torch.Tensor:
        """Logits [num_logits, vocab] predicting the token after each of the last num_logits positions."""
        num_new = len(tokens) - self.cache_len
        assert num_new >= num_logits >= 1, (num_new, num_logits)
        started = time.perf_counter()
        logits = self._feed(tokens, num_logits)[:, : self.vocab_size]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # so that time is charged to the model that spent it
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self.calls += 1
        self.call_log.append((num_new, elapsed))
        return logits


class ModelRunner(Runner):
    """One model with a KV cache of its own (biglittle.exit_reuse has runners that share one)."""

    def __init__(self, model: PreTrainedModel, vocab_size: int):
        super().__init__(model, vocab_size)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache = None
        self._encoder_outputs = None
        self.cache_len = 0

    @torch.inference_mode()
    def start(self, prompt_ids: list[int]) -> list[int]:
        """Forget the previous prompt; returns the token sequence the decoding loop extends."""
        self.cache_len = 0
        self._reset_stats()
        if not self.is_encoder_decoder:
            self._cache = DynamicCache()
            return list(prompt_ids)
        self._cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        started = time.perf_counter()
        prompt = torch.tensor([prompt_ids], device=self.device)
        self._encoder_outputs = self.model.get_encoder()(input_ids=prompt)
        self.seconds += time.perf_counter() - started
        return [self.model.config.decoder_start_token_id]

    def _feed(self, tokens: list[int], num_logits: int) -> torch.Tensor:
        input_ids = torch.tensor([tokens[self.cache_len :]], device=self.device)
        kwargs = {"past_key_values": self._cache, "use_cache": True}
        if self._keeps_logits:
            kwargs["logits_to_keep"] = num_logits  # skips the output layer for the rest
        if self.is_encoder_decoder:
            out = self.model(encoder_outputs=self._encoder_outputs, decoder_input_ids=input_ids, **kwargs)
        else:
            out = self.model(input_ids=input_ids, **kwargs)
        self.cache_len = len(tokens)
        return out.logits[0, -num_logits:]

    def crop(self, length: int) -> None:
        """Keep the cache of the first `length` tokens only (a no-op when it holds no more)."""
        if length < self.cache_len:
            self._cache.crop(length)
            self.cache_len = length
