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


class ContextRunner(Runner):
    """A toy model with a cache: the logits after a prefix are `next_logits(prefix)` (a tuple of ids).
    It is a Runner for chains (score and retain are the real ones); `forward` is its own.

    Like a real KV cache, it computes from the tokens it holds (`held`), not from the ones it is handed
    again, so a cache the loop failed to crop gives the logits of the wrong text. `held` is there for
    tests to compare with the text.
    """

    is_encoder_decoder = False
    device = torch.device("cpu")

    def __init__(self, next_logits, vocab: int):
        self.next_logits, self.vocab_size = next_logits, vocab
        self.held: list[int] = []
        self.timings = Timings()

    @property
    def cache_len(self) -> int:
        return len(self.held)

    def start(self, prompt_ids):
        self.held, self.timings = [], Timings()
        return list(prompt_ids)

    def forward(self, tokens, num_logits):
        num_new = len(tokens) - len(self.held)
        if not num_new >= num_logits >= 1:
            raise RuntimeError(f"{num_new} unseen tokens for {num_logits} logits: crop the cache first")
        self.held = self.held + list(tokens[len(self.held) :])
        self.timings.record(num_new, 0.0)
        ends = range(len(self.held) - num_logits, len(self.held))
        return torch.stack([self.next_logits(tuple(self.held[: end + 1])) for end in ends])

    def crop(self, length):
        del self.held[length:]


def bigram(table: list[list[float]]):
    """next_logits of a model whose next token depends on the last one only: table[last] are its probabilities."""
    logits = torch.tensor(table, dtype=torch.float64).log().float()

    def next_logits(prefix):
        return logits[prefix[-1]]

    return next_logits


def memoized(model, vocab: int):
    """next_logits of a Hugging Face causal LM, one full forward per distinct prefix (no cache to go wrong)."""
    memo: dict = {}

    @torch.no_grad()
    def next_logits(prefix):
        if prefix not in memo:
            ids = torch.tensor([prefix], device=model.device)  # the model may sit on a GPU (--device); scripts run here
            memo[prefix] = model(ids).logits[0, -1, :vocab].float().cpu()
        return memo[prefix]

    return next_logits
