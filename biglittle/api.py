"""The public API: load a pair of models, generate text with one of the methods."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

from .cost.bild_thresholds import is_valid_setting, task_of, thresholds_path, tuned_thresholds
from .decoding.loop import decode
from .decoding.methods import Bild, Speculative, autoregressive
from .decoding.drafters import HybridDrafter, ModelDrafter, NgramDrafter, NoDrafter
from .runtime.early_exit import early_exit_model, parse_layers
from .errors import BigLittleError
from .runtime.early_exit.head import final_norm, is_exit_head_dir, load_exit_head
from .files import cache_dir
from .files import write_text_atomically
from .runtime.early_exit.shared_cache import ExitTargetRunner, make_runners
from .data.metrics import METRIC_OF_TASK
from .runtime.models import LoadedModel, load_model, logit_rows, shared_vocab_size
from .runtime.quantize import precision_of
from .runtime.restricted_vocab import restrict_vocabulary
from .decoding.sampling import SamplingConfig
from .decoding.stats import GenerationStats
from .cost.gamma import GammaChooser
from .cost.profile import CostProfile, measure_profile, profile_path

METHODS = ("ar", "speculative", "bild")
DRAFTERS = ("model", "ngram", "hybrid")


@dataclass(frozen=True)
class GenerationConfig:
    """Settings of one generation; the command line's flags have the same names."""

    method: str = "speculative"
    gamma: int | str = 4  # draft tokens per target pass (speculative); "auto": cost-aware, per round
    drafter: str = "model"  # speculative: model (the little model), ngram (prompt lookup), hybrid
    max_ngram: int = 3  # ngram / hybrid: longest suffix looked up in the text so far
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None
    max_new_tokens: int = 128
    fallback_threshold: float = 0.6  # BiLD: hand over when the little model's max probability is below
    rollback_threshold: float = 5.0  # BiLD: check little tokens with -log p_big above this
    max_little_steps: int | None = 10  # BiLD: hand over after this many little tokens (None = never)
    # BiLD: "auto" (or "auto:TASK"): the two thresholds above as `biglittle tune-bild` chose them for this pair
    bild_thresholds: str | None = None
    stop: tuple[str, ...] = ()
    chat: bool = False

    def validate(self) -> None:
        checks = [
            (self.method in METHODS, f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"),
            (self.gamma == "auto" or (isinstance(self.gamma, int) and self.gamma >= 1),
             f"gamma must be at least 1 or 'auto', got {self.gamma}"),
            (self.drafter in DRAFTERS, f"unknown drafter {self.drafter!r}; choose one of {', '.join(DRAFTERS)}"),
            (self.method != "bild" or self.drafter == "model", "bild needs the little model as its drafter (--drafter model)"),
            (self.max_ngram >= 1, f"max-ngram must be at least 1, got {self.max_ngram}"),
            (self.temperature >= 0 and math.isfinite(self.temperature), f"temperature must be >= 0, got {self.temperature}"),
            (self.top_k >= 0, f"top-k must be >= 0 (0 = off), got {self.top_k}"),
            (0 < self.top_p <= 1, f"top-p must be in (0, 1], got {self.top_p}"),
            (self.max_new_tokens >= 1, f"max-new-tokens must be at least 1, got {self.max_new_tokens}"),
            (0 <= self.fallback_threshold <= 1, f"fallback-threshold must be in [0, 1], got {self.fallback_threshold}"),
            (self.rollback_threshold >= 0, f"rollback-threshold must be >= 0, got {self.rollback_threshold}"),
            (self.bild_thresholds is None or is_valid_setting(self.bild_thresholds, tuple(METRIC_OF_TASK)),
             f"bild-thresholds must be auto or auto:TASK with TASK one of {', '.join(METRIC_OF_TASK)}, "
             f"got {self.bild_thresholds!r}"),
            (self.bild_thresholds is None or self.method == "bild", "bild-thresholds applies to --method bild only"),
            (self.max_little_steps is None or self.max_little_steps >= 1,
             f"max-little-steps must be at least 1, got {self.max_little_steps}"),
            (all(self.stop), "stop strings must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise BigLittleError(message)

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p)


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]  # the new tokens only
    stats: GenerationStats = field(repr=False)

    def to_dict(self) -> dict:
        return {"text": self.text, "token_ids": self.token_ids, "stats": self.stats.to_dict()}


class ModelPair:
    """A target (big) model and an optional draft (little) model sharing one vocabulary."""

    def __init__(self, target: LoadedModel, draft: LoadedModel | None = None):
        self.target, self.draft = target, draft
        vocab_size = shared_vocab_size(target, draft) if draft is not None else logit_rows(target)
        # An early-exit draft shares the target's KV cache and hands it its layer-L states (exit_reuse.py).
        self.target_runner, self.draft_runner = make_runners(target.model, draft.model if draft else None, vocab_size)
        self.shares_cache = isinstance(self.target_runner, ExitTargetRunner)
        lengths = [m.context_length for m in (target, draft) if m is not None and m.context_length]
        self.max_length = min(lengths) if lengths else 1 << 30
        self._profile: CostProfile | None = None

    @property
    def tokenizer(self):
        return self.target.tokenizer

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if not prompt.strip():
            raise BigLittleError("the prompt is empty")
        if not chat:
            return self.tokenizer(prompt).input_ids
        if not getattr(self.tokenizer, "chat_template", None):
            raise BigLittleError(f"{self.target.name} has no chat template; drop --chat")
        messages = [{"role": "user", "content": prompt}]
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def generate(self, prompt: str | list[int], config: GenerationConfig | None = None, *, on_tokens=None,
                 **settings) -> GenerationResult:
        """Generate from a prompt (text, or token ids); `settings` override fields of `config`.

        `on_tokens(n)`, if given, is called after every round with the number of tokens written so far.
        """
        unknown = set(settings) - {f.name for f in fields(GenerationConfig)}
        if unknown:
            raise BigLittleError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        config = replace(config or GenerationConfig(), **settings)
        config.validate()
        if config.method != "ar" and config.drafter != "ngram" and self.draft_runner is None:
            raise BigLittleError(
                f"method {config.method!r} needs a draft (little) model; pass --draft, or use --drafter ngram or --method ar"
            )
        prompt_ids = self.encode(prompt, config.chat) if isinstance(prompt, str) else list(prompt)
        if not prompt_ids:
            raise BigLittleError("the prompt is empty")
        if config.bild_thresholds is not None:
            fallback, rollback = self.tuned_bild_thresholds(task_of(config.bild_thresholds))
            config = replace(config, fallback_threshold=fallback, rollback_threshold=rollback)
        if len(prompt_ids) >= self.max_length:
            raise BigLittleError(f"the prompt has {len(prompt_ids)} tokens but the models' context is {self.max_length}")
        generator = torch.Generator(self.target_runner.device)
        generator.manual_seed(config.seed if config.seed is not None else torch.seed())
        token_ids, stats = decode(
            prompt_ids,
            self.target_runner,
            self._drafter(config),
            self._method(config),
            max_new_tokens=config.max_new_tokens,
            max_length=self.max_length,
            eos_token_ids=self.target.eos_token_ids,
            generator=generator,
            stop_check=self._stop_check(config.stop) if config.stop else None,
            on_tokens=on_tokens,
        )
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        return GenerationResult(_cut_at_stop(text, config.stop), token_ids, stats)

    def _drafter(self, config: GenerationConfig):
        if config.method == "ar":
            return NoDrafter()
        eos = self.target.eos_token_ids
        ngram = NgramDrafter(self.target_runner.vocab_size, eos, config.max_ngram, self.target_runner.is_encoder_decoder)
        if config.drafter == "ngram":
            return ngram
        fallback = config.fallback_threshold if config.method == "bild" else 0.0
        model = ModelDrafter(self.draft_runner, config.sampling, eos, fallback)
        return HybridDrafter(ngram, model) if config.drafter == "hybrid" else model

    def _method(self, config: GenerationConfig):
        if config.method == "ar":
            return autoregressive(config.sampling)
        if config.method == "speculative":
            if config.gamma != "auto":
                return Speculative(config.gamma, config.sampling)
            profile = self.cost_profile()
            if config.drafter == "ngram":
                profile = replace(profile, draft_step_s=None)  # lookups cost no model step
            elif profile.reuse_verify_cost:
                profile = replace(profile, verify_cost=profile.reuse_verify_cost)  # the draft's layers are reused
            return Speculative(0, config.sampling, chooser=GammaChooser(profile))
        steps = config.max_little_steps if config.max_little_steps is not None else 1 << 30
        fallback_enabled = config.fallback_threshold > 0 or config.max_little_steps is not None
        return Bild(config.rollback_threshold, steps, config.sampling, fallback_enabled)

    def cost_profile(self, refresh: bool = False, progress=None) -> CostProfile:
        """The pair's measured costs on this machine (T(k)/T(1) of both models, c, loop overhead),
        measured once and kept on disk. `progress()` is called after each measurement."""
        if self._profile is not None and not refresh:
            return self._profile
        shared = ["shared-cache"] if self.shares_cache else []  # verification costs less: another profile
        path = profile_path(cache_dir(), "profile-v2", *self.identity(), *shared)
        if path.is_file() and not refresh:
            self._profile = CostProfile.from_json(path.read_text())
            return self._profile
        profile = measure_profile(self.target_runner, self.draft_runner, progress=progress,
                                  shared_cache=self.shares_cache)
        profile.overhead = self._measure_overhead()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, profile.to_json())
        self._profile = profile
        return profile

    def identity(self) -> list[str]:
        """What a measurement of this pair depends on besides the machine: the models, their precision, the device."""
        identity = [self.target.name, precision_of(self.target.model), str(self.target_runner.device)]
        if self.draft is not None:
            scored_rows = logit_rows(self.draft)  # less with a restricted vocabulary
            identity += [self.draft.name, precision_of(self.draft.model), str(scored_rows)]
        return identity

    def tuned_bild_thresholds(self, task: str | None = None) -> tuple[float, float]:
        """(fallback, rollback) that `biglittle tune-bild` stored for this pair on this machine (and `task`)."""
        return tuned_thresholds(thresholds_path(cache_dir(), self.identity()), task)

    def _measure_overhead(self, new_tokens: int = 24) -> dict[str, float]:
        """Share of wall time spent outside model forwards in a short generation, per method."""
        prompt = torch.randint(0, self.target_runner.vocab_size, (32,), generator=torch.Generator().manual_seed(1)).tolist()
        methods = ["ar"] + (["speculative"] if self.draft is not None else [])
        overhead = {}
        for method in methods:
            stats = self.generate(prompt, method=method, gamma=4, max_new_tokens=new_tokens, seed=0).stats
            overhead[method] = stats.other_time_s / stats.wall_time_s
        return overhead

    def _stop_check(self, stops: tuple[str, ...]):
        def tokens_to_keep(new_ids: list[int]) -> int | None:
            if not any(stop in self.tokenizer.decode(new_ids, skip_special_tokens=True) for stop in stops):
                return None
            # The shortest prefix that already contains a stop string.
            for length in range(1, len(new_ids) + 1):
                text = self.tokenizer.decode(new_ids[:length], skip_special_tokens=True)
                if any(stop in text for stop in stops):
                    return length
            return len(new_ids)

        return tokens_to_keep


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text up to and including the earliest stop string."""
    ends = [text.find(stop) + len(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text


def load_pair(
    target: str | LoadedModel,
    draft: str | LoadedModel | None = None,
    *,
    dtype: str = "fp32",
    device: str = "cpu",
    draft_vocab: int | None = None,
) -> ModelPair:
    """Load a target and (optionally) a draft model from hub ids, directories or GGUF files.

    A draft of "early-exit:L" is the target's own first L layers with its norm and output layer;
    a directory written by `align train --draft early-exit:L` is that exit with its trained head.
    `draft_vocab=K` lets the draft score only the K most frequent tokens (a cheaper output layer).
    """
    if isinstance(target, str):
        target = load_model(target, dtype, device)
    if isinstance(draft, str):
        draft = load_draft(draft, target, dtype, device)
    pair = ModelPair(target, draft)  # checks the vocabularies before the draft's is cut down
    if draft_vocab is not None and draft is not None:
        restrict_vocabulary(draft.model, draft.tokenizer, draft_vocab)
    return pair


def load_draft(spec: str, target: LoadedModel, dtype: str = "fp32", device: str = "cpu") -> LoadedModel:
    """The little model `spec` names: a model (hub id, directory, GGUF), early-exit:L, or a trained exit's directory."""
    exit_layers = parse_layers(spec)
    if exit_layers is not None:
        return LoadedModel(spec, early_exit_model(target.model, exit_layers), target.tokenizer)
    if is_exit_head_dir(spec):
        layers, head = load_exit_head(spec, final_norm(target.model.base_model), target.model.config.hidden_size)
        return LoadedModel(spec, early_exit_model(target.model, layers, head), target.tokenizer)
    return load_model(spec, dtype, device)


def generate(pair: ModelPair, prompt: str | list[int], config: GenerationConfig | None = None, **settings) -> GenerationResult:
    """Generate text from `prompt` with `pair`; keyword settings are GenerationConfig fields."""
    return pair.generate(prompt, config, **settings)
