"""Which drafter and which method a GenerationConfig means, for a pair's runners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..config import AUTO, MODEL_FREE_DRAFTERS, TRIVIAL_DRAFTERS, GenerationConfig
from ..cost.gamma import GammaChooser
from ..cost.lookup_lengths import LookupLengths
from ..cost.profile import CostProfile
from ..cost.tree_policy import TreeCosts, TreePolicy
from ..errors import BigLittleError
from ..runtime.runner import Runner
from .cross_tokenizer import CrossTokenizerDrafter, TextBridge
from .drafters import Drafter, HybridDrafter, ModelDrafter, NgramDrafter, NoDrafter
from .methods import Bild, Method, Speculative, autoregressive
from .trees import TreeDrafter, TreeShape
from .trivial_drafts import NgramTable, TokenFrequencies, TrivialDrafter


def build_drafter(
    config: GenerationConfig,
    target: Runner,
    draft: Runner | None,
    eos_token_ids: set[int],
    cost_profile: Callable[[], CostProfile],
    *,
    ngram_table: NgramTable | None = None,
    bridge: TextBridge | None = None,
) -> Drafter:
    """`cost_profile()` gives the pair's measured costs (measured on first use): only --tree auto asks for them.
    `ngram_table`: the counts a unigram or bigram drafter is estimated from (those drafters only); `bridge`: a
    little model with another tokenizer, whose tokens reach the target through text."""
    if config.method == "ar":
        return NoDrafter()
    if config.drafter in TRIVIAL_DRAFTERS:
        if ngram_table is None:
            raise BigLittleError(f"--drafter {config.drafter} needs token counts (--draft-text)")
        order = TRIVIAL_DRAFTERS.index(config.drafter) + 1
        frequencies = TokenFrequencies(ngram_table, order, config.draft_smoothing)
        return TrivialDrafter(frequencies, config.sampling, eos_token_ids, target.vocab_size)
    if config.tree is not None:
        return _tree_drafter(config, draft, eos_token_ids, cost_profile)
    # --gamma auto: lookups sized by the match that found them, and a hybrid's little model by the chooser
    profile = cost_profile() if config.gamma == AUTO and config.drafter in ("ngram", "hybrid") else None
    lengths = LookupLengths(_tree_costs(profile), max_tokens=profile.max_proposals) if profile else None
    ngram = NgramDrafter(target.vocab_size, eos_token_ids, config.max_ngram, target.is_encoder_decoder, lengths)
    if config.drafter == "ngram":
        return ngram
    if draft is None:
        raise BigLittleError(f"method {config.method!r} needs a draft (little) model")
    fallback = config.fallback_threshold if config.method == "bild" and config.fallback else 0.0
    model: Drafter = (
        CrossTokenizerDrafter(draft, bridge, config.sampling, target.vocab_size)
        if bridge is not None
        else ModelDrafter(draft, config.sampling, eos_token_ids, fallback)
    )
    if config.drafter != "hybrid":
        return model
    return HybridDrafter(ngram, model, GammaChooser(profile) if profile else None)


def _tree_drafter(
    config: GenerationConfig, draft: Runner | None, eos_token_ids: set[int], cost_profile: Callable[[], CostProfile]
) -> TreeDrafter:
    little = draft if config.drafter != "ngram" else None
    lookup = config.drafter != "model"
    if isinstance(config.tree, int):
        shape = TreeShape(config.tree, config.tree_depth, config.tree_width)
        return TreeDrafter(little, shape, eos_token_ids, lookup=lookup, max_ngram=config.max_ngram)
    costs = _tree_costs(cost_profile())
    max_nodes = len(costs.verify) - 1  # as far as T(k) was measured
    policy = TreePolicy(costs, config.tree_width, config.tree_depth, max_nodes, model_first=not lookup)
    shape = TreeShape(max_nodes, config.tree_depth, config.tree_width)
    return TreeDrafter(little, shape, eos_token_ids, lookup=lookup, max_ngram=config.max_ngram, policy=policy)


def _tree_costs(profile: CostProfile) -> TreeCosts:
    return TreeCosts(profile.verify_cost, profile.draft_cost, profile.draft_verify_cost or profile.verify_cost)


def build_method(config: GenerationConfig, cost_profile: Callable[[], CostProfile]) -> Method:
    """`cost_profile()` gives the pair's measured costs (measured on first use): only --gamma auto asks for them."""
    if config.method == "ar":
        return autoregressive(config.sampling)
    if config.method == "speculative":
        if config.tree is not None:
            return Speculative(config.tree_depth, config.sampling)  # the tree's depth bounds it like gamma a chain
        if isinstance(config.gamma, int):
            return Speculative(config.gamma, config.sampling)
        profile = cost_profile()
        if config.drafter in ("ngram", "hybrid"):  # the drafter sizes each round's proposal (HybridDrafter)
            return Speculative(profile.max_proposals, config.sampling)
        if config.drafter in MODEL_FREE_DRAFTERS:
            profile = replace(profile, draft_step_s=None)  # lookups and token frequencies cost no model step
        elif profile.reuse_verify_cost:
            profile = replace(profile, verify_cost=profile.reuse_verify_cost)  # the draft's layers are reused
        return Speculative(0, config.sampling, chooser=GammaChooser(profile))
    steps = config.max_little_steps if config.max_little_steps is not None else 1 << 30
    fallback_enabled = config.fallback_threshold > 0 or config.max_little_steps is not None
    return Bild(config.rollback_threshold, steps, config.sampling, fallback_enabled, rollback_enabled=config.rollback)
