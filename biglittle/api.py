"""The public API: load a pair of models, generate text with one of the methods."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from jinja2 import TemplateError
from tqdm.auto import tqdm

from .config import (
    METHODS,
    SETTING_NAMES,
    TRIVIAL_DRAFTERS,
    VOCAB_RANKINGS,
    GenerationConfig,
    default_precision,
    generation_defaults,
    parse_draft_spec,
    task_of,
    with_builtin_speculation,
)
from .cost.bild_thresholds import thresholds_path, tuned_thresholds
from .cost.profile import PROFILE_MAX_K, CostProfile, measure_overhead, measure_profile, profile_path, profile_steps
from .decoding.assemble import build_drafter, build_method
from .decoding.cross_tokenizer import TextBridge, bridge_between
from .decoding.loop import Commit, decode
from .decoding.stats import GenerationStats
from .decoding.stopping import cut_at_stop, stop_check
from .decoding.trivial_drafts import NgramTable
from .draft_text import ngram_table
from .errors import BigLittleError
from .files import CACHE_REMEDY, cache_dir, check_writable, write_text_atomically
from .runtime import fetch
from .runtime.early_exit import early_exit_model
from .runtime.early_exit.head import final_norm, load_exit_head
from .runtime.early_exit.shared_cache import ExitTargetRunner, make_runners
from .runtime.models import LoadedModel, load_model, logit_rows, shared_vocab_size
from .runtime.quantize import draft_precision, precision_of
from .runtime.restricted_vocab import restrict_vocabulary
from .runtime.runner import ModelRunner, Runner
from .runtime.vocab_ranking import corpus_ranking
from .streaming import ChunkMaker, StreamChunk, stream_generation

PROFILE_CONTEXT = 192  # tokens of text before the measured passes: a typical prompt and what follows it

__all__ = [
    "METHODS",
    "GenerationConfig",
    "GenerationResult",
    "ModelPair",
    "PairSpec",
    "StreamChunk",
    "generate",
    "load_draft",
    "load_pair",
    "resolve_pair",
]


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]  # the new tokens only
    stats: GenerationStats = field(repr=False)

    def to_dict(self) -> dict:
        return {"text": self.text, "token_ids": self.token_ids, "stats": self.stats.to_dict()}


class ModelPair:
    """A target (big) model and an optional draft (little) model sharing one vocabulary, or with
    `cross_tokenizer` a draft with its own tokenizer whose tokens reach the target through text
    (speculative decoding only; decoding/cross_tokenizer.py).

    `cache` is where the pair's measurements (cost profile, tuned BiLD thresholds) are kept: the cache root
    (default $BIGLITTLE_CACHE or ~/.cache/biglittle). `builtin` marks the built-in default pair, whose
    generations default to its chat template and the cost-aware gamma (`defaults`).
    """

    def __init__(
        self,
        target: LoadedModel,
        draft: LoadedModel | None = None,
        *,
        cache: str | os.PathLike | None = None,
        builtin: bool = False,
        cross_tokenizer: bool = False,
    ):
        self.target, self.draft = target, draft
        self.cache, self.builtin = cache, builtin
        self.bridge: TextBridge | None = None
        if draft is not None and cross_tokenizer and target.tokenizer.get_vocab() != draft.tokenizer.get_vocab():
            self.bridge = bridge_between(target, draft)
            self.target_runner: Runner = ModelRunner(target.model, logit_rows(target))
            self.draft_runner: Runner | None = ModelRunner(draft.model, logit_rows(draft))
        else:
            vocab_size = shared_vocab_size(target, draft) if draft is not None else logit_rows(target)
            # An early-exit draft shares the target's KV cache and hands it its layer-L states (shared_cache.py).
            self.target_runner, self.draft_runner = make_runners(
                target.model, draft.model if draft else None, vocab_size
            )
        self.shares_cache = isinstance(self.target_runner, ExitTargetRunner)
        # The built-in lookup default is for the built-in pair with its own little model: a draft named by the user
        # (an early exit, another tokenizer) is there to be used.
        self.builtin_draft = builtin and not self.shares_cache and self.bridge is None
        lengths = [m.context_length for m in (target, draft) if m is not None and m.context_length]
        self.max_length = min(lengths) if lengths else 1 << 30
        self._profile: CostProfile | None = None
        self._ngram_tables: dict[str, NgramTable] = {}

    @property
    def tokenizer(self):
        return self.target.tokenizer

    @property
    def defaults(self) -> GenerationConfig:
        """The settings a generation starts from: the built-in pair's own, or GenerationConfig's."""
        return generation_defaults(self.builtin)

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if not prompt.strip():
            raise BigLittleError("the prompt is empty")
        if not chat:
            return self.tokenizer(prompt).input_ids
        if not getattr(self.tokenizer, "chat_template", None):
            raise BigLittleError(f"{self.target.name} has no chat template; drop --chat")
        return self.encode_messages([{"role": "user", "content": prompt}])

    def encode_messages(self, messages: list[dict[str, str]]) -> list[int]:
        """A conversation ({"role", "content"} dicts) in the tokenizer's chat template, ready for the reply."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise BigLittleError(f"{self.target.name} has no chat template to put messages in")
        try:
            return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
        except TemplateError as error:  # the template refuses the conversation (say, roles out of order)
            raise BigLittleError(f"the chat template refused the messages: {error}") from error

    def prepare(
        self, prompt: str | list[int], config: GenerationConfig | None = None, **settings
    ) -> tuple[list[int], GenerationConfig]:
        """The prompt's token ids and the settings a generation of it runs with, checked (BigLittleError if bad).

        `settings` override fields of `config` (default: `defaults`, and for the built-in pair, prompt lookup
        drafting sized by its matches unless `settings` name method, gamma, tree or drafter); tuned BiLD thresholds
        are looked up.
        """
        unknown = set(settings) - set(SETTING_NAMES)
        if unknown:
            raise BigLittleError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        if config is None:
            config = with_builtin_speculation(replace(self.defaults, **settings), settings, self.builtin_draft)
        else:
            config = replace(config, **settings)
        config.validate()
        if config.needs_draft_model and self.draft_runner is None:
            raise BigLittleError(
                f"method {config.method!r} needs a draft (little) model; pass --draft, "
                "or use --drafter ngram or --method ar"
            )
        if config.needs_draft_model and self.bridge is not None:
            _check_cross_tokenizer_config(config)
        prompt_ids = self.encode(prompt, config.chat) if isinstance(prompt, str) else list(prompt)
        if not prompt_ids:
            raise BigLittleError("the prompt is empty")
        vocab_size = self.target_runner.vocab_size
        if any(not 0 <= token < vocab_size for token in prompt_ids):
            raise BigLittleError(f"the prompt has token ids outside the vocabulary (0 to {vocab_size - 1})")
        if config.bild_thresholds is not None:
            fallback, rollback = self.tuned_bild_thresholds(task_of(config.bild_thresholds))
            config = replace(config, fallback_threshold=fallback, rollback_threshold=rollback, bild_thresholds=None)
        if len(prompt_ids) >= self.max_length:
            raise BigLittleError(
                f"the prompt has {len(prompt_ids)} tokens but the models' context is {self.max_length}"
            )
        return prompt_ids, config

    def generate(
        self,
        prompt: str | list[int],
        config: GenerationConfig | None = None,
        *,
        on_commit: Callable[[Commit], None] | None = None,
        **settings,
    ) -> GenerationResult:
        """Generate from a prompt (text, or token ids); `settings` override fields of `config` (default: `defaults`).

        `on_commit(commit)`, if given, is called after every round with the tokens it made final (a Commit); it may
        raise (streaming.GenerationCancelled, say) to end the generation there.
        """
        prompt_ids, config = self.prepare(prompt, config, **settings)
        generator = torch.Generator(self.target_runner.device)
        generator.manual_seed(config.seed if config.seed is not None else torch.seed())
        eos = self.target.eos_token_ids
        table = (
            self.ngram_table(config.draft_text) if config.drafter in TRIVIAL_DRAFTERS and config.draft_text else None
        )
        token_ids, stats = decode(
            prompt_ids,
            self.target_runner,
            build_drafter(
                config,
                self.target_runner,
                self.draft_runner,
                eos,
                self.cost_profile,
                ngram_table=table,
                bridge=self.bridge,
            ),
            build_method(config, self.cost_profile),
            max_new_tokens=config.max_new_tokens,
            max_length=self.max_length,
            eos_token_ids=eos,
            generator=generator,
            stop_check=stop_check(self.decode, config.stop) if config.stop else None,
            on_commit=on_commit,
        )
        return GenerationResult(cut_at_stop(self.decode(token_ids), config.stop), token_ids, stats)

    def stream(
        self, prompt: str | list[int], config: GenerationConfig | None = None, **settings
    ) -> Iterator[StreamChunk]:
        """Generate as `generate` does, yielding each round's text as it becomes final (StreamChunk: the text, its
        token ids and where each came from); the last chunk carries the GenerationResult. Bad settings raise here;
        leaving the loop early stops the generation after its current round."""
        prompt_ids, config = self.prepare(prompt, config, **settings)
        chunks = ChunkMaker(self.decode, config.stop)
        return stream_generation(lambda on_commit: self.generate(prompt_ids, config, on_commit=on_commit), chunks)

    def decode(self, token_ids: list[int]) -> str:
        """The text of `token_ids`, special tokens left out."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def ngram_table(self, source: str, progress: bool = True) -> NgramTable:
        """The token counts of `source` (a task's train split or a text file) that unigram and bigram drafts use:
        counted once per tokenizer and text, kept under the cache."""
        if source not in self._ngram_tables:
            vocab_size, end = self.target_runner.vocab_size, self.target.end_token_id
            self._ngram_tables[source] = ngram_table(self.tokenizer, vocab_size, end, source, self.cache, progress)
        return self._ngram_tables[source]

    def cost_profile(self, refresh: bool = False, progress=None) -> CostProfile:
        """The pair's measured costs on this machine (T(k)/T(1) of both models, c, loop overhead),
        measured once and kept on disk. `progress()` is called after each measurement."""
        if self._profile is not None and not refresh:
            return self._profile
        shared = ["shared-cache"] if self.shares_cache else []  # verification costs less: another profile
        path = profile_path(cache_dir(self.cache), "profile-v3", *self.identity(), *shared)
        if path.is_file() and not refresh:
            self._profile = CostProfile.from_json(path.read_text())
            return self._profile
        check_writable(path.parent, CACHE_REMEDY)  # before the measuring (minutes for real models), not after it
        profile = measure_profile(
            self.target_runner,
            self.draft_runner,
            progress=progress,
            shared_cache=self.shares_cache,
            context_tokens=min(PROFILE_CONTEXT, self.max_length // 2),  # a typical prompt, where the models allow
        )
        profile.overhead = measure_overhead(self.generate, self.target_runner.vocab_size, self.draft is not None)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, profile.to_json())
        self._profile = profile
        return profile

    def cost_profile_with_bar(
        self, desc: str, *, refresh: bool = False, leave: bool = True, disable: bool | None = None
    ) -> CostProfile:
        """`cost_profile()` with a progress bar over its measuring passes (tqdm's `disable=None`: a terminal only)."""
        steps = profile_steps(PROFILE_MAX_K, self.draft is not None, self.shares_cache)
        with tqdm(total=steps, desc=desc, unit="pass", leave=leave, disable=disable) as bar:
            return self.cost_profile(refresh=refresh, progress=bar.update)

    def identity(self) -> list[str]:
        """What a measurement of this pair depends on besides the machine: the models, their precision, the device."""
        identity = [self.target.name, precision_of(self.target.model), str(self.target_runner.device)]
        if self.draft is not None:
            scored_rows = logit_rows(self.draft)  # less with a restricted vocabulary
            identity += [self.draft.name, draft_precision(self.draft.model), str(scored_rows)]
        return identity

    def thresholds_path(self) -> Path:
        """Where `biglittle tune-bild` keeps this pair's chosen BiLD thresholds on this machine."""
        return thresholds_path(cache_dir(self.cache), self.identity())

    def tuned_bild_thresholds(self, task: str | None = None) -> tuple[float, float]:
        """(fallback, rollback) that `biglittle tune-bild` stored for this pair on this machine (and `task`)."""
        return tuned_thresholds(self.thresholds_path(), task)


def _check_cross_tokenizer_config(config: GenerationConfig) -> None:
    """What a draft with another tokenizer cannot do, in one line each."""
    if config.method != "speculative":
        raise BigLittleError(
            f"--method {config.method} needs a little model sharing the target's tokenizer; "
            "a draft with another tokenizer drafts for --method speculative only"
        )
    if config.tree is not None:
        raise BigLittleError("--tree needs a little model sharing the target's tokenizer; drop --tree")
    if config.gamma == "auto":
        raise BigLittleError(
            "--gamma auto counts one little-model step per proposed token, which a draft with another "
            "tokenizer does not take; give --gamma N"
        )


@dataclass(frozen=True)
class PairSpec:
    """Which models a command runs: the user's, or the built-in pair when no target is named."""

    target: str
    draft: str | None
    builtin: bool


def resolve_pair(
    target: str | None = None, draft: str | None = None, cache: str | os.PathLike | None = None
) -> PairSpec:
    """The user's models, or the installed built-in pair when `target` is None (with its little model unless `draft`
    names one made from the target: early-exit:L or a trained exit)."""
    if target is not None:
        return PairSpec(target, draft, False)
    if draft is not None and not parse_draft_spec(draft).is_made_from_target:
        raise BigLittleError("--draft needs --target (or leave both out for the default pair)")
    target_dir, draft_dir = fetch.default_pair_dirs(cache)
    return PairSpec(str(target_dir), draft or str(draft_dir), True)


def load_pair(
    target: str | LoadedModel | None = None,
    draft: str | LoadedModel | None = None,
    *,
    dtype: str | None = None,
    draft_dtype: str | None = None,
    device: str = "cpu",
    draft_vocab: int | None = None,
    draft_vocab_ranking: str | list[int] = "corpus",
    cache: str | os.PathLike | None = None,
    builtin: bool = False,
    cross_tokenizer: bool = False,
) -> ModelPair:
    """Load a target and (optionally) a draft model from hub ids, directories or GGUF files.

    With no target, the built-in default pair (`biglittle models fetch`). A draft of "early-exit:L" is the
    target's own first L layers with its norm and output layer; a directory written by
    `align train --draft early-exit:L` is that exit with its trained head. `draft_vocab=K` lets the draft
    score only the K most frequent tokens (a cheaper output layer), by `draft_vocab_ranking`: "corpus", their
    frequency in a broad corpus of code and text (runtime/vocab_ranking.py, built once and kept), "ids", the lowest
    ids (merge order), or a list of token ids, most frequent first. `cross_tokenizer=True` accepts a draft with
    another tokenizer (speculative decoding through text). `dtype` defaults to the fastest measured
    precision for the built-in pair and fp32 for named models; `draft_dtype`, the little model's, to `dtype` (a
    draft's precision changes how often it is right, never the output).
    """
    if target is None:
        spec = resolve_pair(None, draft if isinstance(draft, str) else None, cache)
        target, draft, builtin = spec.target, draft if isinstance(draft, LoadedModel) else spec.draft, True
    dtype = dtype or default_precision(builtin)
    if isinstance(target, str):
        target = load_model(target, dtype, device)
    if isinstance(draft, str):
        if draft_dtype not in (None, dtype) and parse_draft_spec(draft).is_made_from_target:
            raise BigLittleError(
                f"--draft {draft} is the big model's own layers: it computes in its precision, "
                "so leave --draft-precision out"
            )
        draft = load_draft(draft, target, draft_dtype or dtype, device)
    # Checks the vocabularies before the draft's is cut.
    pair = ModelPair(target, draft, cache=cache, builtin=builtin, cross_tokenizer=cross_tokenizer)
    if draft_vocab is not None and draft is not None:
        restrict_vocabulary(draft.model, draft.tokenizer, draft_vocab, _ranking(draft_vocab_ranking, draft, cache))
    return pair


def _ranking(source: str | list[int], draft: LoadedModel, cache) -> list[int] | None:
    if not isinstance(source, str):
        return source
    if source not in VOCAB_RANKINGS:
        raise BigLittleError(f"unknown draft-vocab ranking {source!r}; choose one of {', '.join(VOCAB_RANKINGS)}")
    return corpus_ranking(draft.tokenizer, cache) if source == "corpus" else None


def load_draft(spec: str, target: LoadedModel, dtype: str = "fp32", device: str = "cpu") -> LoadedModel:
    """The little model `spec` names: a model (hub id, directory, GGUF), early-exit:L, or a trained exit's directory.
    At int4 every matrix of its own is 4-bit (a draft's precision changes its acceptance, never the output)."""
    draft = parse_draft_spec(spec)
    if draft.kind == "early-exit":
        return LoadedModel(spec, early_exit_model(target.model, draft.layers), target.tokenizer)
    if draft.kind == "exit-head":
        layers, head = load_exit_head(spec, final_norm(target.model.base_model), target.model.config.hidden_size)
        return LoadedModel(spec, early_exit_model(target.model, layers, head), target.tokenizer)
    return load_model(spec, dtype, device, as_draft=True)


def generate(
    pair: ModelPair, prompt: str | list[int], config: GenerationConfig | None = None, **settings
) -> GenerationResult:
    """Generate text from `prompt` with `pair`; keyword settings are GenerationConfig fields."""
    return pair.generate(prompt, config, **settings)
