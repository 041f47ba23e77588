"""int8 precision: batch-invariant scoring (so greedy speculative == greedy ar), accuracy, choosing a precision."""

import json
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import PROMPTS, VOCAB
from stats_checks import ALPHA, chi_square_pvalue, detectable_tv, exact_distribution, pooled_cells, sample_first_two
from torch import nn
from transformers.pytorch_utils import Conv1D

from biglittle import load_pair
from biglittle.api import ModelPair
from biglittle.bench.peers import hf_generate
from biglittle.cli import build_parser, main
from biglittle.decoding.sampling import SamplingConfig
from biglittle.errors import BigLittleError
from biglittle.runtime.models import PRECISIONS, load_model
from biglittle.runtime.quantize import (
    Int8Linear,
    fastest_precision,
    precision_of,
    rowwise_attention,
    scoring_gap,
    use_rowwise_attention,
)
from biglittle.runtime.runner import ModelRunner


def random_ids(count, seed):
    rng = random.Random(seed)
    return [rng.randrange(4, len(VOCAB)) for _ in range(count)]


def random_prompts(count, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB[4:]) for _ in range(rng.randint(1, 12))) for _ in range(count)]


@pytest.fixture(scope="module")
def int8_pair(tiny_models):
    return load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"], dtype="int8")


def gaps(model, contexts=(3, 10, 25, 60), ks=(2, 3, 5, 8)):
    runner = ModelRunner(model, len(VOCAB))
    return [
        scoring_gap(runner, random_ids(length, seed=length), random_ids(k, seed=100 + k))
        for length in contexts
        for k in ks
    ]


def test_int8_scores_tokens_alike_alone_or_together(int8_pair):
    for model in (int8_pair.target.model, int8_pair.draft.model):
        assert gaps(model) == [0.0] * 16


def test_torch_dynamic_int8_is_not_batch_invariant_on_a_wide_layer():
    """The control: per-tensor activation scales couple the rows; per-row scales (Int8Linear) do not."""
    torch.manual_seed(0)
    layer = nn.Linear(512, 2048)
    dynamic = torch.ao.quantization.quantize_dynamic(nn.Sequential(layer), {nn.Linear}, dtype=torch.qint8)[0]
    int8 = Int8Linear.from_module(layer)
    rows = torch.randn(6, 512) * torch.tensor([[1.0], [5.0], [0.2], [1.0], [30.0], [1.0]])  # rows of unlike ranges
    for quantized, invariant in ((dynamic, False), (int8, True)):
        together = quantized(rows)
        alone = torch.cat([quantized(rows[i : i + 1]) for i in range(len(rows))])
        assert torch.equal(together, alone) == invariant


def test_torch_dynamic_int8_model_is_not_batch_invariant(tiny_models):
    """The same test as above on a whole model quantized by torch's dynamic int8: it fails it."""
    model = load_model(tiny_models["llama_target"]).model
    torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    assert max(gaps(model)) > 0


@pytest.mark.parametrize("gamma", [1, 2, 3, 5, 8])
def test_greedy_speculative_equals_greedy_ar_at_int8(int8_pair, gamma):
    proposed = accepted = 0
    for prompt in PROMPTS + random_prompts(8, seed=gamma):
        ar = int8_pair.generate(prompt, method="ar", max_new_tokens=30)
        spec = int8_pair.generate(prompt, method="speculative", gamma=gamma, max_new_tokens=30)
        assert spec.token_ids == ar.token_ids, prompt
        proposed, accepted = proposed + spec.stats.proposed, accepted + spec.stats.accepted
    assert 0 < accepted < proposed  # drafts both accepted and rejected: the identity was tested


@pytest.mark.parametrize("engine", ["hf-assisted", "hf-lookup"])
def test_the_transformers_peers_score_every_token_as_ar_does_at_int8(int8_pair, engine):
    """transformers' greedy peers read the prompt as biglittle's runners do (its rows in one batched call), so the
    target gives each token they make the logits `ar` gives it, bit for bit: read row by row, the prompt rounds
    differently, and on a real pair a near tie flips (11 of 30 HumanEval answers differed before)."""
    for prompt in random_prompts(10, seed=5):
        ids = int8_pair.encode(prompt)
        output = hf_generate(int8_pair, ids, engine, 12, output_logits=True, return_dict_in_generate=True)
        tokens = output.sequences[0].tolist()
        runner = ModelRunner(int8_pair.target.model, len(VOCAB))
        runner.start(ids)
        for step, logits in enumerate(output.logits):
            expected = runner.forward(tokens[: len(ids) + step], 1)[0]
            assert torch.equal(logits[0, : len(VOCAB)], expected), (prompt, step)


def test_int8_logits_are_close_to_fp32(tiny_models, int8_pair):
    """Within 5% of the logits' spread, and the same greedy choice nearly everywhere."""
    fp32 = load_model(tiny_models["llama_target"]).model
    batch = torch.tensor([random_ids(20, seed=seed) for seed in range(8)])
    with torch.no_grad():
        reference, quantized = fp32(batch).logits, int8_pair.target.model(batch).logits
    assert (quantized - reference).abs().max() < 0.05 * (reference.max() - reference.min())
    assert (quantized.argmax(-1) == reference.argmax(-1)).float().mean() > 0.95


def logits_with_and_without_cache(model, ids):
    """Logits of `ids` in one pass, and of its last 4 tokens after a cache of the others."""
    with torch.no_grad():
        cache = model(ids[:, :-4], use_cache=True).past_key_values
        return model(ids).logits, model(ids[:, -4:], past_key_values=cache).logits


@pytest.mark.parametrize("path", ["llama_target", "gpt2_draft"])
def test_rowwise_attention_computes_what_the_default_attention_does(tiny_models, path):
    default = load_model(tiny_models[path]).model
    rowwise = load_model(tiny_models[path]).model
    use_rowwise_attention(rowwise)
    ids = torch.tensor([random_ids(16, seed=1), random_ids(16, seed=2)])
    for expected, actual in zip(
        logits_with_and_without_cache(default, ids), logits_with_and_without_cache(rowwise, ids)
    ):
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kv_heads", [1, 2, 4])  # 4 query heads: multi-query, grouped-query and multi-head attention
def test_a_row_attends_alike_alone_or_with_rows_of_other_lengths(kv_heads):
    """Rows of a chain (9 rows) and of a tree (keys with gaps) get the same bits scored together as scored alone, and
    what attention over their keys gives: one call for all rows, their keys padded to the longest and masked, fails
    it."""
    torch.manual_seed(0)
    keys = 140
    query, key, value = torch.randn(2, 4, 12, 8), torch.randn(2, kv_heads, keys, 8), torch.randn(2, kv_heads, keys, 8)
    chain = [torch.arange(59 + row) for row in range(9)]
    tree = [torch.tensor([*range(61), 66, 71]), torch.arange(0, 130, 2)]
    visible = [*chain, *tree, torch.arange(keys)]
    mask = torch.full((2, 1, len(visible), keys), -torch.inf)
    for row, seen in enumerate(visible):
        mask[:, :, row, seen] = 0.0
    with torch.inference_mode():
        together, _ = rowwise_attention(nn.Module(), query, key, value, mask)
        for row, seen in enumerate(visible):
            alone, _ = rowwise_attention(nn.Module(), query[:, :, row : row + 1], key, value, mask[:, :, row : row + 1])
            assert torch.equal(alone[:, 0], together[:, row]), row
            reference = F.scaled_dot_product_attention(
                query[:, :, row : row + 1], key[:, :, seen], value[:, :, seen], enable_gqa=True
            )
            torch.testing.assert_close(together[:, row], reference[:, :, 0], atol=1e-6, rtol=1e-6)


def test_each_mask_is_read_afresh_even_when_it_has_the_shape_of_the_last():
    """The mask's reading is kept for the layers after the first; a new mask of the same shape (the next tree) is a
    new reading: keyed on the shape alone, the second tree's rows would attend to the first tree's keys."""
    keys, rows = 6, 3
    chain = torch.zeros(1, 1, rows, keys)
    chain[..., 3:] = torch.tensor([[0.0, -torch.inf, -torch.inf], [0.0, 0.0, -torch.inf], [0.0, 0.0, 0.0]])
    tree = chain.clone()
    tree[..., 2, 4] = -torch.inf  # the third node's parent is the first node, not the second
    query, key = torch.randn(1, 4, rows, 8), torch.randn(1, 2, keys, 8)
    with torch.inference_mode():
        for mask in (chain, tree, chain):
            expected = F.scaled_dot_product_attention(query, key, key, attn_mask=mask, enable_gqa=True).transpose(1, 2)
            for _ in range(2):  # a second layer reading the same mask
                actual, _ = rowwise_attention(nn.Module(), query, key, key, mask)
                torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)


def test_int8_layer_matches_its_float_layer(tiny_models):
    """nn.Linear and GPT-2's Conv1D (transposed weight) alike; the tied embedding stays untouched."""
    fp32 = load_model(tiny_models["gpt2_draft"]).model
    int8 = load_model(tiny_models["gpt2_draft"], "int8").model
    for name in ("transformer.h.0.attn.c_attn", "transformer.h.0.mlp.c_proj", "lm_head"):
        layer, quantized = fp32.get_submodule(name), int8.get_submodule(name)
        assert isinstance(quantized, Int8Linear)
        inputs = torch.randn(5, quantized.in_features)
        expected = layer(inputs).detach()
        assert (quantized(inputs) - expected).abs().max() < 0.03 * expected.abs().max()
        weight = layer.weight.t() if name != "lm_head" else layer.weight
        assert quantized.weight.shape == weight.shape
        assert (quantized.weight - weight).abs().max() <= weight.abs().max() / 254 + 1e-6
    assert torch.equal(int8.get_input_embeddings().weight, fp32.get_input_embeddings().weight)
    assert not any(isinstance(m, (nn.Linear, Conv1D)) for m in int8.modules())


def test_sampling_with_an_int8_draft_keeps_the_target_distribution(decoder_pair, int8_pair):
    """The chi-square test of test_speculative at temperature 1 (fewer trials: int8 layers cost more on tiny models)."""
    pair = ModelPair(decoder_pair.target, int8_pair.draft)
    expected = exact_distribution(pair, "the cat", SamplingConfig(1.0))
    counts = sample_first_two(pair, "the cat", "speculative", 1500, gamma=2, temperature=1.0)
    # Power: 1,500 runs detect a bias of total variation >= 0.105 with 99% power at ALPHA (exactness of the
    # rule itself is proved with no noise by enumeration in test_exactness.py and test_speculative.py).
    assert detectable_tv(1500, pooled_cells(expected, 1500)) <= 0.105
    assert chi_square_pvalue(counts, expected) > ALPHA


def test_encoder_decoder_models_are_refused_at_int8(tiny_models):
    with pytest.raises(BigLittleError, match="AttentionInterface"):
        load_model(tiny_models["t5_target"], "int8")


@pytest.mark.parametrize("fastest", ["fp32", "bf16", "int8"])
def test_auto_loads_the_precision_that_timed_fastest(tiny_models, monkeypatch, fastest):
    def fake_time(layer, in_features, dtype, repeats):
        name = "int8" if isinstance(layer, Int8Linear) else {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
        return 1.0 if name == fastest else 2.0

    monkeypatch.setattr("biglittle.runtime.quantize._time_rows", fake_time)
    model = load_model(tiny_models["llama_target"], "auto").model
    assert precision_of(model) == {"fp32": "torch.float32", "bf16": "torch.bfloat16", "int8": "int8"}[fastest]


def test_auto_measures_this_machine(tiny_models):
    model = load_model(tiny_models["llama_target"]).model
    assert fastest_precision(model) in ("fp32", "bf16", "int8")
    assert precision_of(model) == "torch.float32"  # measuring converts nothing


def test_int8_and_fp32_profiles_are_kept_apart(tiny_models, int8_pair, tmp_path, monkeypatch):
    from biglittle.cost.profile import CostProfile

    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    monkeypatch.setattr("biglittle.api.measure_profile", lambda *a, **k: CostProfile(0.1, 0.05, [1.0, 1.1]))
    fp32_pair = load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"])
    for pair in (fp32_pair, int8_pair):
        pair.cost_profile(refresh=True)
    assert len(list((tmp_path / "profiles").glob("*.json"))) == 2


def test_the_command_line_offers_every_precision():
    generate = build_parser()._subparsers._group_actions[0].choices["generate"]
    precision = next(action for action in generate._actions if action.dest == "precision")
    assert tuple(precision.choices) == PRECISIONS


@pytest.mark.parametrize("precision", ["int8", "auto"])
def test_command_line_precision(tiny_models, int8_pair, capsys, precision):
    args = [
        "generate",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        "--json",
        "--precision",
        precision,
        "--method",
        "speculative",
        "--max-new-tokens",
        "12",
        "the old man",
    ]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["token_ids"]) > 0
    if precision == "int8":
        assert record["token_ids"] == int8_pair.generate("the old man", method="ar", max_new_tokens=12).token_ids


def test_int8_on_a_gpu_is_refused_before_loading(tiny_models, capsys):
    assert (
        main(
            ["generate", "--target", tiny_models["llama_target"], "--precision", "int8", "--device", "cuda", "the cat"]
        )
        == 2
    )
    assert "CPU only" in capsys.readouterr().err


def test_projections_of_one_input_share_one_int8_product_and_give_the_same_logits(tiny_models, int8_pair, monkeypatch):
    from biglittle.runtime import quantize

    layer = int8_pair.target.model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, quantize.FusedPart) and isinstance(layer.mlp.up_proj, quantize.FusedPart)
    assert layer.self_attn.k_proj.fused is layer.self_attn.q_proj.fused
    monkeypatch.setattr(quantize, "SHARED_INPUTS", ())
    unfused = quantize.quantize_model(load_model(tiny_models["llama_target"]).model)
    ids = torch.tensor([random_ids(20, seed=3)])
    with torch.no_grad():
        assert torch.equal(int8_pair.target.model(ids).logits, unfused(ids).logits)


def test_weight_bytes_count_what_a_pass_reads(tiny_models, int8_pair):
    from torch import nn

    from biglittle.cost.profile import measure_bandwidth
    from biglittle.runtime.quantize import weight_bytes

    assert weight_bytes(Int8Linear.from_float(torch.randn(32, 64), None)) == 32 * 64
    assert weight_bytes(nn.Linear(64, 32)) == 32 * 64 * 4
    fp32 = load_model(tiny_models["llama_target"]).model
    linear = sum(m.weight.numel() for m in fp32.modules() if isinstance(m, nn.Linear))
    assert weight_bytes(fp32) == 4 * linear and weight_bytes(int8_pair.target.model) == linear  # fused: the same
    assert measure_bandwidth(size_bytes=1 << 24, repeats=2) > 1e8  # bytes per second: at least 0.1 GB/s


ONEDNN_EXACT = pytest.mark.skipif(
    not __import__("biglittle.runtime.cpu", fromlist=["capabilities"]).capabilities()["int8_onednn"],
    reason="oneDNN's int8 product is not exact on this CPU (the probe's verdict): int8 runs on fbgemm only",
)


@ONEDNN_EXACT
@pytest.mark.parametrize("bias", [False, True])
def test_the_two_int8_kernels_give_the_same_bits_so_rows_score_alike_alone_or_together(bias, monkeypatch):
    """fbgemm (one row) and oneDNN (several) each return the exact int32 sum times the weight's scale."""
    torch.manual_seed(0)
    layer = Int8Linear.from_float(
        torch.randn(300, 200), torch.randn(300) if bias else None
    )  # sizes off any block multiple
    for rows in (2, 3, 16, 37):
        x = torch.randn(rows, 200) * torch.logspace(-2, 2, rows)[:, None]  # rows of very different scales
        alone = torch.cat([layer(x[i : i + 1]) for i in range(rows)])  # fbgemm
        assert torch.equal(layer(x), alone)  # oneDNN
        monkeypatch.setattr(layer, "onednn_from_rows", 10**9)
        assert torch.equal(layer(x), alone)  # fbgemm
        monkeypatch.setattr(layer, "onednn_from_rows", 1)
        assert torch.equal(layer(x[:1]), alone[:1])  # oneDNN on one row
        monkeypatch.undo()


def test_int8_keeps_a_onednn_copy_only_where_the_probe_found_it_exact(monkeypatch):
    from biglittle.runtime import cpu

    for exact in (False, True):
        verdict = {"int8": True, "int8_8bit": True, "int8_onednn": exact, "bf16": True, "int4": True}
        monkeypatch.setattr(cpu, "capabilities", lambda verdict=verdict: verdict)
        monkeypatch.setattr("biglittle.runtime.quantize.capabilities", cpu.capabilities)
        layer = Int8Linear.from_float(torch.randn(8, 16), None)
        assert (layer._onednn is not None) == exact
        x = torch.randn(4, 16)
        assert torch.equal(layer(x), torch.cat([layer(x[i : i + 1]) for i in range(4)]))


def test_fused_and_restricted_int8_layers_keep_the_integers_and_scales_they_came_from():
    from biglittle.runtime.quantize import FusedInt8
    from biglittle.runtime.restricted_vocab import RestrictedHead

    torch.manual_seed(1)
    parts = [Int8Linear.from_float(torch.randn(size, 32) * (1 + size), torch.randn(size)) for size in (8, 24)]
    fused = FusedInt8.of_int8(parts)
    assert torch.equal(fused.product.integers(), torch.cat([part.integers() for part in parts]))
    assert torch.equal(fused.product.scales, torch.cat([part.scales for part in parts]))
    x = torch.randn(5, 32)
    assert all(torch.equal(fused.output(i, x), part(x)) for i, part in enumerate(parts))
    head = RestrictedHead(parts[1], torch.tensor([3, 7, 20]))
    assert torch.equal(head(x)[:, [3, 7, 20]], parts[1](x)[:, [3, 7, 20]])


def test_projections_quantized_together_from_float_get_each_ones_own_integers_and_scales():
    """Fused from float weights (Int8Quantizer: packed once at load) = each layer quantized alone, then fused."""
    from torch import nn

    from biglittle.runtime.quantize import FusedInt8

    torch.manual_seed(2)
    layers = [nn.Linear(32, size, bias=size != 8) for size in (8, 24, 16)]
    for layer, spread in zip(layers, (1.0, 30.0, 0.01)):  # very different ranges: one shared scale would show
        layer.weight.data *= spread
    together, alone = FusedInt8.of_float(layers), FusedInt8.of_int8([Int8Linear.from_module(one) for one in layers])
    assert torch.equal(together.product.integers(), alone.product.integers())
    assert torch.equal(together.product.scales, alone.product.scales)
    assert torch.equal(together.product.bias, alone.product.bias)
    x = torch.randn(3, 32)
    assert all(torch.equal(together.output(i, x), alone.output(i, x)) for i in range(3))
