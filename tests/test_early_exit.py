"""Early-exit drafts: the target's first L layers + its norm + its output layer, weights shared; with a
Llama / Qwen2 target the two share one KV cache and verification reuses the draft's layer-L states."""

import pytest
import torch
from conftest import PROMPTS, VOCAB
from stats_checks import ALPHA, chi_square_pvalue, detectable_tv, exact_distribution, pooled_cells, sample_first_two
from transformers import Cache, Qwen2Config, Qwen2ForCausalLM

from biglittle import BigLittleError, load_model, load_pair
from biglittle.api import GenerationConfig, ModelPair
from biglittle.cost.profile import CostProfile, measure_profile, profile_steps
from biglittle.decoding.assemble import build_method
from biglittle.decoding.sampling import SamplingConfig
from biglittle.runtime.early_exit import early_exit_model
from biglittle.runtime.early_exit.shared_cache import ExitDraftRunner, ExitTargetRunner, make_runners, shared_layers
from biglittle.runtime.runner import ModelRunner


def storages(model):
    return {p.untyped_storage().data_ptr() for p in model.parameters()}


def test_weights_are_shared_not_copied(exit_pair):
    target, draft = exit_pair.target.model, exit_pair.draft.model
    assert storages(draft) <= storages(target)  # every draft weight lives in the target's memory
    assert draft.lm_head.weight is target.lm_head.weight and draft.model.norm is target.model.norm
    assert len(draft.model.layers) == 2 and len(target.model.layers) == 4  # the target keeps all its layers


def test_logits_are_the_targets_layer_l_hidden_state_through_norm_and_head(exit_pair):
    target, draft = exit_pair.target.model, exit_pair.draft.model
    ids = torch.tensor([exit_pair.encode("the old man sees")])
    with torch.no_grad():
        hidden = target(ids, output_hidden_states=True).hidden_states[2]  # after layer 2
        expected = target.lm_head(target.model.norm(hidden))
        assert torch.equal(draft(ids).logits, expected)


def test_gpt2_layer_stack_is_found(tiny_models):
    gpt2 = load_model(tiny_models["gpt2_draft"]).model
    assert len(early_exit_model(gpt2, 1).transformer.h) == 1 and len(gpt2.transformer.h) == 2


@pytest.mark.parametrize(
    "spec,message",
    [
        ("early-exit:4", "choose 1..3"),
        ("early-exit:9", "choose 1..3"),
        ("early-exit:0", "write early-exit:L"),
        ("early-exit:x", "write early-exit:L"),
    ],
)
def test_bad_exit_layers_are_refused(tiny_models, spec, message):
    with pytest.raises(BigLittleError, match=message):
        load_pair(tiny_models["llama_target"], spec)


def test_encoder_decoder_is_refused(tiny_models):
    with pytest.raises(BigLittleError, match="decoder-only"):
        load_pair(tiny_models["t5_target"], "early-exit:1")


@pytest.mark.parametrize("method", ["speculative", "bild"])
def test_greedy_with_an_early_exit_draft(exit_pair, method):
    settings = {"rollback_threshold": 0.0} if method == "bild" else {"gamma": 3}
    for prompt in PROMPTS:
        ar = exit_pair.generate(prompt, method="ar", max_new_tokens=30)
        out = exit_pair.generate(prompt, method=method, max_new_tokens=30, **settings)
        assert out.token_ids == ar.token_ids


def test_early_exit_sampling_preserves_the_target_distribution(exit_pair):
    """Chi-square at significance ALPHA over 2,500 generations, as for the model draft."""
    expected = exact_distribution(exit_pair, "the cat", SamplingConfig(1.0))
    counts = sample_first_two(exit_pair, "the cat", "speculative", 2500, gamma=2, temperature=1.0)
    # Power: 2,500 runs detect a bias of total variation >= 0.085 with 99% power at ALPHA (exactness of the
    # rule itself is proved with no noise by enumeration in test_exactness.py and test_speculative.py).
    assert detectable_tv(2500, pooled_cells(expected, 2500)) <= 0.085
    assert chi_square_pvalue(counts, expected) > ALPHA


# --- Sharing the target's cache and reusing the draft's layer-L states (Llama / Qwen2 targets) ---

ATOL = 1e-5  # fp32: a verification pass and a full forward add the same terms in other orders


def separate_caches(pair: ModelPair) -> ModelPair:
    """The same models with a KV cache each: the path before sharing, and the one for other targets."""
    other = ModelPair(pair.target, pair.draft)
    vocab_size = pair.target_runner.vocab_size
    other.target_runner = ModelRunner(pair.target.model, vocab_size)
    other.draft_runner = ModelRunner(pair.draft.model, vocab_size)
    other.shares_cache = False
    return other


@pytest.fixture(scope="module")
def tiny_qwen2():
    """An untrained Qwen2 (biases in its attention projections), enough for comparing logits."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(VOCAB),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return Qwen2ForCausalLM(config).eval()


def test_an_early_exit_of_a_llama_target_shares_its_cache(exit_pair):
    target, draft = exit_pair.target_runner, exit_pair.draft_runner
    assert exit_pair.shares_cache and isinstance(target, ExitTargetRunner) and isinstance(draft, ExitDraftRunner)
    assert target.state is draft.state  # one cache: the 2 shallow layers' keys and values are stored once
    assert not [value for runner in (target, draft) for value in vars(runner).values() if isinstance(value, Cache)]
    result = exit_pair.generate("the cat", method="speculative", gamma=3, max_new_tokens=10)
    lengths = [layer.get_seq_length() for layer in target.state.cache.layers]
    assert lengths == [result.stats.prompt_tokens + len(result.token_ids) - 1] * 4  # one cache of the 4 layers


def test_only_an_early_exit_of_the_target_itself_shares(tiny_models, tiny_qwen2):
    target, twin = load_model(tiny_models["llama_target"]).model, load_model(tiny_models["llama_target"]).model
    assert shared_layers(target, early_exit_model(target, 2)) == 2
    assert shared_layers(target, early_exit_model(twin, 2)) is None  # the same weights in other modules
    assert shared_layers(target, twin) is None
    config = Qwen2Config(
        **{
            **tiny_qwen2.config.to_dict(),
            "use_sliding_window": True,
            "sliding_window": 8,
            "max_window_layers": 2,
            "layer_types": None,
        }
    )
    sliding = Qwen2ForCausalLM(config)  # layers 3 and 4 attend to a window: other masks
    assert shared_layers(sliding, early_exit_model(sliding, 2)) is None


def check_rounds(target_model, draft_model, exact: bool) -> None:
    """Draft, verify, reject and crop as the loop does; every logit equals a full forward's over the same tokens."""
    target, draft = make_runners(target_model, draft_model, len(VOCAB))
    assert isinstance(target, ExitTargetRunner)
    rng = torch.Generator().manual_seed(0)
    ids = torch.randint(4, len(VOCAB), (30,), generator=rng).tolist()

    def same(logits, model, tokens):
        expected = model(torch.tensor([tokens])).logits[0, -len(logits) :]
        assert torch.equal(logits, expected) if exact else torch.allclose(logits, expected, atol=ATOL, rtol=0)

    def draft_then_verify(tokens, num_drafts):
        for end in range(len(tokens) - num_drafts, len(tokens)):  # the draft reads all but the last proposal
            same(draft.forward(tokens[:end], 1), draft_model, tokens[:end])
        same(target.forward(tokens, num_drafts + 1), target_model, tokens)

    target.start(ids[:8])
    draft.start(ids[:8])
    with torch.inference_mode():
        draft_then_verify(ids[:12], 4)  # prompt 8 + 4 drafts
        target.crop(9)  # 1 of 4 accepted, the target's own 10th token: tokens 0..8 stay cached
        draft.crop(9)
        other = ids[:9] + ids[20:30]  # another continuation from position 9 on
        draft_then_verify(other[:13], 3)  # all 3 accepted, and a bonus token: nothing to crop
        assert (target.state.deep_len, target.state.shallow_len) == (13, 13)
        for end in range(14, 18):  # BiLD's little model writing alone, ahead of the deep layers
            draft.forward(other[:end], 1)
        target.crop(15)  # a rollback: the shallow layers keep 2 positions the deep ones have not seen
        assert (target.state.deep_len, target.state.shallow_len) == (13, 15)
        third = other[:15] + ids[2:6]
        draft_then_verify(third[:18], 2)  # 2 stored states, 2 new draft positions and the last token


def test_verification_with_reuse_equals_a_full_forward_llama(exit_pair):
    check_rounds(exit_pair.target.model, exit_pair.draft.model, exact=False)


def test_verification_with_reuse_equals_a_full_forward_qwen2(tiny_qwen2):
    check_rounds(tiny_qwen2, early_exit_model(tiny_qwen2, 3), exact=False)


def test_verification_runs_the_shared_layers_only_on_tokens_the_draft_has_not_read(exit_pair):
    """With separate caches the target would run layers 0-1 on every position it scores, as it does layers 2-3."""
    layers = exit_pair.target.model.model.layers
    rows = {0: 0, 2: 0}

    def counter(index):
        return lambda module, args, output: rows.__setitem__(index, rows[index] + output.shape[-2])

    hooks = [layers[index].register_forward_hook(counter(index)) for index in rows]
    try:
        stats = exit_pair.generate("the old man", method="speculative", gamma=3, max_new_tokens=30).stats
    finally:
        for hook in hooks:
            hook.remove()
    draft_rows = sum(fed for fed, _ in stats.draft_call_log)
    target_rows = sum(fed for fed, _ in stats.target_call_log)
    assert stats.proposed > stats.target_calls  # passes scored several positions each
    assert rows[2] == target_rows == stats.prompt_tokens + stats.proposed + stats.target_calls - 1  # each position once
    assert rows[0] == draft_rows + stats.target_calls  # per pass the target ran layers 0-1 on its last token only


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "speculative", "gamma": 4, "temperature": 1.0, "seed": 5},
        {"method": "bild", "fallback_threshold": 0.6, "rollback_threshold": 1.0},
        {"method": "bild", "fallback_threshold": 0.9, "rollback_threshold": 0.5, "temperature": 1.0, "seed": 3},
        {"method": "bild", "fallback_threshold": 0.0, "max_little_steps": None},  # the little model alone
    ],
)
def test_sharing_the_cache_changes_no_output(exit_pair, settings):
    separate = separate_caches(exit_pair)
    rounds = rollbacks = 0
    for prompt in PROMPTS:
        shared = exit_pair.generate(prompt, max_new_tokens=30, **settings)
        alone = separate.generate(prompt, max_new_tokens=30, **settings)
        assert shared.token_ids == alone.token_ids, prompt
        assert shared.stats.target_calls == alone.stats.target_calls
        rounds, rollbacks = rounds + shared.stats.target_calls, rollbacks + shared.stats.rollbacks
    assert settings["method"] != "bild" or rollbacks > 0 or rounds == 0


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_early_exit_shares_and_scores_bit_for_bit(tiny_models, precision):
    pair = load_pair(tiny_models["llama_target"], "early-exit:2", dtype=precision)
    assert pair.shares_cache
    check_rounds(pair.target.model, pair.draft.model, exact=True)  # batch-invariant scoring: no tolerance
    for prompt in PROMPTS:
        ar = pair.generate(prompt, method="ar", max_new_tokens=30)
        assert pair.generate(prompt, method="speculative", gamma=3, max_new_tokens=30).token_ids == ar.token_ids


def test_restricted_vocabulary_early_exit_shares_the_cache(tiny_models):
    pair = load_pair(tiny_models["llama_target"], "early-exit:2", draft_vocab=16, draft_vocab_ranking="ids")
    assert pair.shares_cache
    tokens = pair.draft_runner.start(pair.encode("the cat"))
    assert torch.isneginf(pair.draft_runner.forward(tokens, 1)).sum() == len(VOCAB) - 20  # 16 words + 4 specials kept
    for prompt in PROMPTS:
        ar = pair.generate(prompt, method="ar", max_new_tokens=30)
        assert pair.generate(prompt, method="speculative", gamma=3, max_new_tokens=30).token_ids == ar.token_ids


def test_a_gpt2_target_keeps_a_cache_per_model(tiny_models):
    pair = load_pair(tiny_models["gpt2_draft"], "early-exit:1")
    assert not pair.shares_cache
    assert type(pair.target_runner) is ModelRunner and type(pair.draft_runner) is ModelRunner
    for prompt in PROMPTS:
        ar = pair.generate(prompt, method="ar", max_new_tokens=20)
        assert pair.generate(prompt, method="speculative", gamma=3, max_new_tokens=20).token_ids == ar.token_ids


def test_profile_measures_verification_after_the_draft(exit_pair):
    steps = []
    profile = measure_profile(
        exit_pair.target_runner,
        exit_pair.draft_runner,
        max_k=4,
        repeats=1,
        context_tokens=8,
        progress=lambda: steps.append(1),
        shared_cache=True,
    )
    assert len(steps) == profile_steps(4, True, True, repeats=1) == 24  # 3 curves x 4 k x (warm-up + 1 sweep)
    assert len(profile.reuse_verify_cost) == 4 and profile.reuse_verify_cost[0] > 0


def test_auto_gamma_prices_verification_with_reuse(exit_pair):
    profile = CostProfile(1.0, 0.1, [1.0, 2.0, 3.0], reuse_verify_cost=[1.0, 1.2, 1.4])
    model_drafts = build_method(GenerationConfig(gamma="auto"), lambda: profile)
    lookups = build_method(GenerationConfig(gamma="auto", drafter="unigram"), lambda: profile)
    assert model_drafts.chooser.profile.verify_cost == [1.0, 1.2, 1.4]
    assert lookups.chooser.profile.verify_cost == [1.0, 2.0, 3.0]  # token frequencies: nothing reused
