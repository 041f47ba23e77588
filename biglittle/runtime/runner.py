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
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel


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
        started = time.perf_counter()
        logits, states = self._feed(tokens, num_logits, hidden)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # so that time is charged to the model that spent it
        self.timings.record(num_new, time.perf_counter() - started)
        return logits[:, : self.vocab_size], states


class ModelRunner(Runner):
    """One model with a KV cache of its own (runtime/early_exit/shared_cache.py has runners that share one)."""

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
        if length < self.cache_len:
            self._cache.crop(length)
            self.cache_len = length
