"""One source for every setting: the generation config, the choice lists, their defaults and what a draft spec means.

Free of torch, so that the command line builds its options (and `--help`) from here without loading it.
The policy that depends only on settings lives here too: which method runs when none is named, which
methods need a little model, and the built-in pair's own defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import BigLittleError

METHODS = ("ar", "speculative", "bild")
DRAFTERS = ("model", "ngram", "hybrid", "unigram", "bigram")
TRIVIAL_DRAFTERS = ("unigram", "bigram")  # drafts that cost nothing: token frequencies estimated from text
MODEL_FREE_DRAFTERS = ("ngram", *TRIVIAL_DRAFTERS)
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4", "auto")  # int8, int4 and auto load fp32 weights first
TRAINABLE_PRECISIONS = ("fp32", "bf16", "fp16")  # gradients do not flow through int8 or int4 layers
VOCAB_RANKINGS = ("corpus", "ids")  # which tokens a restricted draft vocabulary (--draft-vocab K) keeps
TASKS = ("translation", "summarization", "code")
SPLITS = ("train", "dev", "test")
# Tasks whose data is a test set only (HumanEval): no split of it may train or tune anything.
TEST_ONLY_TASKS = {"code": "HumanEval is a test set"}
TUNING_TASKS = tuple(task for task in TASKS if task not in TEST_ONLY_TASKS)

EARLY_EXIT_PREFIX = "early-exit:"
EXIT_HEAD_META = "exit.json"  # in a directory written by `align train --draft early-exit:L`: a trained exit
AUTO = "auto"
# torch.Generator.manual_seed takes 0 .. 2**64 - 1, and -2**63 .. -1 as other names of the upper half (-1 is
# 2**64 - 1): the seeds accepted here are 0 .. MAX_SEED, one name per seed.
MAX_SEED = 2**64 - 1


def _setting(default, help: str, **extra):
    """A dataclass field whose `help` the command line shows."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 means greedy (argmax)
    top_k: int = 0  # 0 means off
    top_p: float = 1.0  # 1 means off

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class GenerationConfig:
    """Settings of one generation; the command line's flags have the same names (--max-new-tokens, ...)."""

    method: str = _setting(
        "speculative",
        "ar = big model alone; speculative = exact speculative decoding; bild = Big Little Decoder",
        choices=METHODS,
    )
    gamma: int | str = _setting(
        4,
        "speculative: draft tokens per target pass; 'auto' picks it before every pass "
        "from the running acceptance and this machine's measured costs (`biglittle profile`, "
        "measured once on first use), down to plain decoding where speculation cannot win",
    )
    drafter: str = _setting(
        "model",
        "speculative: who proposes: model = the little model; ngram = prompt lookup, "
        "copies what followed the last few tokens earlier in the text (no model needed); "
        "hybrid = ngram where it finds a match, else the little model; unigram / bigram = token frequencies "
        "(after the previous token) estimated from --draft-text, drafts that cost nothing (Leviathan et al.)",
        choices=DRAFTERS,
    )
    max_ngram: int = _setting(3, "ngram / hybrid: longest suffix looked up")
    draft_text: str | None = _setting(
        None,
        "unigram / bigram: the text they are estimated from: a task (its train split: "
        + ", ".join(TASKS)
        + ") or a text file (one text per line); counted once and kept under the cache",
    )
    draft_smoothing: float = _setting(
        0.001,
        "unigram / bigram: add-k smoothing, k pseudo-counts per token (a bigram's go to its context's "
        "tokens in proportion to the unigram model, so an unseen context falls back to it)",
    )
    tree: int | str | None = _setting(
        None,
        "speculative: propose a tree of up to this many tokens per target pass instead of a chain, all verified in "
        "one pass (each proposed token attends to its ancestors only): the little model's top choices, grown one "
        "level per little-model pass (--drafter model), the text's own continuations (ngram), or both (hybrid); "
        "'auto' decides every round, from this machine's measured costs and the acceptance so far, whether to run "
        "the little model, how deep to grow and how many tokens to propose (none: a plain step)",
    )
    tree_depth: int = _setting(4, "speculative --tree: at most this many levels (little-model passes)")
    tree_width: int = _setting(4, "speculative --tree: children per expanded token, and tokens expanded per level")
    temperature: float = _setting(0.0, "0 = greedy; > 0 samples")
    top_k: int = _setting(0, "sample from the k most likely tokens only (0 = off)")
    top_p: float = _setting(1.0, "nucleus sampling mass in (0, 1] (1 = off)")
    seed: int | None = _setting(None, "random seed (0 .. 2**64 - 1), for repeatable sampling")
    max_new_tokens: int = _setting(128, "at most this many new tokens")
    fallback_threshold: float = _setting(
        0.6, "bild: hand over to the big model when the little model's top probability is below this"
    )
    rollback_threshold: float = _setting(
        5.0, "bild: replace little tokens whose -log p under the big model exceeds this"
    )
    max_little_steps: int | None = _setting(
        10, "bild: hand over after this many little tokens in a row (None, on the command line 0: never)"
    )
    fallback: bool = _setting(
        True,
        "bild: the little model hands over when unsure (--fallback-threshold); --no-fallback: rollback only, the "
        "little model writes --max-little-steps tokens, then the big model checks them (default: on)",
    )
    rollback: bool = _setting(
        True,
        "bild: the big model replaces little tokens it finds too unlikely (--rollback-threshold); --no-rollback: "
        "fallback only, at a hand-over the big model writes the next token and keeps every little one (default: on)",
    )
    bild_thresholds: str | None = _setting(
        None,
        "bild: use the fallback and rollback thresholds that `biglittle "
        "tune-bild` chose for this pair, precision and machine (auto:TASK when "
        "several tasks were tuned) instead of the two thresholds",
    )
    stop: tuple[str, ...] = _setting((), "stop once this text is written")
    chat: bool = _setting(False, "wrap the prompt in the tokenizer's chat template")

    def validate(self) -> None:
        checks = [
            (self.method in METHODS, f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"),
            (
                self.gamma == AUTO or (isinstance(self.gamma, int) and self.gamma >= 1),
                f"gamma must be at least 1 or 'auto', got {self.gamma}",
            ),
            (self.drafter in DRAFTERS, f"unknown drafter {self.drafter!r}; choose one of {', '.join(DRAFTERS)}"),
            (
                self.method != "bild" or self.drafter == "model",
                "bild needs the little model as its drafter (--drafter model)",
            ),
            (self.max_ngram >= 1, f"max-ngram must be at least 1, got {self.max_ngram}"),
            (
                self.drafter not in TRIVIAL_DRAFTERS or bool(self.draft_text),
                f"--drafter {self.drafter} needs --draft-text: a task ({', '.join(TASKS)}) or a text file",
            ),
            (
                self.draft_smoothing > 0 and math.isfinite(self.draft_smoothing),
                f"draft-smoothing must be > 0, got {self.draft_smoothing}",
            ),
            (
                self.drafter not in TRIVIAL_DRAFTERS or self.tree is None,
                f"--drafter {self.drafter} proposes chains only; drop --tree",
            ),
            (
                self.tree in (None, AUTO) or (isinstance(self.tree, int) and self.tree >= 1),
                f"tree must be at least 1 token or 'auto', got {self.tree}",
            ),
            (self.tree is None or self.method == "speculative", "tree applies to --method speculative only"),
            (self.tree_depth >= 1, f"tree-depth must be at least 1, got {self.tree_depth}"),
            (self.tree_width >= 1, f"tree-width must be at least 1, got {self.tree_width}"),
            (
                self.temperature >= 0 and math.isfinite(self.temperature),
                f"temperature must be >= 0, got {self.temperature}",
            ),
            (self.top_k >= 0, f"top-k must be >= 0 (0 = off), got {self.top_k}"),
            (0 < self.top_p <= 1, f"top-p must be in (0, 1], got {self.top_p}"),
            seed_check(self.seed),
            (self.max_new_tokens >= 1, f"max-new-tokens must be at least 1, got {self.max_new_tokens}"),
            (0 <= self.fallback_threshold <= 1, f"fallback-threshold must be in [0, 1], got {self.fallback_threshold}"),
            (self.rollback_threshold >= 0, f"rollback-threshold must be >= 0, got {self.rollback_threshold}"),
            (
                self.bild_thresholds is None or is_valid_thresholds_setting(self.bild_thresholds),
                f"bild-thresholds must be auto or auto:TASK with TASK one of {', '.join(TUNING_TASKS)}, "
                f"got {self.bild_thresholds!r}",
            ),
            (self.bild_thresholds is None or self.method == "bild", "bild-thresholds applies to --method bild only"),
            (
                self.max_little_steps is None or self.max_little_steps >= 1,
                f"max-little-steps must be at least 1, got {self.max_little_steps}",
            ),
            (
                (self.fallback and self.rollback) or self.method == "bild",
                "--no-fallback and --no-rollback apply to --method bild only",
            ),
            (
                self.fallback or self.rollback,
                "--no-fallback and --no-rollback together leave BiLD no policy; keep one of them",
            ),
            (
                self.fallback or self.max_little_steps is not None,
                "bild --no-fallback (rollback only) needs --max-little-steps N: the little model writes N tokens, "
                "then the big model checks them",
            ),
            (all(self.stop), "stop strings must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise BigLittleError(message)

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p)

    @property
    def needs_draft_model(self) -> bool:
        """Whether this generation runs the little model (n-gram lookup and ar need none)."""
        return needs_draft_model(self.method, self.drafter)


SETTING_NAMES = tuple(f.name for f in fields(GenerationConfig))


def seed_check(seed: int | None) -> tuple[bool, str]:
    """(ok, message) for a random seed: None (a fresh one) or 0 .. MAX_SEED."""
    return seed is None or 0 <= seed <= MAX_SEED, f"seed must be in 0 .. {MAX_SEED} (2**64 - 1), got {seed}"


def needs_draft_model(method: str, drafter: str) -> bool:
    return method != "ar" and drafter not in MODEL_FREE_DRAFTERS


def choose_method(
    method: str | None, *, has_draft: bool, drafter: str = "model", bild_thresholds: str | None = None
) -> str:
    """The method to run when none is named: bild for tuned thresholds, speculative with something to draft, else ar."""
    if method is not None:
        return method
    if bild_thresholds:
        return "bild"
    return "speculative" if has_draft or drafter in MODEL_FREE_DRAFTERS else "ar"


# What differs for the built-in instruct pair: its chat template, the cost-aware gamma (plain decoding where
# speculation cannot pay) and the fastest precision measured on this machine. Named models: the dataclass defaults.
BUILTIN_PAIR_DEFAULTS: dict = {"chat": True, "gamma": AUTO}  # GenerationConfig fields
BUILTIN_PAIR_PRECISION, NAMED_MODEL_PRECISION = AUTO, "fp32"
# The built-in pair's decoding when none of method, gamma, tree or drafter is named: tokens looked up in the text
# so far, as many a round as the match that found them pays for (cost/lookup_lengths.py), the fastest exact
# configuration measured on a CPU (docs/bench.md#results), where the 0.5B little model costs more than it saves.
# `--method speculative` is the little model's speculative decoding.
BUILTIN_SPECULATION: dict = {"drafter": "ngram", "gamma": AUTO}
SPECULATION_SHAPE = ("method", "gamma", "tree", "drafter")  # naming any of these turns BUILTIN_SPECULATION off


def generation_defaults(is_builtin_pair: bool) -> GenerationConfig:
    return replace(GenerationConfig(), **BUILTIN_PAIR_DEFAULTS) if is_builtin_pair else GenerationConfig()


def with_builtin_speculation(config: GenerationConfig, named: Iterable[str], is_builtin_pair: bool) -> GenerationConfig:
    """`config` with the built-in pair's speculative default, unless the caller `named` a setting of its shape."""
    if is_builtin_pair and config.method == "speculative" and not set(named) & set(SPECULATION_SHAPE):
        return replace(config, **BUILTIN_SPECULATION)
    return config


def default_precision(is_builtin_pair: bool) -> str:
    return BUILTIN_PAIR_PRECISION if is_builtin_pair else NAMED_MODEL_PRECISION


def is_valid_thresholds_setting(setting: str) -> bool:
    """'auto' or 'auto:TASK' (bild_thresholds)."""
    head, colon, task = setting.partition(":")
    return head == AUTO and (not colon or task in TUNING_TASKS)


def require_tuning_task(task: str, command: str) -> None:
    """Refuses a test-only task for anything that trains or tunes on its data."""
    if task in TEST_ONLY_TASKS:
        raise BigLittleError(
            f"{command} cannot use the {task} task: {TEST_ONLY_TASKS[task]}, and nothing is trained or tuned on "
            f"a test set; use {' or '.join(TUNING_TASKS)}"
        )


def task_of(setting: str) -> str | None:
    """'auto' -> None, 'auto:translation' -> 'translation'."""
    return setting.partition(":")[2] or None


@dataclass(frozen=True)
class DraftSpec:
    """What a --draft value names: a model (hub id, directory, GGUF), the target's first L layers
    (early-exit:L), or a directory holding a trained exit head for such layers."""

    spec: str
    kind: str  # "model", "early-exit" or "exit-head"
    layers: int | None = None  # early-exit: L

    @property
    def is_made_from_target(self) -> bool:
        return self.kind != "model"


def parse_draft_spec(spec: str) -> DraftSpec:
    """The one reading of a draft spec; a malformed early-exit:L is a one-line error."""
    if spec.startswith(EARLY_EXIT_PREFIX):
        text = spec[len(EARLY_EXIT_PREFIX) :]
        if not text.isdigit() or int(text) < 1:
            raise BigLittleError(f"{spec!r}: write early-exit:L with L a number of layers, e.g. early-exit:8")
        return DraftSpec(spec, "early-exit", int(text))
    if (Path(spec).expanduser() / EXIT_HEAD_META).is_file():
        return DraftSpec(spec, "exit-head")
    return DraftSpec(spec, "model")
