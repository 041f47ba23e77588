"""A stand-in for ModelRunner whose next token is scripted, for exact control over drafts and verdicts."""

from __future__ import annotations

import torch

from biglittle.runtime.runner import Runner, Timings


class ScriptedRunner(Runner):
    """Predicts `script[i]` as the token at position i (with a large logit margin), whatever came before.

    It is a Runner (forward, score, retain, timings and the cache guard are the real ones) without a model.
    """

    is_encoder_decoder = False
    device = torch.device("cpu")

    def __init__(self, script: list[int], vocab: int = 10):
        self.script, self.vocab_size = script, vocab
        self.cache_len, self.timings = 0, Timings()

    def start(self, prompt_ids):
        self.cache_len, self.timings = 0, Timings()
        return list(prompt_ids)

    def _feed(self, tokens, num_logits, hidden):
        positions = range(len(tokens) - num_logits + 1, len(tokens) + 1)
        logits = torch.full((num_logits, self.vocab_size), -10.0)
        for row, position in enumerate(positions):
            logits[row, self.script[position]] = 10.0
        self.cache_len = len(tokens)
        return logits, None

    def crop(self, length):
        self.cache_len = min(self.cache_len, length)
