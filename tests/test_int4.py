"""int4 precision: 4-bit weights (a GGUF's own Q4_K blocks where it has them), batch-invariant scoring, refusals."""

import copy
import json
import os
import random

import numpy as np
import pytest
import torch
from conftest import PROMPTS, VOCAB
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize, quantize
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, get_gguf_hf_weights_map

from biglittle import load_pair
from biglittle.cli import main
from biglittle.errors import BigLittleError
from biglittle.runtime import cpu
from biglittle.runtime.gguf_weights import decode_q4_k, source_gguf
from biglittle.runtime.int4 import Int4DraftLinear, Int4Linear, quantize_model_int4
from biglittle.runtime.models import apply_precision, load_model
from biglittle.runtime.quantize import (
    ROWWISE_ATTENTION,
    FusedPart,
    Int8Linear,
    draft_precision,
    precision_of,
    scoring_gap,
    weight_bytes,
)
from biglittle.runtime.restricted_vocab import RestrictedHead
from biglittle.runtime.runner import ModelRunner

BF16_STEP = 2.0**-8  # bf16's relative rounding error bound (8 bits of mantissa, rounded to nearest)


def random_ids(count, seed):
    rng = random.Random(seed)
    return [rng.randrange(4, len(VOCAB)) for _ in range(count)]


def q4_k_blocks(rows: int, columns: int, seed: int) -> np.ndarray:
    """Random Q4_K rows (uint8 [rows, columns / 256 * 144]) with small positive fp16 scales d and dmin."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (rows * columns // 256, 144), dtype=np.uint8)
    for start in (0, 2):  # d, then dmin
        blocks[:, start : start + 2] = (
            rng.uniform(1e-3, 1e-2, len(blocks)).astype(np.float16).view(np.uint8).reshape(-1, 2)
        )
    return blocks.reshape(rows, -1)


@pytest.fixture(scope="module")
def int4_pair(tiny_models):
    return load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"], dtype="int4")


def test_q4_k_blocks_decode_to_what_gguf_dequantizes():
    blocks = q4_k_blocks(8, 512, seed=0)
    decoded = decode_q4_k(blocks)
    assert decoded.integers.dtype == torch.uint8 and int(decoded.integers.max()) <= 15
    assert decoded.scales.shape == decoded.mins.shape == (8, 512 // 32)
    assert np.array_equal(decoded.dequantize().numpy(), dequantize(blocks, GGMLQuantizationType.Q4_K))


def test_a_layer_from_q4_k_blocks_keeps_their_integers_and_rounds_only_the_scales():
    weights = decode_q4_k(q4_k_blocks(24, 256, seed=1))  # 24 rows: padded to the kernel's 32 inside
    layer = Int4Linear.from_q4(weights, None)
    assert torch.equal(layer.integers(), weights.integers.float())
    reference = weights.dequantize()
    scales = weights.scales.repeat_interleave(32, dim=1)
    zeros = (8 * weights.scales - weights.mins).repeat_interleave(32, dim=1)
    assert ((layer.weight - reference).abs() <= BF16_STEP * (15 * scales + zeros.abs()) + 1e-9).all()
    rows = torch.randn(5, 256)
    expected = rows.bfloat16().double() @ reference.double().t()
    assert (layer(rows) - expected).abs().max() < 0.01 * expected.abs().max()


def test_group_wise_four_bits_round_each_weight_to_its_nearest_step():
    weight = torch.randn(48, 96) * torch.linspace(0.1, 3.0, 48)[:, None]  # rows of unlike ranges
    layer = Int4Linear.from_weight(weight, torch.randn(48))
    groups = weight.reshape(48, 3, 32)
    step = ((groups.amax(-1) - groups.amin(-1)) / 15).repeat_interleave(32, dim=1)
    zero = groups.amin(-1).abs().repeat_interleave(32, dim=1) + 8 * step
    assert ((layer.weight - weight).abs() <= step / 2 + BF16_STEP * (zero + 8 * step) + 1e-6).all()
    assert (layer.weight - weight).abs().max() > step.min() / 8  # it did quantize
    rows = torch.randn(4, 96)
    expected = rows @ weight.t() + layer.bias
    assert (layer(rows) - expected).norm() / expected.norm() < 0.1


def test_int4_layers_score_rows_alike_alone_or_together():
    layer = Int4Linear.from_weight(torch.randn(80, 256), torch.randn(80))
    rows = torch.randn(9, 256) * torch.tensor([1.0, 5.0, 0.2, 1.0, 30.0, 1.0, 2.0, 0.5, 1.0])[:, None]
    together = layer(rows)
    assert torch.equal(together, torch.cat([layer(rows[i : i + 1]) for i in range(len(rows))]))


def test_weight_bytes_count_four_bits_and_the_groups_scales(int4_pair):
    assert weight_bytes(Int4Linear.from_weight(torch.randn(32, 64), None)) == 32 * 64 // 2 + 32 * 2 * 2 * 2
    assert weight_bytes(int4_pair.target.model) < weight_bytes(load_pair(int4_pair.target.name).target.model) / 6


def test_int4_models_score_tokens_alike_alone_or_together(int4_pair):
    """The big model's scores (a little model's passes over many rows run on int8: they need not be, and are not)."""
    model = int4_pair.target.model
    assert precision_of(model) == precision_of(int4_pair.draft.model) == "int4"
    assert model.config._attn_implementation == ROWWISE_ATTENTION  # sdpa happens to pass on models this small
    runner = ModelRunner(model, len(VOCAB))
    for length, k in ((3, 2), (10, 5), (25, 8)):
        assert scoring_gap(runner, random_ids(length, seed=length), random_ids(k, seed=100 + k)) == 0.0


def test_int4_layers_replace_every_linear_layer_and_stay_close_to_fp32(tiny_models, int4_pair):
    fp32 = load_model(tiny_models["llama_target"]).model
    int4 = int4_pair.target.model
    assert not any(isinstance(m, (torch.nn.Linear, Int8Linear)) for m in int4.modules())  # sizes are multiples of 32
    assert torch.equal(int4.get_input_embeddings().weight, fp32.get_input_embeddings().weight)
    batch = torch.tensor([random_ids(20, seed=seed) for seed in range(8)])
    with torch.no_grad():
        reference, quantized = fp32(batch).logits, int4(batch).logits
    assert (quantized - reference).abs().max() < 0.15 * (reference.max() - reference.min())
    assert (quantized.argmax(-1) == reference.argmax(-1)).float().mean() > 0.85


@pytest.mark.parametrize("gamma", [1, 3, 8])
def test_greedy_speculative_equals_greedy_ar_at_int4(int4_pair, gamma):
    proposed = accepted = 0
    for prompt in PROMPTS:
        ar = int4_pair.generate(prompt, method="ar", max_new_tokens=30)
        spec = int4_pair.generate(prompt, method="speculative", gamma=gamma, max_new_tokens=30)
        assert spec.token_ids == ar.token_ids, prompt
        proposed, accepted = proposed + spec.stats.proposed, accepted + spec.stats.accepted
    assert 0 < accepted < proposed  # drafts both accepted and rejected: the identity was tested


def test_greedy_trees_and_bild_equal_greedy_ar_at_int4(int4_pair):
    rollbacks = 0
    for prompt in PROMPTS:
        ar = int4_pair.generate(prompt, method="ar", max_new_tokens=30)
        tree = int4_pair.generate(prompt, method="speculative", tree=6, tree_depth=3, tree_width=2, max_new_tokens=30)
        bild = int4_pair.generate(prompt, method="bild", rollback_threshold=0.0, max_new_tokens=30)
        assert tree.token_ids == ar.token_ids == bild.token_ids, prompt
        rollbacks += bild.stats.rollbacks
    assert rollbacks > 0


def test_a_restricted_int4_output_layer_keeps_the_rows_integers(int4_pair):
    head = int4_pair.draft.model.get_output_embeddings()
    kept = torch.tensor([0, 3, 7, 11, 20])
    restricted = RestrictedHead(head, kept)
    assert isinstance(restricted.scores, Int4Linear) and restricted.scores.out_features == len(kept)
    rows = torch.randn(3, head.in_features)
    assert torch.equal(restricted.scores(rows), head(rows)[:, kept])


def write_gguf(path, tensors):
    writer = GGUFWriter(str(path), "llama")
    for name, (data, kind) in tensors.items():
        writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_llama(tmp_path):
    """(a one-layer Llama, the GGUF it was loaded from, each Q4_K matrix's integers in transformers' order): the GGUF
    holds its matrices in Q4_K, the MLP's gate and up and the output layer in Q8_0 (more bits than 4)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    processor = TENSOR_PROCESSORS["llama"](config=config.to_dict())
    parameters = dict(model.named_parameters())
    tensors, integers = {}, {}
    for seed, (gguf_name, hf_name) in enumerate(get_gguf_hf_weights_map(model).items()):
        if hf_name not in parameters or parameters[hf_name].dim() != 2 or "embed" in hf_name:
            continue
        rows, columns = parameters[hf_name].shape
        if hf_name == "lm_head.weight" or "mlp.gate" in hf_name or "mlp.up" in hf_name:
            q8 = quantize(parameters[hf_name].detach().numpy(), GGMLQuantizationType.Q8_0)
            tensors[gguf_name] = (q8, GGMLQuantizationType.Q8_0)
            continue
        blocks = q4_k_blocks(rows, columns, seed)
        tensors[gguf_name] = (blocks, GGMLQuantizationType.Q4_K)
        as_loaded = processor.process(weights=dequantize(blocks, GGMLQuantizationType.Q4_K), name=gguf_name).weights
        parameters[hf_name].data.copy_(torch.from_numpy(np.ascontiguousarray(as_loaded)))
        order = processor.process(weights=decode_q4_k(blocks).integers.numpy(), name=gguf_name).weights
        integers[hf_name.removesuffix(".weight")] = torch.from_numpy(np.ascontiguousarray(order)).float()
    path = tmp_path / "tiny.gguf"
    write_gguf(path, tensors)
    return model, path, integers


def test_a_gguf_s_own_q4_k_blocks_are_taken_where_they_are_the_model_s_weights(tmp_path):
    """The matrices come from the blocks, with the query and key rows put back in transformers' order."""
    model, path, integers = gguf_llama(tmp_path)
    model.model.layers[0].self_attn.v_proj.weight.data[0, 0] += 1e-3  # no longer the GGUF's: quantized from fp32

    with pytest.warns(UserWarning, match="v_proj.weight: the GGUF's Q4_K blocks differ"):
        report = quantize_model_int4(model, path)
    wider = ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "lm_head"]  # Q8_0: more bits than 4
    assert report.int8 == wider and isinstance(model.lm_head, Int8Linear)
    assert isinstance(model.model.layers[0].mlp.gate_proj, FusedPart)  # int8 gate and up share one product
    assert report.from_fp32 == ["model.layers.0.self_attn.v_proj"]
    assert sorted(report.from_gguf) == sorted(name for name in integers if "v_proj" not in name)
    for name in report.from_gguf:
        assert torch.equal(model.get_submodule(name).integers(), integers[name]), name
    runner = ModelRunner(model, len(VOCAB))
    assert scoring_gap(runner, random_ids(6, seed=1), random_ids(4, seed=2)) == 0.0


def test_a_gguf_s_blocks_are_kept_beside_it_and_read_back_while_the_file_is_unchanged(tmp_path, monkeypatch):
    from biglittle.runtime import gguf_weights

    model, path, _ = gguf_llama(tmp_path)
    names = {name for name, _ in model.named_parameters()}
    fresh = gguf_weights.read_gguf_weights(path, model, names)
    assert fresh.q4 and fresh.other_types and not gguf_weights.kept_blocks_path(path).exists()  # kept only if asked
    assert same_weights(gguf_weights.read_gguf_weights(path, model, names, keep=True), fresh)
    parsed = []
    real = gguf_weights._read_gguf
    monkeypatch.setattr(gguf_weights, "_read_gguf", lambda *args: parsed.append(1) or real(*args))

    assert same_weights(gguf_weights.read_gguf_weights(path, model, names, keep=True), fresh) and not parsed
    some = {next(iter(fresh.q4)), next(iter(fresh.other_types))}
    assert same_weights(gguf_weights.read_gguf_weights(path, model, some, keep=True), fresh.only(some))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # the file changed: read again, kept again
    assert same_weights(gguf_weights.read_gguf_weights(path, model, names, keep=True), fresh) and len(parsed) == 1
    assert same_weights(gguf_weights.read_gguf_weights(path, model, names, keep=True), fresh) and len(parsed) == 1
    gguf_weights.kept_blocks_path(path).write_bytes(b"damaged")
    assert same_weights(gguf_weights.read_gguf_weights(path, model, names, keep=True), fresh) and len(parsed) == 2


def same_weights(one, other) -> bool:
    fields = ("integers", "scales", "mins")
    return (
        one.other_types == other.other_types
        and one.q4.keys() == other.q4.keys()
        and all(torch.equal(getattr(one.q4[n], f), getattr(other.q4[n], f)) for n in one.q4 for f in fields)
    )


def test_the_gguf_beside_a_fetched_model_is_found(tmp_path):
    model = tmp_path / "models" / "little"
    model.mkdir(parents=True)
    (model / ".biglittle-complete.json").write_text('{"gguf_file": "little-q4_k_m.gguf"}')
    with pytest.warns(UserWarning, match="little-q4_k_m.gguf is not kept"):
        assert source_gguf(str(model)) is None
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / "little-q4_k_m.gguf").write_bytes(b"GGUF")
    assert source_gguf(str(model)) == tmp_path / "gguf" / "little-q4_k_m.gguf"
    assert source_gguf(str(tmp_path / "gguf" / "little-q4_k_m.gguf")) == tmp_path / "gguf" / "little-q4_k_m.gguf"
    assert source_gguf(str(tmp_path)) is None  # a directory of no fetched model


def test_the_command_line_generates_at_int4(tiny_models, int4_pair, capsys):
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"]]
    args = ["generate", *models, "--json", "--precision", "int4", "--method", "speculative", "--max-new-tokens", "12"]
    assert main([*args, "the old man"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["token_ids"] == int4_pair.generate("the old man", method="ar", max_new_tokens=12).token_ids


def test_int4_on_a_gpu_is_refused_before_loading(tiny_models, capsys):
    args = ["generate", "--target", tiny_models["llama_target"], "--precision", "int4", "--device", "cuda", "the cat"]
    assert main(args) == 2
    assert "int4 runs on the CPU only" in capsys.readouterr().err


def test_int4_is_refused_where_the_probe_finds_its_kernel_wrong(tiny_models, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu, "_probe", lambda: dict.fromkeys(cpu.KEYS, True) | {"int4": False})
    cpu.capabilities.cache_clear()
    try:
        with pytest.raises(BigLittleError, match="int4 kernel does not run correctly on this CPU"):
            load_model(tiny_models["llama_target"], "int4")
        assert main(["generate", "--target", tiny_models["llama_target"], "--precision", "int4", "the cat"]) == 2
        assert "int4 kernel does not run correctly" in capsys.readouterr().err
    finally:
        cpu.capabilities.cache_clear()


def test_encoder_decoder_models_are_refused_at_int4(tiny_models):
    with pytest.raises(BigLittleError, match="int4 needs a model whose attention"):
        load_model(tiny_models["t5_target"], "int4")


def test_a_little_model_at_int4_is_four_bit_in_every_matrix_and_named_apart(tmp_path):
    """A draft's precision changes only its acceptance, so the matrices its GGUF holds in more bits become 4-bit too
    (25% faster a step for the 0.5B); its cost profile is kept under another name than a mixed int4 model's."""
    as_target, path, _ = gguf_llama(tmp_path)
    as_draft = copy.deepcopy(as_target)
    apply_precision(as_target, "int4", path)
    apply_precision(as_draft, "int4", path, all_int4=True)
    layers = {name: type(model.lm_head) for name, model in (("target", as_target), ("draft", as_draft))}
    assert layers == {"target": Int8Linear, "draft": Int4DraftLinear}
    assert not any(isinstance(module, Int8Linear) for module in as_draft.modules())
    assert not any(isinstance(module, Int4DraftLinear) for module in as_target.modules())  # a big model stays exact
    assert (draft_precision(as_target), draft_precision(as_draft)) == (
        "int4",
        "int4, every matrix, int8 over many rows",
    )
    assert precision_of(as_draft) == "int4"
    runner = ModelRunner(as_draft, len(VOCAB))  # passes over few rows (steps, tree levels) are all 4-bit
    assert scoring_gap(runner, random_ids(6, seed=1), random_ids(Int4DraftLinear.most_int4_rows, seed=2)) == 0.0


def test_load_draft_loads_a_little_model_as_a_draft(monkeypatch):
    import biglittle.api as api

    calls = []
    monkeypatch.setattr(api, "load_model", lambda *args, **kwargs: calls.append((args, kwargs)))
    api.load_draft("LITTLE", target=None, dtype="int4")
    assert calls == [(("LITTLE", "int4", "cpu"), {"as_draft": True})]


def test_a_little_model_in_int4_drafts_exactly_for_a_big_model_in_int8(tiny_models):
    """--draft-precision: each model loads in its own precision, and the output is the int8 big model's."""
    mixed = load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"], dtype="int8", draft_dtype="int4")
    assert precision_of(mixed.target.model) == "int8"
    assert draft_precision(mixed.draft.model) == "int4, every matrix, int8 over many rows"
    big = load_pair(mixed.target)
    for prompt in PROMPTS:
        ar = big.generate(prompt, method="ar", max_new_tokens=30)
        assert mixed.generate(prompt, method="speculative", gamma=3, max_new_tokens=30).token_ids == ar.token_ids


def test_draft_precision_is_refused_for_an_exit_made_of_the_big_models_layers(tiny_models, capsys):
    args = ["generate", "--target", tiny_models["llama_target"], "--draft", "early-exit:2", "--method"]
    assert main([*args, "speculative", "--precision", "int8", "--draft-precision", "int4", "the cat"]) == 2
    assert "leave --draft-precision out" in capsys.readouterr().err


def test_a_little_models_4_bit_layer_hands_passes_over_many_rows_to_int8():
    """Its few-row passes are the 4-bit kernel's, its many-row ones an int8 copy's, bit for bit."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48)
    split, four_bit, eight_bit = (
        Int4DraftLinear.for_draft(layer),
        Int4Linear.from_module(layer),
        Int8Linear.from_module(layer),
    )
    for rows in (1, Int4DraftLinear.most_int4_rows, Int4DraftLinear.most_int4_rows + 1, 16):
        x = torch.randn(1, rows, 64)
        expected = four_bit(x) if rows <= Int4DraftLinear.most_int4_rows else eight_bit(x)
        assert torch.equal(split(x), expected), rows
        assert not torch.equal(four_bit(x), eight_bit(x))  # the two copies are told apart
    assert weight_bytes(split) == weight_bytes(four_bit)  # a step reads the 4-bit weights only


@pytest.mark.parametrize("fastest", ["int4", "int8"])
def test_auto_may_make_a_little_model_4_bit_and_never_a_big_one(tiny_models, monkeypatch, fastest):
    def fake_time(layer, in_features, dtype, repeats):
        name = {Int4Linear: "int4", Int8Linear: "int8"}.get(type(layer), "float")
        return {fastest: 1.0, "int8": 1.5}.get(name, 2.0)

    monkeypatch.setattr("biglittle.runtime.quantize._time_rows", fake_time)
    little = load_model(tiny_models["llama_target"], "auto", as_draft=True).model
    big = load_model(tiny_models["llama_target"], "auto").model
    assert draft_precision(little) == {"int4": "int4, every matrix, int8 over many rows", "int8": "int8"}[fastest]
    assert precision_of(big) == "int8"


def test_a_little_models_int8_copies_of_one_inputs_projections_share_one_product(tiny_models):
    """q, k, v (and gate, up) make one int8 call over many rows, each giving what its own int8 layer gives."""
    little = load_model(tiny_models["llama_target"], "int4", as_draft=True).model
    fp32 = load_model(tiny_models["llama_target"]).model.model.layers[0].self_attn
    attention, mlp = little.model.layers[0].self_attn, little.model.layers[0].mlp
    assert len({id(layer._int8[0].fused) for layer in (attention.q_proj, attention.k_proj, attention.v_proj)}) == 1
    assert mlp.gate_proj._int8[0].fused is mlp.up_proj._int8[0].fused
    assert isinstance(attention.o_proj._int8[0], Int8Linear)  # reads its own input
    x = torch.randn(1, 6, attention.q_proj.in_features)  # six rows: the int8 copies
    for name in ("q_proj", "k_proj", "v_proj"):
        assert torch.equal(getattr(attention, name)(x), Int8Linear.from_module(getattr(fp32, name))(x)), name
