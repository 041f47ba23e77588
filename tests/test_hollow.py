"""A model's layers with tiny matrices (runtime/hollow.py): what `biglittle profile` times as a step's fixed part."""

import pytest
import torch

from biglittle import load_pair
from biglittle.runtime.hollow import HEAD_DIM, hollow_copy
from biglittle.runtime.quantize import Int8Linear, precision_of, weight_bytes
from biglittle.runtime.runner import ModelRunner


def structure(model):
    config = model.config
    kinds = [type(module).__name__ for module in model.modules() if type(module).__module__.startswith("biglittle")]
    return (
        type(model),
        config.num_hidden_layers,
        config.num_attention_heads,
        getattr(config, "num_key_value_heads", None),
        precision_of(model),
        config._attn_implementation,
        kinds,
    )


@pytest.mark.parametrize("role", ["llama_target", "gpt2_draft"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_a_hollow_copy_keeps_the_layers_heads_and_precision_with_tiny_matrices(tiny_models, role, precision):
    model = load_pair(tiny_models[role], dtype=precision).target.model
    hollow = hollow_copy(model)
    assert structure(hollow) == structure(model)
    assert hollow.config.hidden_size == HEAD_DIM * model.config.num_attention_heads < model.config.hidden_size
    assert weight_bytes(hollow) < weight_bytes(model) / 2
    runner = ModelRunner(hollow, hollow.config.vocab_size)
    logits = runner.forward(runner.start([1, 5, 7, 9]), 2)
    assert logits.shape == (2, hollow.config.vocab_size) and torch.isfinite(logits).all()


def test_int8_hollow_layers_are_int8_products_of_the_shrunk_width(tiny_models):
    hollow = hollow_copy(load_pair(tiny_models["llama_target"], dtype="int8").target.model)
    widths = {layer.in_features for layer in hollow.modules() if isinstance(layer, Int8Linear)}
    assert widths == {HEAD_DIM * hollow.config.num_attention_heads, 4 * hollow.config.hidden_size}


def test_an_encoder_decoder_has_no_hollow_copy(seq2seq_pair):
    assert hollow_copy(seq2seq_pair.target.model) is None


def test_the_fixed_part_is_timed_for_a_model_runner_on_the_cpu_only(decoder_pair, exit_pair):
    from biglittle.cost.profile import fixed_step_s

    assert fixed_step_s(decoder_pair.target_runner, repeats=2, context_tokens=8) > 0
    assert fixed_step_s(exit_pair.draft_runner, repeats=2, context_tokens=8) is None  # shares the target's cache
