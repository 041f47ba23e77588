"""Drafting with a little model of another tokenizer: its tokens reach the target through text.

The little model reads the text so far in its own tokens and writes a few of its own; their text is
turned into the target's tokens by re-tokenizing a window: the last few committed target tokens' text
followed by the new text, tokenized by the target's tokenizer, must begin with those committed tokens,
and what follows them is the proposal. Re-tokenizing single tokens or the new text alone would get
the boundary wrong wherever the target's tokens span it (a word continued, a space that joins the next
word). The little model drafts until the text holds one target token more than the budget, so that the
last proposed token is complete, then the target verifies the proposal as usual.

Exactness. The target verifies the proposed tokens as point masses (`Proposal.probs` None), the rule
that makes n-gram lookups exact: for any proposed token x, accepting it with probability p(x) and
otherwise drawing from norm(max(0, p - one_hot(x))) yields p exactly. It needs nothing about how x was
chosen, only that the choice is made before the verifier draws its numbers. The little model may
therefore sample its own tokens at any temperature: given its draws, the proposal is fixed, and the
output is distributed as the target's, hence also over its draws. It is the string-level exact match
of Timor et al., "Accelerating LLM Inference with Lossless Speculative Decoding Algorithms for
Heterogeneous Vocabularies" (ICML 2025), and transformers' universal assisted generation
(`assistant_tokenizer`) verifies the same way. What it costs: a sampled token is accepted with
probability sum of q(x) p(x) instead of sum of min(p, q) (`cost.theory.point_mass_acceptance_rate`);
at temperature 0 nothing is lost.
"""

from __future__ import annotations

import unicodedata

import torch

from ..errors import BigLittleError
from ..runtime.models import LoadedModel, logit_rows
from ..runtime.runner import Runner, Timings
from .proposal import Proposal
from .sampling import SamplingConfig, sample, warp_probs

WINDOW = 4  # committed target tokens re-tokenized with the new text
ANCHOR = 8  # the little model's tokens before its new ones, decoded with them (word-initial spaces survive)
STEPS_PER_TOKEN = 8  # at most this many little-model steps per proposed target token (a character-level draft)
REPLACEMENT = "\ufffd"  # what decoding shows for bytes of a character not yet complete


class TextBridge:
    """Token ids of one tokenizer as text, and text as the other's token ids."""

    def __init__(self, target_tokenizer, draft_tokenizer, target_eos: set[int], draft_eos: set[int]):
        self.target_tokenizer, self.draft_tokenizer = target_tokenizer, draft_tokenizer
        self.target_eos, self.draft_eos = target_eos, draft_eos
        # A draft's end of text becomes the target's token of the same name, else the target's first end token.
        names = {draft_tokenizer.convert_ids_to_tokens(token) for token in draft_eos}
        same = [token for token in sorted(target_eos) if target_tokenizer.convert_ids_to_tokens(token) in names]
        ends = same or sorted(target_eos)
        self.target_end: int | None = ends[0] if ends else None

    def target_text(self, target_ids: list[int]) -> str:
        return self.target_tokenizer.decode(target_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def draft_text(self, draft_ids: list[int]) -> str:
        return self.draft_tokenizer.decode(draft_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def draft_ids(self, target_ids: list[int]) -> list[int]:
        """The little model's tokens of the text of `target_ids` (special tokens by name, where it has them)."""
        text = self.target_text(target_ids).rstrip(REPLACEMENT)  # a character not yet complete: not yet text
        return self.draft_tokenizer(text, add_special_tokens=False).input_ids if text else []

    def new_text(self, draft_context: list[int], drafted: list[int]) -> str:
        """The text `drafted` adds after `draft_context`, decoded after an anchor of context tokens so that a
        leading space or a continued character comes out as it would in the whole text."""
        anchor = draft_context[-ANCHOR:]
        before, after = self.draft_text(anchor), self.draft_text(anchor + drafted)
        text = after[len(before) :] if after.startswith(before) else self.draft_text(drafted)
        return text.rstrip(REPLACEMENT)

    def target_continuation(self, committed: list[int], text: str) -> list[int]:
        """The target's tokens for `text` written after `committed` (its tokens so far): the first candidate that
        gives back exactly `text` after them, else [] (a character the target's tokenizer does not know).

        Candidates: the window (the last committed tokens' text, then `text`) re-tokenized, after the committed
        tokens or (where the target wrote its text in other tokens than its tokenizer would) after the prefix whose
        text is theirs; then, where the target's tokenizer joins the committed text and `text` into one token
        ("." and a line break), whose first part the target has already written, `text`'s own tokens.
        """
        if not text:
            return []
        tail = committed[-WINDOW:]
        tail_text = self.target_text(tail)
        for candidate in self._candidates(tail, tail_text, text):
            if candidate and self.target_text(tail + candidate) == tail_text + text:
                return candidate
        return []

    def _candidates(self, tail: list[int], tail_text: str, text: str):
        window = self.target_tokenizer(tail_text + text, add_special_tokens=False).input_ids
        if window[: len(tail)] == tail:
            yield window[len(tail) :]
        else:
            for split in range(min(len(window), len(tail) + 1) + 1):
                if self.target_text(window[:split]) == tail_text:
                    yield window[split:]
                    break
        yield self.target_tokenizer(text, add_special_tokens=False).input_ids

    def unrepresentable(self, target_vocab_size: int) -> list[tuple[str, str]]:
        """(text, what comes back) for target tokens whose text the draft's tokenizer does not give back; tokens of a
        character not complete alone, and control characters (other than tab and line breaks), are left out."""
        special = set(self.target_tokenizer.all_special_ids)
        ids = [token for token in range(min(len(self.target_tokenizer), target_vocab_size)) if token not in special]
        texts = [text for text in _decode_batch(self.target_tokenizer, [[token] for token in ids]) if _is_text(text)]
        back = _decode_batch(self.draft_tokenizer, _encode_batch(self.draft_tokenizer, texts))
        return [(text, returned) for text, returned in zip(texts, back) if returned != text]


def bridge_between(target: LoadedModel, draft: LoadedModel) -> TextBridge:
    """The bridge of a pair whose tokenizers differ; one-line errors for pairs it cannot serve."""
    if target.model.config.is_encoder_decoder or draft.model.config.is_encoder_decoder:
        raise BigLittleError("a draft with another tokenizer works with decoder-only models only")
    bridge = TextBridge(target.tokenizer, draft.tokenizer, target.eos_token_ids, draft.eos_token_ids)
    check_representable(bridge, logit_rows(target))
    return bridge


def check_representable(bridge: TextBridge, target_vocab_size: int) -> None:
    """One-line error when the draft's tokenizer cannot write the target's text (unknown characters, normalising)."""
    lost = bridge.unrepresentable(target_vocab_size)
    if lost:
        text, returned = lost[0]
        raise BigLittleError(
            f"the draft's tokenizer cannot represent the target's text: {text!r} comes back as {returned!r} "
            f"({len(lost)} of the target's tokens are not written alike); choose a draft whose tokenizer covers "
            "the target's characters (a byte-level one does)"
        )


class CrossTokenizerDrafter:
    """A little model with its own tokenizer proposing target tokens (see the module's docstring).

    It keeps its own cache in its own tokens; `retain` and `crop`, in target positions, mean nothing to it.
    Before each proposal it re-reads the committed text and keeps the part of its cache that still matches.
    """

    def __init__(self, runner: Runner, bridge: TextBridge, sampling: SamplingConfig, target_vocab_size: int):
        self.runner, self.bridge, self.sampling = runner, bridge, sampling
        self.target_vocab_size = target_vocab_size
        self._prompt_length = 0
        self._draft_prompt: list[int] = []
        self._fed: list[int] = []  # the little model's tokens its cache was filled from

    def start(self, prompt_ids: list[int]) -> None:
        self._prompt_length = len(prompt_ids)
        self._draft_prompt = self.bridge.draft_ids(prompt_ids)
        if not self._draft_prompt:
            raise BigLittleError("the prompt has no text the draft's tokenizer can read")
        self._fed = self.runner.start(self._draft_prompt)

    def propose(self, tokens: list[int], max_tokens: int, generator: torch.Generator | None) -> Proposal:
        if max_tokens <= 0:
            return Proposal([])
        context = self._draft_prompt + self.bridge.draft_ids(tokens[self._prompt_length :])
        self._keep_matching_cache(context)
        drafted: list[int] = []
        converted: list[int] = []
        ended = False
        for _ in range(STEPS_PER_TOKEN * (max_tokens + 1)):
            logits = self.runner.forward(context + drafted, 1)[0]  # [draft vocab]
            token = (
                int(logits.argmax()) if self.sampling.greedy else sample(warp_probs(logits, self.sampling), generator)
            )
            if token in self.bridge.draft_eos:
                ended = True
                break
            drafted.append(token)
            converted = self.bridge.target_continuation(tokens, self.bridge.new_text(context, drafted))
            if len(converted) > max_tokens:
                break
        else:
            converted = converted[:-1]  # the little model stopped mid-way: its last token may be incomplete
        self._fed = context + drafted
        if ended and self.bridge.target_end is not None:
            converted = converted + [self.bridge.target_end]
        proposal = _in_vocabulary(converted[:max_tokens], self.target_vocab_size)
        return Proposal(proposal, ended=bool(proposal) and proposal[-1] in self.bridge.target_eos)

    def _keep_matching_cache(self, context: list[int]) -> None:
        """Crop the little model's cache to the longest prefix it shares with `context`, keeping a token to feed."""
        shared = 0
        for mine, theirs in zip(self._fed[: self.runner.cache_len], context):
            if mine != theirs:
                break
            shared += 1
        self.runner.crop(min(shared, len(context) - 1))

    def retain(self, start: int, path: tuple[int, ...]) -> None:
        pass

    def crop(self, length: int) -> None:
        pass

    @property
    def timings(self) -> Timings:
        return self.runner.timings


def _is_text(text: str) -> bool:
    return (
        bool(text) and REPLACEMENT not in text and all(c in "\t\n\r" or unicodedata.category(c) != "Cc" for c in text)
    )


# A whole vocabulary at once: through the Rust tokenizer of a fast tokenizer (several times faster), else transformers'.
def _decode_batch(tokenizer, batch: list[list[int]]) -> list[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch(batch, skip_special_tokens=False)
    return tokenizer.batch_decode(batch, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False).input_ids


def _in_vocabulary(tokens: list[int], vocab_size: int) -> list[int]:
    """The tokens before the first one the target does not score (an added token beyond its output layer)."""
    for index, token in enumerate(tokens):
        if not 0 <= token < vocab_size:
            return tokens[:index]
    return tokens
