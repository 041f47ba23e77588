"""The bench rows of the seeds' remaining experiments: BiLD's ablations, unigram and bigram drafts, and an extra
draft with another tokenizer, end to end on the tiny models."""

import json

import pytest
from test_bench import by_label, source_as_prompt, toy_examples, toy_text

from biglittle import load_pair
from biglittle.bench import resolve_options, run_benchmark
from biglittle.bench.report import summary_rows
from biglittle.bench.settings import Setting, build_settings


@pytest.fixture(scope="module")
def seeds_run(tiny_models, cross_models, tmp_path_factory):
    """One task, two toy examples: BiLD and its ablations, the trivial drafts, and the word-piece draft as an extra."""
    out = tmp_path_factory.mktemp("bench-seeds")
    pair = load_pair(cross_models["target"], tiny_models["gpt2_draft"])  # the target whose tokenizer reads its text
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGLITTLE_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))
        options = resolve_options(
            "translation",
            quick=True,
            out_dir=str(out / "run"),
            max_new_tokens=12,
            gammas="2",
            bild_grid="0.6:5",
            families="bild,ablations,trivial",
            extra_drafts=[f"pieces={cross_models['draft']}"],
            draft_text=toy_text(out),
        )
        results = run_benchmark(
            pair,
            {"translation": toy_examples(2)},
            options,
            prompt_builder=source_as_prompt,
            command="pytest",
            progress=False,
        )
    records = [json.loads(line) for line in (out / "run" / "records.jsonl").read_text().splitlines()]
    return results, out / "run", records


def test_the_rows_of_the_seeds_remaining_experiments(seeds_run):
    results, _, _ = seeds_run
    rows = by_label(results, "translation")
    assert list(rows) == [
        "Vanilla (large)",
        "BiLD 0.6/5",
        "BiLD fallback only 0.6",
        "BiLD rollback only 5",
        *(f"{d} γ=2 T={t}" for d in ("unigram", "bigram") for t in (0, 1)),
        "pieces: speculative γ=2 T=0",
        "pieces: speculative γ=2 T=1",  # no BiLD rows: its little model must share the target's tokenizer
    ]
    for label in ("unigram γ=2 T=0", "bigram γ=2 T=0", "pieces: speculative γ=2 T=0"):
        assert rows[label]["agreement"]["exact_match"] == 1.0, label
        mechanism = rows[label]["mechanism"]
        assert 0 <= mechanism["alpha"] <= 1 and mechanism["predicted_speedup"] > 0 and mechanism["c"] >= 0, label
    assert rows["bigram γ=2 T=0"]["mechanism"]["c"] < rows["pieces: speculative γ=2 T=0"]["mechanism"]["c"]
    assert rows["BiLD fallback only 0.6"]["mechanism"]["rollbacks_per_token"] == 0
    picks = {name: row["label"] for name, row in summary_rows(results["aggregates"])}
    assert picks["BiLD (fallback only)"] == "BiLD fallback only 0.6"
    assert picks["BiLD (rollback only)"] == "BiLD rollback only 5"
    assert picks["Bigram (best)"].startswith("bigram") and picks["pieces: speculative (best)"].startswith("pieces")


def test_records_say_which_policy_and_which_text(seeds_run):
    _, _, records = seeds_run
    settings = {record["setting"]["label"]: record["setting"] for record in records}
    assert settings["BiLD fallback only 0.6"]["rollback"] is False and "fallback" not in settings["BiLD 0.6/5"]
    assert settings["bigram γ=2 T=1"]["draft_text"].endswith("toy-draft-text.txt")
    assert settings["pieces: speculative γ=2 T=0"]["cross_tokenizer"] is True
    fallback_only = [r for r in records if r["setting"]["label"] == "BiLD fallback only 0.6"]
    assert all(r["stats"]["rollbacks"] == 0 for r in fallback_only)
    rollback_only = [r for r in records if r["setting"]["label"] == "BiLD rollback only 5"]
    assert all(
        max(n for n, count in enumerate(r["stats"]["accepted_length_histogram"]) if count) <= 10 for r in rollback_only
    )


def test_report_has_leviathans_table_of_trivial_drafts(seeds_run):
    _, out, _ = seeds_run
    report = (out / "report.md").read_text()
    for text in (
        "### Drafts that cost nothing (Leviathan et al., table 3)",
        "| draft | T | α γ=2 | speedup γ=2 |",
        "| bigram | 1 |",
        "| BiLD (fallback only) | BiLD fallback only 0.6 |",
        "| BiLD (rollback only) | BiLD rollback only 5 |",
        "| pieces (own tokenizer) | 2 | 1 |",
    ):
        assert text in report, text


def test_trivial_drafts_default_to_the_tasks_train_split():
    setting = next(s for s in build_settings(resolve_options("translation", quick=True)) if s.drafter == "bigram")
    assert setting.draft_text is None and setting.config(8, 0, "summarization").draft_text == "summarization"
    assert Setting("x", "trivial", drafter="unigram", draft_text="/f.txt").config(8, 0, "translation").draft_text == (
        "/f.txt"
    )
    assert "draft_text" not in Setting("BiLD 0.6/5", "bild", method="bild").params()  # old records keep their keys
