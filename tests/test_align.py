"""Prediction alignment on tiny models: calibration data (valid, resumable), training that measurably
raises the draft's agreement with its target, exact resumption from a checkpoint, the merged model
as a draft, and one-line errors from the command line.

The target is the tiny Llama and the draft the tiny GPT-2 of conftest, both trained on the toy
grammar: they agree on about three quarters of the target's greedy tokens for toy prompts, and
the target's greedy continuations are a deterministic function of the prompt that the draft can learn.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import SEQ2SEQ_PROMPTS, sentence
from safetensors.torch import load_file

from biglittle import load_pair
from biglittle.align import (
    CalibSettings,
    TrainSettings,
    evaluate_drafts,
    generate_calibration,
    read_calibration,
    train_draft,
)
from biglittle.align import calib as calib_module
from biglittle.align.records import LINES
from biglittle.align.teacher import output_logits
from biglittle.align.train import CHECKPOINT, alignment_loss
from biglittle.cli import main
from biglittle.errors import BigLittleError
from biglittle.runtime.models import load_model

FIXTURES = Path(__file__).parent / "fixtures"
MAX_NEW = 12
ATTENTION = "transformer.h.0.attn.c_attn.weight"  # a weight LoRA adapts


def toy_prompts(seed: int, count: int, exclude=()) -> list[tuple[str, str]]:
    """(id, prompt) pairs: distinct proper prefixes of grammar sentences, none of `exclude`."""
    rng, prompts = random.Random(seed), []
    while len(prompts) < count:
        words = sentence(rng)
        prompt = " ".join(words[: rng.randint(1, len(words) - 1)])
        if prompt not in prompts and prompt not in exclude:
            prompts.append(prompt)
    return [(f"{seed}-{i}", prompt) for i, prompt in enumerate(prompts)]


TRAIN_PROMPTS = toy_prompts(10, 30)
HELD_OUT_PROMPTS = toy_prompts(11, 16, exclude={p for _, p in TRAIN_PROMPTS})
CALIB = CalibSettings(task="toy", max_new_tokens=MAX_NEW, top_k_logits=4)
# A learning rate far above a real model's: the tiny draft must learn from 30 examples in 2 epochs.
FAST = TrainSettings(epochs=2, lr=1e-2, lora_rank=4)


@pytest.fixture(scope="module")
def target_pair(tiny_models):
    return load_pair(tiny_models["llama_target"])


@pytest.fixture(scope="module")
def calib_dirs(tmp_path_factory, target_pair):
    root = tmp_path_factory.mktemp("calib")
    generate_calibration(target_pair, TRAIN_PROMPTS, root / "train", CALIB, progress=False)
    generate_calibration(target_pair, HELD_OUT_PROMPTS, root / "test", CALIB, progress=False)
    return {"train": root / "train", "test": root / "test"}


@pytest.fixture(scope="module")
def aligned_dir(tmp_path_factory, tiny_models, calib_dirs):
    out = tmp_path_factory.mktemp("aligned") / "draft"
    train_draft(load_model(tiny_models["gpt2_draft"]), calib_dirs["train"], out, FAST, progress=False)
    return out


def interrupt_at(stop_step: int):
    """An on_step callback that stops training like Ctrl-C after `stop_step` steps."""

    def on_step(step, loss):
        if step == stop_step:
            raise KeyboardInterrupt

    return on_step


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- calibration data


def test_calibration_lines_hold_the_targets_greedy_outputs(target_pair, calib_dirs):
    meta, records = read_calibration(calib_dirs["train"])
    assert meta["max_new_tokens"] == MAX_NEW and meta["top_k_logits"] == 4
    assert [r["id"] for r in records] == [i for i, _ in TRAIN_PROMPTS]
    for record, (_, prompt) in zip(records, TRAIN_PROMPTS):
        expected = target_pair.generate(prompt, method="ar", max_new_tokens=MAX_NEW)
        assert record["prompt"] == prompt and record["prompt_ids"] == target_pair.encode(prompt)
        assert record["output_ids"] == expected.token_ids and record["output"] == expected.text
        assert_top_k_is_the_targets(target_pair, record, k=4)


def assert_top_k_is_the_targets(pair, record, k):
    """Stored top-K = a fresh teacher-forced forward's; greedy: the top token is the one written."""
    assert [top[0] for top in record["top_ids"]] == record["output_ids"]
    with torch.inference_mode():
        logits = output_logits(pair.target.model, record["prompt_ids"], record["output_ids"])
    top = torch.log_softmax(logits, -1).topk(k)
    assert record["top_ids"] == top.indices.tolist()
    assert torch.allclose(torch.tensor(record["top_logprobs"]), top.values, atol=1e-3)


def test_encoder_decoder_calibration(tmp_path, seq2seq_pair):
    prompts = [(str(i), p) for i, p in enumerate(SEQ2SEQ_PROMPTS)]
    generate_calibration(
        seq2seq_pair, prompts, tmp_path, CalibSettings(task="toy", max_new_tokens=8, top_k_logits=3), progress=False
    )
    _, records = read_calibration(tmp_path)
    for record, (_, prompt) in zip(records, prompts):
        assert record["output_ids"] == seq2seq_pair.generate(prompt, method="ar", max_new_tokens=8).token_ids
        assert_top_k_is_the_targets(seq2seq_pair, record, k=3)


def test_calibration_resumes_after_an_interruption_without_duplicates(tmp_path, monkeypatch, target_pair, calib_dirs):
    real_record, calls = calib_module.calibration_record, []

    def interrupted_after_three(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real_record(*args)

    monkeypatch.setattr(calib_module, "calibration_record", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        generate_calibration(target_pair, TRAIN_PROMPTS, tmp_path, CALIB, progress=False)
    monkeypatch.setattr(calib_module, "calibration_record", real_record)
    assert len((tmp_path / LINES).read_text().splitlines()) == 3
    with open(tmp_path / LINES, "a") as fh:
        fh.write('{"id": "half a line from a crash')  # a write cut off mid-line
    result = generate_calibration(target_pair, TRAIN_PROMPTS, tmp_path, CALIB, progress=False)
    assert result == {"done": len(TRAIN_PROMPTS), "new": len(TRAIN_PROMPTS) - 3}
    resumed = (tmp_path / LINES).read_text().splitlines()
    full = (calib_dirs["train"] / LINES).read_text().splitlines()
    assert [json.loads(line) for line in resumed] == [json.loads(line) for line in full]


def test_calibration_refuses_to_mix_settings(tmp_path, target_pair):
    generate_calibration(target_pair, TRAIN_PROMPTS[:1], tmp_path, CALIB, progress=False)
    with pytest.raises(BigLittleError, match="other settings.*max_new_tokens"):
        generate_calibration(
            target_pair,
            TRAIN_PROMPTS[:2],
            tmp_path,
            CalibSettings(task="toy", max_new_tokens=5, top_k_logits=4),
            progress=False,
        )


# --------------------------------------------------------------------------- training


def test_alignment_raises_agreement_and_acceptance_on_held_out_prompts(
    tiny_models, target_pair, calib_dirs, aligned_dir
):
    _, held_out = read_calibration(calib_dirs["test"])
    drafts = {"before": load_model(tiny_models["gpt2_draft"]), "after": load_model(str(aligned_dir))}
    results = evaluate_drafts(target_pair.target, drafts, held_out, gamma=4, max_new_tokens=MAX_NEW, progress=False)
    before, after = results["before"], results["after"]
    # Before: 0.73 of the target's tokens (after: 1.0). A 10-point rise is far above any numerical
    # jitter and far below what the draft reaches (nearly all), so it fails only if alignment fails.
    assert before["agreement"] < 0.9
    assert after["agreement"] >= before["agreement"] + 0.10, results
    assert after["acceptance_rate"] >= before["acceptance_rate"] + 0.10, results


def test_the_aligned_model_loads_as_a_draft_and_speculative_stays_exact(tiny_models, aligned_dir):
    pair = load_pair(tiny_models["llama_target"], str(aligned_dir))
    for _, prompt in HELD_OUT_PROMPTS[:4]:
        ar = pair.generate(prompt, method="ar", max_new_tokens=MAX_NEW)
        speculative = pair.generate(prompt, method="speculative", gamma=3, max_new_tokens=MAX_NEW)
        assert speculative.token_ids == ar.token_ids
    summary = json.loads((aligned_dir / "align.json").read_text())
    assert summary["mode"] == "lora" and summary["steps"] == 2 * len(TRAIN_PROMPTS)
    assert not (aligned_dir / CHECKPOINT).exists()  # removed once the model is written


def test_training_resumes_from_its_checkpoint_with_the_same_result(tmp_path, tiny_models, calib_dirs):
    # GPT-2's dropout is on while training: equal weights also need the random state restored.
    settings = TrainSettings(epochs=1, lr=1e-2, lora_rank=4, max_steps=10, save_every=4, kl_weight=0.5)
    train_draft(
        load_model(tiny_models["gpt2_draft"]), calib_dirs["train"], tmp_path / "straight", settings, progress=False
    )

    with pytest.raises(KeyboardInterrupt):
        train_draft(
            load_model(tiny_models["gpt2_draft"]),
            calib_dirs["train"],
            tmp_path / "resumed",
            settings,
            on_step=interrupt_at(6),
            progress=False,
        )
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["step"] == 4
    steps = []
    summary = train_draft(
        load_model(tiny_models["gpt2_draft"]),
        calib_dirs["train"],
        tmp_path / "resumed",
        settings,
        on_step=lambda step, loss: steps.append(step),
        progress=False,
    )
    assert summary["resumed_from_step"] == 4 and steps == list(range(5, 11))
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    # The same operations on the same values: equal up to float rounding (observed: bit-identical).
    assert all(torch.allclose(straight[k], resumed[k], rtol=0, atol=1e-6) for k in straight)
    original = load_file(Path(tiny_models["gpt2_draft"]) / "model.safetensors")
    assert not torch.allclose(straight[ATTENTION], original[ATTENTION])  # it did train


def test_a_resumed_run_with_other_settings_is_refused(tmp_path, tiny_models, calib_dirs):
    settings = TrainSettings(epochs=1, lr=1e-2, lora_rank=4, save_every=2)
    with pytest.raises(KeyboardInterrupt):
        train_draft(
            load_model(tiny_models["gpt2_draft"]),
            calib_dirs["train"],
            tmp_path,
            settings,
            progress=False,
            on_step=interrupt_at(2),
        )
    with pytest.raises(BigLittleError, match="other settings"):
        train_draft(
            load_model(tiny_models["gpt2_draft"]),
            calib_dirs["train"],
            tmp_path,
            TrainSettings(epochs=1, lr=5e-3),
            progress=False,
        )


def test_alignment_loss_is_cross_entropy_plus_a_kl_to_the_renormalised_top_k():
    target_top = torch.tensor([[0.6, 0.3]])  # the target's top-2 of 4 tokens; renormalised: 2/3, 1/3
    record = {"output_ids": [0], "top_ids": [[0, 1]], "top_logprobs": target_top.log().tolist()}
    matching = torch.tensor([[2 / 3, 1 / 3, 1e-9, 1e-9]]).log()  # the draft equals the renormalised top-K
    cross_entropy = -torch.log_softmax(matching, -1)[0, 0]
    assert alignment_loss(matching, record, kl_weight=0.0) == pytest.approx(float(cross_entropy), abs=1e-6)
    assert alignment_loss(matching, record, kl_weight=1.0) == pytest.approx(float(cross_entropy), abs=1e-6)
    uniform = torch.zeros(1, 4)
    expected_kl = (2 / 3) * torch.log(torch.tensor((2 / 3) / 0.25)) + (1 / 3) * torch.log(torch.tensor((1 / 3) / 0.25))
    assert alignment_loss(uniform, record, 2.0) - alignment_loss(uniform, record, 0.0) == pytest.approx(
        2 * float(expected_kl), abs=1e-5
    )


# --------------------------------------------------------------------------- command line


def test_cli_calib_on_task_data_then_full_training_then_eval(capsys, tmp_path, tiny_models, calib_dirs, aligned_dir):
    code, out, err = run_cli(
        capsys,
        "align",
        "calib",
        "--target",
        tiny_models["llama_target"],
        "--task",
        "translation",
        "--n",
        3,
        "--out",
        tmp_path / "calib",
        "--data-path",
        FIXTURES / "ding-de-en.txt",
        "--max-new-tokens",
        5,
    )
    assert code == 0, err
    meta, records = read_calibration(tmp_path / "calib")
    assert meta["task"] == "translation" and meta["split"] == "train" and len(records) == 3
    assert all(r["prompt"].startswith("Translate German to English:") for r in records)

    code, out, err = run_cli(
        capsys,
        "align",
        "train",
        "--draft",
        tiny_models["gpt2_draft"],
        "--data",
        tmp_path / "calib",
        "--out",
        tmp_path / "full",
        "--full",
        "--max-steps",
        2,
    )
    assert code == 0, err
    assert "full, 2 steps" in out
    load_pair(tiny_models["llama_target"], str(tmp_path / "full"))  # a model directory --draft accepts

    code, out, err = run_cli(
        capsys,
        "align",
        "eval",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        "--aligned",
        aligned_dir,
        "--data",
        calib_dirs["test"],
        "--n",
        4,
        "--json",
    )
    assert code == 0, err
    results = json.loads(out)
    assert set(results) == {"unaligned", "aligned"} and results["aligned"]["examples"] == 4
    assert results["aligned"]["agreement"] > results["unaligned"]["agreement"]


BAD_INPUTS = {
    "calib n zero": (["calib", "--task", "translation", "--n", "0", "--out", "{tmp}/c"], "n must be at least 1"),
    "calib negative top-k": (
        ["calib", "--task", "translation", "--n", "2", "--out", "{tmp}/c", "--top-k-logits", "-1"],
        "top-k-logits must be >= 0",
    ),
    "calib negative temperature": (
        ["calib", "--task", "translation", "--n", "2", "--out", "{tmp}/c", "--temperature", "-1"],
        "temperature must be >= 0",
    ),
    "train missing data": (
        ["train", "--data", "{tmp}/nothing", "--out", "{tmp}/o", "--draft", "{draft}"],
        "calibration data not found",
    ),
    "train lora rank zero": (
        ["train", "--data", "{data}", "--out", "{tmp}/o", "--lora-rank", "0"],
        "lora-rank must be at least 1",
    ),
    "train negative lr": (["train", "--data", "{data}", "--out", "{tmp}/o", "--lr", "-1"], "lr must be > 0"),
    "train zero epochs": (
        ["train", "--data", "{data}", "--out", "{tmp}/o", "--epochs", "0"],
        "epochs must be at least 1",
    ),
    "train kl without top-k": (
        ["train", "--data", "{no_top_k}", "--out", "{tmp}/o", "--draft", "{draft}", "--kl-weight", "1"],
        "needs the target's top-K logits",
    ),
    "train other tokenizer": (
        ["train", "--data", "{data}", "--out", "{tmp}/o", "--draft", "{other}"],
        "does not share the tokenizer",
    ),
    "train into a finished model": (
        ["train", "--data", "{data}", "--out", "{aligned}", "--draft", "{draft}"],
        "already holds an aligned model",
    ),
    "eval missing data": (["eval", "--data", "{tmp}/nothing", "--aligned", "{aligned}"], "calibration data not found"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_gives_a_one_line_error(
    capsys, tmp_path, tiny_models, other_vocab_model, calib_dirs, aligned_dir, case
):
    argv, message = BAD_INPUTS[case]
    no_top_k = tmp_path / "no_top_k"
    if "{no_top_k}" in argv:
        generate_calibration(
            load_pair(tiny_models["llama_target"]),
            TRAIN_PROMPTS[:2],
            no_top_k,
            CalibSettings(task="toy", max_new_tokens=3),
            progress=False,
        )
    values = {
        "tmp": tmp_path,
        "data": calib_dirs["train"],
        "draft": tiny_models["gpt2_draft"],
        "other": other_vocab_model,
        "aligned": aligned_dir,
        "no_top_k": no_top_k,
    }
    code, out, err = run_cli(capsys, "align", *(arg.format(**values) for arg in argv))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("biglittle: error: ") and message in err, err


def test_train_offers_only_precisions_gradients_flow_through(capsys):
    from biglittle.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["align", "train", "--data", "d", "--out", "o", "--precision", "int8"])
    assert exit_info.value.code == 2 and "invalid choice: 'int8'" in capsys.readouterr().err
