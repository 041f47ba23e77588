"""BiLD threshold tuning: the selection rule, the expected cost, `tune-bild` end to end on the tiny pair
(resumable, stored per pair and task), and `generate --bild-thresholds auto` using what it stored."""

import json
from pathlib import Path

import pytest
from test_bench import source_as_prompt, toy_examples

from biglittle import BigLittleError
from biglittle.bench import format_tuning, tune_bild, tune_options
from biglittle.bench.threshold_search import prefill_steps, record_cost
from biglittle.cli import main
from biglittle.cost.bild_thresholds import (
    Candidate,
    choose,
    expected_cost,
    store_choice,
    thresholds_path,
    tuned_thresholds,
)
from biglittle.cost.profile import CostProfile
from biglittle.files import cache_dir

FIXTURES = Path(__file__).parent / "fixtures"
GRID = "0.4:0,0.8:0,0.2:8,0.4:3"  # rollback 0: exact BiLD; 0.2:8 lets the little model write nearly alone
FLAT = CostProfile(target_step_s=1.0, draft_step_s=0.5, verify_cost=[1.0] * 16, draft_verify_cost=[1.0] * 16)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Cost profiles and tuned thresholds go to a fresh cache per test, never the user's."""
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def flat_profile(decoder_pair):
    """A hand-made cost profile for the tiny pair, so expected costs are plain pass counts."""
    decoder_pair._profile = FLAT
    yield FLAT
    decoder_pair._profile = None


def candidate(fallback, rollback, quality, speedup):
    return Candidate(fallback, rollback, quality, speedup)


# --- the selection rule -------------------------------------------------------------------------


def test_choose_takes_the_fastest_pair_within_tolerance():
    candidates = [
        candidate(0.8, 0, 30.0, 0.9),
        candidate(0.4, 3, 29.1, 1.4),
        candidate(0.2, 5, 28.9, 1.9),
        candidate(0.6, 2, 29.5, 1.2),
    ]
    assert choose(candidates, baseline_quality=30.0, tolerance=1.0) == (candidates[1], True)  # 28.9 is 1.1 below
    assert choose(candidates, baseline_quality=30.0, tolerance=1.5) == (candidates[2], True)
    assert choose(candidates, baseline_quality=30.0, tolerance=0.0) == (candidates[0], True)
    assert choose(candidates, baseline_quality=29.0, tolerance=0.0) == (
        candidates[1],
        True,
    )  # above the big model counts


def test_choose_without_a_qualifying_pair_takes_the_highest_quality():
    candidates = [candidate(0.2, 5, 20.0, 2.0), candidate(0.4, 3, 24.0, 1.1), candidate(0.6, 2, 22.0, 1.5)]
    assert choose(candidates, baseline_quality=30.0, tolerance=1.0) == (candidates[1], False)


def test_choose_breaks_ties_towards_caution():
    fast_loose = [candidate(0.4, 5, 29.5, 1.3), candidate(0.4, 2, 29.5, 1.3)]  # same speed and quality
    fast_eager = [candidate(0.2, 2, 29.5, 1.3), candidate(0.6, 2, 29.5, 1.3)]
    better = [candidate(0.4, 2, 29.2, 1.3), candidate(0.4, 5, 29.8, 1.3)]
    for pairs, expected in ((fast_loose, (0.4, 2)), (fast_eager, (0.6, 2)), (better, (0.4, 5))):
        for order in (pairs, pairs[::-1]):  # whatever the grid's order
            choice, within = choose(order, baseline_quality=30.0, tolerance=1.0)
            assert (choice.fallback_threshold, choice.rollback_threshold) == expected and within
    tied_quality = [candidate(0.2, 5, 20.0, 2.0), candidate(0.6, 2, 20.0, 1.2)]
    assert choose(tied_quality, 30.0, 1.0)[0] == tied_quality[0]  # none qualifies: equal quality, the faster


def test_choose_with_nothing_to_choose_from_says_so():
    with pytest.raises(BigLittleError, match="no BiLD threshold pairs"):
        choose([], 30.0, 1.0)


# --- the expected cost --------------------------------------------------------------------------


def test_expected_cost_on_a_hand_made_profile():
    profile = CostProfile(
        target_step_s=0.4, draft_step_s=0.1, verify_cost=[1.0, 1.2, 1.5, 2.0], draft_verify_cost=[1.0, 1.1, 1.3, 1.6]
    )
    # Big passes: the prefill of 30 tokens (beyond the curve: 2.0 * 30 / 4), then k = 3, 1 and 6 (2.0 * 6 / 4);
    # little ones: the prefill (1.6 * 30 / 4), then k = 1, 2, 1, 1, each at c = 0.25.
    big, little = 15.0 + 1.5 + 1.0 + 3.0, 12.0 + 1.0 + 1.1 + 1.0 + 1.0
    assert expected_cost([30, 3, 1, 6], [30, 1, 2, 1, 1], profile) == pytest.approx(big + 0.25 * little)
    assert expected_cost([30, 1, 1, 1], [], profile) == pytest.approx(
        15.0 + 3.0
    )  # the big model alone: prefill + a step a token
    no_draft_curve = CostProfile(0.4, 0.1, [1.0, 1.2, 1.5, 2.0])
    assert expected_cost([30], [30, 2], no_draft_curve) == pytest.approx(
        15.0 + 0.25 * (15.0 + 1.2)
    )  # the target's curve stands in
    assert expected_cost([], [], profile) == 0.0


def test_prefills_are_measured_in_the_plain_runs_steps():
    def record(example, label, target_log, draft_log=()):
        return {
            "example_id": example,
            "setting": {"label": label},
            "target_call_log": target_log,
            "draft_call_log": list(draft_log),
        }

    # The plain run's one-token steps take 0.1 s (median), its prefill 0.8 s;
    # BiLD's prefills 1.0 s (big) and 0.3 s (little).
    records = [
        record("a", "Vanilla (large)", [(70, 0.8), (1, 0.1), (1, 0.1), (1, 0.5)]),
        record("a", "BiLD 0.6/5", [(70, 1.0), (5, 0.2)], [(70, 0.3), (1, 0.05)]),
        record("a", "BiLD 0.4/3", [(70, 0.9), (3, 0.2)], [(70, 0.3), (1, 0.05)]),
    ]
    assert prefill_steps(records) == {
        "a": (pytest.approx(9.0), pytest.approx(3.0))
    }  # medians: 0.9 s / 0.1, 0.3 s / 0.1


# --- tune-bild through the API, on the tiny pair ------------------------------------------------


def tune(pair, out_dir=None, on_record=None, n=3, grid=GRID):
    options = tune_options(
        "summarization", n=n, max_new_tokens=12, bild_grid=grid, out_dir=str(out_dir) if out_dir else None
    )
    return tune_bild(
        pair, toy_examples(n), options, prompt_builder=source_as_prompt, on_record=on_record, progress=False
    )


def records_of(directory) -> list[dict]:
    return [json.loads(line) for line in (Path(directory) / "records.jsonl").read_text().splitlines()]


def test_tuning_measures_the_grid_and_stores_the_fastest_pair_within_tolerance(decoder_pair, flat_profile):
    result = tune(decoder_pair)
    pairs = [(c["fallback_threshold"], c["rollback_threshold"]) for c in result["candidates"]]
    assert sorted(pairs) == sorted([(0.4, 0.0), (0.8, 0.0), (0.2, 8.0), (0.4, 3.0), (0.6, 5.0)])  # + the default
    records = records_of(result["records"])
    assert len(records) == 3 * (1 + len(pairs))  # the big model alone and every pair, on every example, once

    by_label = {}
    prefills = prefill_steps(records)
    assert set(prefills) == {r["example_id"] for r in records} and all(big > 0 for big, _ in prefills.values())

    def cost(record):
        return record_cost(record, FLAT, prefills[record["example_id"]])

    for record in records:
        by_label.setdefault(record["setting"]["label"], []).append(record)
        stats = record["stats"]  # on the flat profile a generation costs its prefills, then a step a pass
        big_prefill, little_prefill = prefills[record["example_id"]]
        expected = big_prefill + stats["target_calls"] - 1
        if stats["draft_calls"]:
            expected += little_prefill + 0.5 * (stats["draft_calls"] - 1)
        assert cost(record) == pytest.approx(expected)
    baseline_cost = sum(cost(r) for r in by_label["Vanilla (large)"])
    for c in result["candidates"]:
        label = f"BiLD {c['fallback_threshold']:g}/{c['rollback_threshold']:g}"
        assert c["expected_speedup"] == pytest.approx(baseline_cost / sum(cost(r) for r in by_label[label]))
        assert c["measured_speedup"] > 0
        if c["rollback_threshold"] == 0:  # exact BiLD gives the big model's greedy output, so its quality
            assert c["quality"] == pytest.approx(result["baseline_quality"])
            assert [r["token_ids"] for r in by_label[label]] == [r["token_ids"] for r in by_label["Vanilla (large)"]]
    speeds = {(c["fallback_threshold"], c["rollback_threshold"]): c["expected_speedup"] for c in result["candidates"]}
    assert speeds[0.2, 8.0] > speeds[0.8, 0.0]  # the little model writing more is cheaper: the costs are not all alike

    best, within = choose([Candidate(**c) for c in result["candidates"]], result["baseline_quality"], 1.0)
    assert result["choice"] == best.__dict__ and result["within_tolerance"] == within is True
    stored = json.loads(Path(result["path"]).read_text())["summarization"]
    assert (stored["fallback_threshold"], stored["rollback_threshold"]) == (
        best.fallback_threshold,
        best.rollback_threshold,
    )
    assert stored["examples"] == 3 and stored["tolerance"] == 1.0 and len(stored["candidates"]) == 5
    assert (
        decoder_pair.tuned_bild_thresholds()
        == decoder_pair.tuned_bild_thresholds("summarization")
        == (best.fallback_threshold, best.rollback_threshold)
    )

    table = format_tuning(result)
    assert "the big model alone scores ROUGE-L" in table and f"stored in {result['path']}" in table
    assert sum(line.startswith("*") for line in table.splitlines()) == 1


def test_tuning_resumes_after_an_interruption_and_ends_like_a_complete_run(decoder_pair, flat_profile, tmp_path):
    complete = tune(decoder_pair, tmp_path / "complete", n=2, grid="0.4:0,0.2:8")
    first = []

    def interrupt_after_three(record):
        first.append(record)
        if len(first) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(decoder_pair, tmp_path / "resumed", on_record=interrupt_after_three, n=2, grid="0.4:0,0.2:8")
    assert len(records_of(tmp_path / "resumed")) == 3
    second = []
    resumed = tune(decoder_pair, tmp_path / "resumed", on_record=second.append, n=2, grid="0.4:0,0.2:8")

    def key(record):
        return record["example_id"], record["setting"]["label"]

    assert not {key(r) for r in first} & {key(r) for r in second}  # nothing ran twice
    lines = records_of(tmp_path / "resumed")
    assert len(lines) == len({key(r) for r in lines}) == len(records_of(tmp_path / "complete")) == 3 + len(second)

    def deterministic(result):  # everything but what depends on timings (wall times, the measured prefills)
        return [{k: v for k, v in c.items() if not k.endswith("speedup")} for c in result["candidates"]]

    assert deterministic(resumed) == deterministic(complete)


def test_tuning_needs_a_little_model(tiny_models):
    from biglittle import load_pair

    with pytest.raises(BigLittleError, match="pass --draft as well as --target"):
        tune(load_pair(tiny_models["llama_target"]))


# --- the stored choice ---------------------------------------------------------------------------


def store_for(pair, task, fallback, rollback):
    store_choice(
        thresholds_path(cache_dir(), pair.identity()),
        task,
        {"fallback_threshold": fallback, "rollback_threshold": rollback},
    )


def test_generation_uses_the_stored_thresholds(decoder_pair):
    store_for(decoder_pair, "translation", 0.1, 5.0)  # the little model writes most tokens
    tuned = decoder_pair.generate("the cat", method="bild", bild_thresholds="auto", max_new_tokens=20)
    explicit = decoder_pair.generate(
        "the cat", method="bild", fallback_threshold=0.1, rollback_threshold=5.0, max_new_tokens=20
    )
    default = decoder_pair.generate("the cat", method="bild", max_new_tokens=20)
    assert tuned.token_ids == explicit.token_ids
    assert tuned.stats.proposed == explicit.stats.proposed != default.stats.proposed  # not the defaults

    store_for(decoder_pair, "summarization", 1.0, 5.0)  # fallback 1: the big model writes every token
    with pytest.raises(BigLittleError, match="tuned for summarization and translation: say which"):
        decoder_pair.generate("the cat", method="bild", bild_thresholds="auto")
    by_task = decoder_pair.generate("the cat", method="bild", bild_thresholds="auto:summarization", max_new_tokens=20)
    assert by_task.stats.proposed == 0 and by_task.stats.fallbacks == by_task.stats.target_calls


def test_thresholds_are_kept_per_pair_and_task(tmp_path):
    path = tmp_path / "choice.json"
    with pytest.raises(BigLittleError, match="run `biglittle tune-bild --task TASK`"):
        tuned_thresholds(path)
    store_choice(path, "translation", {"fallback_threshold": 0.4, "rollback_threshold": 3.0})
    assert tuned_thresholds(path) == tuned_thresholds(path, "translation") == (0.4, 3.0)
    with pytest.raises(BigLittleError, match="no tuned BiLD thresholds for summarization .*tuned: translation"):
        tuned_thresholds(path, "summarization")
    assert thresholds_path(tmp_path, ["big", "fp32", "cpu", "little"]) != thresholds_path(
        tmp_path, ["big", "int8", "cpu", "little"]
    )
    path.write_text("{not json")
    with pytest.raises(BigLittleError, match="delete it and run `biglittle tune-bild` again"):
        tuned_thresholds(path)


# --- the command line ---------------------------------------------------------------------------


def run_cli(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_tunes_on_dev_data_stores_and_generate_uses_it(capsys, tiny_models, tmp_path):
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"]]
    command = [
        "tune-bild",
        "--task",
        "translation",
        "--n",
        2,
        "--max-new-tokens",
        6,
        "--bild-grid",
        "0.4:0,0.2:8",
        "--data-path",
        FIXTURES / "ding-de-en.txt",
        "--out",
        tmp_path / "records",
        *models,
    ]
    code, out, err = run_cli(capsys, *command)
    assert code == 0, err
    assert "BiLD thresholds for translation on 2 dev examples" in out and "chosen (*): --fallback-threshold" in out
    fallback, rollback = (
        float(out.split(flag)[1].split()[0].rstrip(","))
        for flag in ("chosen (*): --fallback-threshold ", "--rollback-threshold ")
    )
    assert len(records_of(tmp_path / "records")) == 2 * 4  # big alone, 0.4/0, 0.2/8 and the default 0.6/5

    code, again, err = run_cli(capsys, *command)  # a rerun resumes: nothing left to generate
    assert code == 0 and len(records_of(tmp_path / "records")) == 8 and again == out

    generate = ["generate", *models, "--max-new-tokens", 20, "--json", "the dog"]
    code, tuned, err = run_cli(capsys, *generate[:1], "--bild-thresholds", "auto", *generate[1:])
    assert code == 0, err
    code, explicit, err = run_cli(
        capsys,
        *generate[:1],
        "--method",
        "bild",
        "--fallback-threshold",
        fallback,
        "--rollback-threshold",
        rollback,
        *generate[1:],
    )
    tuned, explicit = json.loads(tuned), json.loads(explicit)
    assert tuned["stats"]["method"] == "bild"  # --bild-thresholds implies --method bild
    assert tuned["token_ids"] == explicit["token_ids"]
    for key in ("proposed", "accepted", "fallbacks", "rollbacks", "target_calls", "draft_calls"):
        assert tuned["stats"][key] == explicit["stats"][key], key


TUNE_BAD = {
    "unknown task": (["--task", "poetry"], "unknown task 'poetry'"),
    "all tasks": (["--task", "all"], "one task at a time"),
    "zero examples": (["--task", "translation", "--n", "0"], "--n must be at least 1"),
    "negative tolerance": (["--task", "translation", "--tolerance", "-1"], "--tolerance must be >= 0"),
    "infinite tolerance": (["--task", "translation", "--tolerance", "inf"], "--tolerance must be >= 0"),
    "grid without colon": (["--task", "translation", "--bild-grid", "0.6-5"], "is not FALLBACK:ROLLBACK"),
    "grid fallback above one": (["--task", "translation", "--bild-grid", "1.5:3"], "fallback threshold in [0, 1]"),
}


@pytest.mark.parametrize("case", list(TUNE_BAD), ids=list(TUNE_BAD))
def test_tune_bild_rejects_bad_input_in_one_line(capsys, tiny_models, tmp_path, case):
    extra, message = TUNE_BAD[case]
    code, _, err = run_cli(
        capsys,
        "tune-bild",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        "--data-path",
        FIXTURES / "ding-de-en.txt",
        "--out",
        tmp_path / "out",
        *extra,
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("biglittle: error: ") and message in err, err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_tune_bild_without_a_little_model_says_so(capsys, tiny_models, tmp_path):
    code, _, err = run_cli(
        capsys,
        "tune-bild",
        "--task",
        "translation",
        "--target",
        tiny_models["llama_target"],
        "--data-path",
        FIXTURES / "ding-de-en.txt",
        "--out",
        tmp_path / "out",
    )
    assert code == 2 and err.count("\n") == 1 and "pass --draft as well as --target" in err, err


def test_tune_bild_says_how_to_fetch_missing_data(capsys, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr("biglittle.data.sources.SYSTEM_DING", tmp_path / "no-system-copy")
    code, _, err = run_cli(
        capsys,
        "tune-bild",
        "--task",
        "translation",
        "--cache-dir",
        tmp_path / "empty",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
    )
    assert code == 2 and err.count("\n") == 1 and "biglittle data fetch" in err, err


GENERATE_BAD = {
    "not auto": (["--bild-thresholds", "0.6:5"], "bild-thresholds must be auto or auto:TASK"),
    "unknown task": (["--bild-thresholds", "auto:poetry"], "bild-thresholds must be auto or auto:TASK"),
    "another method": (["--method", "speculative", "--bild-thresholds", "auto"], "applies to --method bild only"),
    "nothing stored": (["--bild-thresholds", "auto"], "run `biglittle tune-bild --task TASK`"),
    "task not stored": (["--bild-thresholds", "auto:summarization"], "run `biglittle tune-bild --task summarization`"),
}


@pytest.mark.parametrize("case", list(GENERATE_BAD), ids=list(GENERATE_BAD))
def test_generate_rejects_bad_or_missing_thresholds_in_one_line(capsys, tiny_models, case):
    extra, message = GENERATE_BAD[case]
    code, out, err = run_cli(
        capsys,
        "generate",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        *extra,
        "the cat",
    )
    assert code == 2 and not out and err.count("\n") == 1 and err.startswith("biglittle: error: ") and message in err, (
        err
    )
