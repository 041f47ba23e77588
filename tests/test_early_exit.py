"""Early-exit drafts: the target's first L layers + its norm + its output layer, weights shared."""

import pytest
import torch

from biglittle import BigLittleError, load_model, load_pair
from biglittle.early_exit import early_exit_model
from biglittle.sampling import SamplingConfig
from conftest import PROMPTS
from stats_checks import ALPHA, chi_square_pvalue, exact_distribution, sample_first_two


@pytest.fixture(scope="module")
def exit_pair(tiny_models):
    return load_pair(tiny_models["llama_target"], "early-exit:2")


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


@pytest.mark.parametrize("spec,message", [("early-exit:4", "choose 1..3"), ("early-exit:9", "choose 1..3"),
                                          ("early-exit:0", "write early-exit:L"), ("early-exit:x", "write early-exit:L")])
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
    assert chi_square_pvalue(counts, expected) > ALPHA
