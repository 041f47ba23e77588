"""`biglittle bench` on a tiny hand-made code task: sandbox verdicts in the records, pass@1, bootstrap
intervals, output lengths and prefill share, each program run once (and never again on resume), the machine."""

import json

import pytest
from conftest import PROMPTS
from test_bench import toy_examples

import biglittle.data.code
from biglittle import BigLittleError
from biglittle.bench import resolve_options, run_benchmark
from biglittle.bench.run import Executor
from biglittle.data import CodeExample
from biglittle.data.metrics import pass_at_1
from biglittle.sandbox import VERDICTS

# The toy models write toy sentences, not Python: each "program" holds the answer in a string (the prompt
# opens it, the test closes it) and checks it. One test always passes, one always fails, one raises, and
# one passes or not depending on what the model wrote.
CHECKS = ["assert True", "assert False", "candidate(ANSWER).missing", "assert 'dog' in ANSWER"]
OPTIONS = {"families": "small,speculative,ngram", "gammas": "2", "max_new_tokens": 12}
EXACT = ["speculative γ=2 T=0", "speculative γ=auto T=0", "ngram γ=2", "hybrid γ=2"]


def toy_code_problems() -> list[CodeExample]:
    return [
        CodeExample(
            f"toy-code-{i}",
            f"# {PROMPTS[i]}\nANSWER = '''",
            "",
            test=f"'''\n\ndef check(candidate):\n    {check}\n",
            entry_point="len",
        )
        for i, check in enumerate(CHECKS)
    ]


def toy_prompt(task, source, tokenizer):
    return source.splitlines()[0][2:] if task == "code" else source


class Spy:
    """Counts the sandbox's executions, and fails if one happens while a generation is being timed."""

    def __init__(self, monkeypatch):
        self.programs, self.generating = [], False
        real_run, real_generate = biglittle.data.code.run_program, Executor.run

        def run_program(program, limits):
            assert not self.generating, "the tests ran inside a generation's timing"
            self.programs.append(program)
            return real_run(program, limits)

        def generate(executor, *args, **kwargs):
            self.generating = True
            try:
                return real_generate(executor, *args, **kwargs)
            finally:
                self.generating = False

        monkeypatch.setattr(biglittle.data.code, "run_program", run_program)
        monkeypatch.setattr(Executor, "run", generate)


def run(pair, out, on_record=None):
    options = resolve_options("all", quick=True, out_dir=str(out), **OPTIONS)
    examples = {"code": toy_code_problems(), "translation": toy_examples(2)}
    return run_benchmark(pair, examples, options, prompt_builder=toy_prompt, progress=False, on_record=on_record)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))


@pytest.fixture(scope="module")
def code_run(decoder_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-code")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGLITTLE_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))
        spy = Spy(patch)
        results = run(decoder_pair, out)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return results, out, records, spy


def rows_of(results, task):
    return {row["label"]: row for row in results["aggregates"] if row["task"] == task}


def test_records_carry_the_verdicts_and_pass_at_1_is_computed_from_them(code_run):
    results, _, records, spy = code_run
    code = [r for r in records if r["task"] == "code"]
    assert all(r["execution"]["verdict"] in VERDICTS and len(r["execution"]["program_sha256"]) == 64 for r in code)
    assert not any("execution" in r for r in records if r["task"] == "translation")
    baseline = [r for r in code if r["setting"]["label"] == "Vanilla (large)"]
    by_problem = {r["example_id"]: r["execution"]["verdict"] for r in baseline}
    assert [by_problem[f"toy-code-{i}"] for i in range(3)] == ["passed", "failed", "error"]
    # each distinct program ran once, in the sandbox, after its generation's timing (the spy checks that)
    assert len(spy.programs) == len({r["execution"]["program_sha256"] for r in code}) < len(code)
    for label, row in rows_of(results, "code").items():
        mine = [r for r in code if r["setting"]["label"] == label]
        assert row["metric"] == "pass_at_1"
        assert row["quality"] == pytest.approx(pass_at_1([r["execution"]["verdict"] == "passed" for r in mine]))
        assert sum(row["verdicts"].values()) == len(mine) and row["verdicts"]["error"] >= 1
    assert results["metadata"]["sandbox"]["user"]  # which guards held


def test_exact_methods_have_the_big_models_tokens_and_pass_at_1(code_run):
    results, _, records, _ = code_run
    rows = rows_of(results, "code")
    baseline = rows["Vanilla (large)"]
    for label in EXACT:
        row = rows[label]
        assert row["agreement"]["exact_match"] == 1.0 and row["quality"] == baseline["quality"], label
        assert row["verdicts"] == baseline["verdicts"]
        intervals = row["intervals"]
        assert intervals["difference"] == 0 and intervals["difference_interval"] == [0.0, 0.0]
        assert intervals["distinguishable"] is False


def test_intervals_contain_their_estimates(code_run):
    results, _, _, _ = code_run
    for row in results["aggregates"]:
        intervals = row["intervals"]
        low, high = intervals["quality"]
        assert low <= row["quality"] <= high, row["label"]
        low, high = intervals["speedup"]
        assert low <= row["speedup"]["total"] <= high, row["label"]
        low, high = intervals["difference_interval"]
        assert low <= intervals["difference"] <= high and intervals["examples"] == row["examples"]


def test_lengths_and_prefill_share(code_run):
    results, _, records, _ = code_run
    for row in results["aggregates"]:
        mine = [r for r in records if r["task"] == row["task"] and r["setting"]["label"] == row["label"]]
        lengths = row["lengths"]
        assert lengths["new_tokens_mean"] == pytest.approx(sum(r["new_tokens"] for r in mine) / len(mine))
        assert lengths["prompt_tokens_mean"] > 0 and 0 < lengths["prefill_share"] < 1
        prefill = sum(r["target_call_log"][0][1] + sum(s for _, s in r["draft_call_log"][:1]) for r in mine)
        assert lengths["prefill_share"] == pytest.approx(prefill / sum(r["wall_time_s"] for r in mine))


def test_report_shows_intervals_verdicts_lengths_and_the_machine(code_run):
    results, out, _, _ = code_run
    report = (out / "report.md").read_text()
    cpu = results["metadata"]["machine"]["cpu"]
    for text in (
        "## code (pass@1)",
        "### Tests (each answer's program run once in the sandbox)",
        "| pass@1 [95% CI] | Δ vs large [95% CI] |",
        "+0.0 [+0.0, +0.0] ≈",
        "prefill share",
        "reading the prompt (prefill) takes",
        f"- Machine: {cpu['model']}",
        "torch kernels: ",
        "- Code ran in the sandbox",
        "at most 12 (code), 12 (translation) new tokens",
    ):
        assert text in report, text
    assert results["metadata"]["machine"]["torch_cpu_capability"]


def test_resume_runs_no_program_twice(decoder_pair, tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    seen = []

    def interrupt(record):
        seen.append(record)
        if sum(r["task"] == "code" for r in seen) == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(decoder_pair, tmp_path, on_record=interrupt)
    first = len(spy.programs)
    run(decoder_pair, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    distinct = {r["execution"]["program_sha256"] for r in records if r["task"] == "code"}
    assert 0 < first < len(spy.programs) == len(set(spy.programs)) == len(distinct)
    run(decoder_pair, tmp_path)  # complete: nothing generated, nothing executed
    assert len(spy.programs) == len(distinct)


def test_a_run_is_not_resumed_on_another_machine(decoder_pair, tmp_path, monkeypatch):
    options = resolve_options("translation", quick=True, out_dir=str(tmp_path), families="speculative", gammas="2")
    examples = {"translation": toy_examples(1)}
    run_benchmark(decoder_pair, examples, options, prompt_builder=toy_prompt, progress=False)
    monkeypatch.setattr("biglittle.bench.harness.cpu", lambda: {"model": "Other CPU", "flags": ["avx2"]})
    with pytest.raises(BigLittleError, match="Other CPU"):
        run_benchmark(decoder_pair, examples, options, prompt_builder=toy_prompt, progress=False)
