"""`biglittle bench` on the tiny models: outputs end to end, metric wiring, resume, interleaving, CLI errors."""

import json
import random
from datetime import datetime

import pytest
from conftest import PROMPTS, sentence
from fake_llamacpp import CRASHING_SERVER, PREDICTED_MS, PROMPT_MS, fake_build, requests_seen

from biglittle import BigLittleError
from biglittle.bench import resolve_options, run_benchmark
from biglittle.bench.aggregate import aggregate, token_agreement
from biglittle.bench.llamacpp import LlamaCppPeer
from biglittle.bench.report import summary_rows
from biglittle.bench.run import plan_jobs
from biglittle.bench.settings import build_settings
from biglittle.cli import main
from biglittle.data import Example
from biglittle.data.metrics import score

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TASKS = ("translation", "summarization")


def toy_examples(count: int) -> list[Example]:
    """Prompts in the toy grammar; each reference is a sentence of that grammar."""
    rng = random.Random(7)
    return [Example(f"toy-{i}", PROMPTS[i], " ".join(sentence(rng))) for i in range(count)]


def source_as_prompt(task, source, tokenizer):
    return source


def toy_text(folder) -> str:
    """A text file in the toy grammar, for the unigram and bigram drafts (the toy examples have no train split)."""
    path = folder / "toy-draft-text.txt"
    rng = random.Random(3)
    path.write_text("\n".join(" ".join(sentence(rng)) for _ in range(200)) + "\n")
    return str(path)


def bench(pair, out_dir, tasks=TASKS, llamacpp=None, **options):
    """A --quick run on two toy examples per task."""
    defaults = {"max_new_tokens": 12, "draft_text": toy_text(out_dir.parent)}
    opts = resolve_options("all", quick=True, out_dir=str(out_dir), **{**defaults, **options})
    return run_benchmark(
        pair,
        {task: toy_examples(2) for task in tasks},
        opts,
        prompt_builder=source_as_prompt,
        command="pytest",
        progress=False,
        llamacpp=llamacpp,
    )


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Cost profiles (measured for --gamma auto) go to a private cache, not the user's."""
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))


@pytest.fixture(scope="module")
def quick_run(decoder_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-quick")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIGLITTLE_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))
        results = bench(decoder_pair, out, extra_drafts=["exit-2=early-exit:2"])
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return results, out, records


def by_label(results, task):
    return {row["label"]: row for row in results["aggregates"] if row["task"] == task}


def test_quick_run_writes_valid_results(quick_run):
    results, out, records = quick_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    meta = on_disk["metadata"]
    for key in ("target", "draft", "precision", "machine", "commit", "command", "date", "repeats", "max_new_tokens"):
        assert key in meta
    for key in ("platform", "cpu_count", "torch_threads", "torch", "transformers"):
        assert key in meta["machine"]
    assert meta["precision"] == "fp32" and meta["command"] == "pytest"
    profile = on_disk["cost_profiles"]["main"]
    assert profile["verify_cost"][0] == 1.0 and profile["draft_cost"] > 0

    settings = build_settings(resolve_options("all", quick=True, extra_drafts=["exit-2=early-exit:2"]))
    settings = [s for s in settings if s.family != "llamacpp"]  # llama.cpp runs the built-in pair only
    assert len(records) == len(settings) * 2 * len(TASKS)  # every setting, example and task, once
    for task in TASKS:
        rows = by_label(on_disk, task)
        assert list(rows) == [s.label for s in settings]
        for row in rows.values():
            assert row["speedup"]["total"] > 0 and row["tokens_per_s"] > 0 and row["examples"] == 2
            assert row["metric"] == {"translation": "bleu", "summarization": "rouge_l"}[task]
        assert rows["Vanilla (large)"]["agreement"] == {"exact_match": 1.0, "token_agreement": 1.0}
        assert rows["Vanilla (large)"]["speedup"]["total"] == 1.0
        greedy_exact = [
            label
            for label, row in rows.items()
            if row["setting"]["temperature"] == 0
            and row["setting"]["method"] != "bild"
            and row["setting"]["model"] != "small"
        ]
        assert (
            "HF assisted" in greedy_exact
            and "exit-2: speculative γ=4 T=0" in greedy_exact
            and "ngram γ=2" in greedy_exact
            and {"tree auto (little model)", "tree auto (lookup)", "tree auto (merged)"} <= set(greedy_exact)
        )
        for label in greedy_exact:  # speculative at T=0 (any drafter) and the greedy peers give the target's tokens
            assert rows[label]["agreement"]["exact_match"] == 1.0, label
        spec = rows["speculative γ=2 T=0"]["mechanism"]
        assert 0 < spec["alpha"] <= 1 and spec["tokens_per_target_call"] > 1 and spec["predicted_speedup"] > 0
        assert spec["c"] > 0 and spec["verify_cost_ratio"] > 0 and len(spec["acceptance_by_position"]) == 2
        assert rows["BiLD 0.6/5"]["mechanism"]["fallbacks_per_token"] > 0
        tree = rows["tree auto (little model)"]["mechanism"]
        assert tree["tokens_per_target_call"] >= 1 and tree["draft_calls_per_target_call"] > 0
        assert all(first + others <= 1 for _, first, others in tree["accepted_by_depth"])


def test_records_hold_what_cost_estimates_need(quick_run):
    _, _, records = quick_run
    for record in records:
        for key in (
            "task",
            "example_id",
            "setting",
            "repeat",
            "text",
            "token_ids",
            "wall_time_s",
            "new_tokens",
            "stats",
            "target_call_log",
            "draft_call_log",
        ):
            assert key in record
        assert record["new_tokens"] == len(record["token_ids"]) and record["wall_time_s"] > 0
    speculative = [r for r in records if r["setting"]["label"] == "speculative γ=4 T=0"]
    assert all(r["target_call_log"] and r["draft_call_log"] for r in speculative)
    assert all(len(r["target_call_log"]) == r["stats"]["target_calls"] for r in speculative)


def test_report_and_plots(quick_run):
    results, out, _ = quick_run
    report = (out / "report.md").read_text()
    measured = datetime.fromisoformat(results["cost_profiles"]["main"]["measured_at"])  # a kept profile says when
    assert f"the profile kept for this machine, measured {measured.isoformat(timespec='minutes')})" in report
    for text in (
        "## translation (BLEU)",
        "## summarization (ROUGE-L)",
        "| Vanilla (large) | Vanilla (large) |",
        "| Vanilla (small) |",
        "| BiLD | BiLD 0.6/5 |",
        "| HF assisted generation |",
        "| Speculative (best) |",
        "| draft | γ | temperature | α | tokens / target pass | measured speedup | predicted speedup |",
        "### Mechanism",
        "| exit-2: speculative (best) |",
        "### Trees of proposals",
        "| Tree (best) |",
        "| Best exact (T=0) |",
        "| BiLD (exit-2) | exit-2: BiLD 0.6/5 |",
        "Command: `pytest`",
        "- llama.cpp: runs the built-in pair only (its GGUF files); this bench's pair is another",
    ):
        assert text in report, text
    assert "### llama.cpp" not in report
    for task in TASKS:
        for name in (f"quality_vs_speedup_{task}.png", f"speedup_by_gamma_{task}.png"):
            data = (out / name).read_bytes()
            assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
            assert f"]({name})" in report


def fake_peer(folder, server_script=None) -> tuple[LlamaCppPeer, object]:
    build = fake_build(folder, *([server_script] if server_script else []))
    return LlamaCppPeer.find(folder.parent.parent, 1, folder / "logs"), build


@pytest.fixture
def kept_ggufs(tmp_path, monkeypatch):
    """The peer's cache: the GGUF files it needs, as `models fetch --keep-gguf` leaves them (their sizes count)."""
    cache = tmp_path / "cache"
    monkeypatch.setattr("biglittle.runtime.fetch._is_kept", lambda root, spec: True)
    return cache


LLAMACPP_LABELS = ["llama.cpp plain", "llama.cpp speculative γ=4", "llama.cpp n-gram γ=4"]


def test_llamacpp_rows_with_its_own_ratios_and_agreement(decoder_pair, tmp_path, kept_ggufs):
    """Against a fake llama-server: its tokens and timings in the records, its own speedups and agreement."""
    peer, _ = fake_peer(kept_ggufs / "peers" / "llama.cpp")
    results = bench(decoder_pair, tmp_path / "out", tasks=("translation",), families="llamacpp", llamacpp=peer)
    rows = by_label(results, "translation")
    assert list(rows) == ["Vanilla (large)", *LLAMACPP_LABELS]
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    ngram_records = [r for r in records if r["setting"]["label"] == "llama.cpp n-gram γ=4"]
    assert all(r["stats"]["llamacpp"]["prompt_ms"] == PROMPT_MS and r["token_ids"] for r in ngram_records)
    plain, draft, ngram = (rows[label]["llamacpp"] for label in LLAMACPP_LABELS)
    assert plain["speedup_over_plain"] == 1.0 and plain["agreement_with_plain"]["exact_match"] == 1.0
    assert ngram["agreement_with_plain"]["exact_match"] == 1.0 and draft["agreement_with_plain"]["exact_match"] == 0.0
    expected = (PROMPT_MS + PREDICTED_MS["none"]) / (PROMPT_MS + PREDICTED_MS["ngram-simple"])
    assert ngram["speedup_over_plain_reported"] == pytest.approx(expected)
    tokens = sum(r["stats"]["llamacpp"]["predicted_n"] for r in ngram_records)
    assert ngram["decode_tokens_per_s"] == pytest.approx(tokens / (2 * PREDICTED_MS["ngram-simple"]) * 1000)
    assert rows["llama.cpp speculative γ=4"]["mechanism"]["alpha"] == 0.75  # its drafts: 3 of 4 accepted
    wall = sum(r["wall_time_s"] for r in ngram_records)
    assert rows["llama.cpp n-gram γ=4"]["lengths"]["prefill_share"] == pytest.approx(2 * PROMPT_MS / 1000 / wall)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "### llama.cpp" in report and "| llama.cpp n-gram γ=4 |" in report
    assert results["metadata"]["peers"]["llama.cpp"]["status"].startswith("llama.cpp: llama.cpp version: 0 (fake)")
    assert all(server.process is None for server in peer.servers.values())  # stopped at the end


def test_llamacpp_sends_the_prompt_ids_biglittle_runs(decoder_pair, tmp_path, kept_ggufs):
    peer, build = fake_peer(kept_ggufs / "peers" / "llama.cpp")
    bench(decoder_pair, tmp_path / "out", tasks=("translation",), families="llamacpp", llamacpp=peer)
    expected = [decoder_pair.encode(example.source) for example in toy_examples(2)]
    seen = [request["prompt"] for request in requests_seen(build) if request["n_predict"] == 12]
    assert sorted(seen) == sorted(expected * 3)  # every mode got exactly biglittle's ids of each example


def test_a_llamacpp_server_that_dies_leaves_the_bench_running(decoder_pair, tmp_path, kept_ggufs):
    peer, _ = fake_peer(kept_ggufs / "peers" / "llama.cpp", CRASHING_SERVER)
    results = bench(decoder_pair, tmp_path / "out", tasks=("translation",), families="llamacpp", llamacpp=peer)
    assert [row["label"] for row in results["aggregates"]] == ["Vanilla (large)"]
    failures = results["metadata"]["peers"]["llama.cpp"]["failures"]
    assert set(failures) == {"llamacpp-plain", "llamacpp-draft", "llamacpp-ngram"}
    assert all("killed by SIGILL (illegal instruction)" in reason for reason in failures.values())
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- failed: llama.cpp plain: llama-server killed by SIGILL (illegal instruction); see " in report


def test_the_bench_without_llamacpp_says_so(decoder_pair, tmp_path):
    peer = LlamaCppPeer.find(tmp_path / "empty-cache", 1, tmp_path)
    results = bench(decoder_pair, tmp_path / "out", tasks=("translation",), families="llamacpp", llamacpp=peer)
    assert [row["label"] for row in results["aggregates"]] == ["Vanilla (large)"]
    assert "- llama.cpp: not installed (make peers)" in (tmp_path / "out" / "report.md").read_text()
    fake_build(tmp_path / "empty-cache" / "peers" / "llama.cpp")
    peer = LlamaCppPeer.find(tmp_path / "empty-cache", 1, tmp_path)  # built, but the GGUF files were not kept
    assert "biglittle models fetch --keep-gguf" in peer.unavailable


def test_metric_wiring_on_known_strings(quick_run):
    _, _, records = quick_run
    settings = build_settings(resolve_options("all", quick=True, extra_drafts=["exit-2=early-exit:2"]))
    # References replaced by the big model's own greedy text: its outputs (and exact methods') score 100.
    greedy_text = {
        (r["task"], r["example_id"]): r["text"] for r in records if r["setting"]["label"] == "Vanilla (large)"
    }
    rescored = [{**r, "reference": greedy_text[r["task"], r["example_id"]]} for r in records]
    results = {"aggregates": aggregate(rescored, settings)}
    for task in TASKS:
        rows = by_label(results, task)
        assert rows["Vanilla (large)"]["quality"] == pytest.approx(100.0)
        assert rows["speculative γ=2 T=0"]["quality"] == pytest.approx(100.0)
        small = [r for r in rescored if r["task"] == task and r["setting"]["label"] == "Vanilla (small)"]
        expected = score(task, [r["text"] for r in small], [r["reference"] for r in small])
        assert rows["Vanilla (small)"]["quality"] == pytest.approx(next(iter(expected.values())))


def test_token_agreement_counts_positions_over_the_longer_output():
    assert token_agreement([5, 6, 7], [5, 6, 8, 9]) == 0.5
    assert token_agreement([], []) == 1.0 and token_agreement([1], []) == 0.0


def test_settings_are_interleaved_and_rotated_per_example():
    settings = build_settings(resolve_options("translation", quick=True, families="speculative"))
    examples = toy_examples(3)
    jobs = plan_jobs({"translation": examples}, settings, repeats=2)
    assert len(jobs) == len(settings) * 3 * 2
    per_block = [jobs[i : i + len(settings)] for i in range(0, len(jobs), len(settings))]
    for index, block in enumerate(per_block):
        assert len({job.example.id for job in block}) == 1  # one example at a time, every setting once
        assert {job.setting for job in block} == set(settings)
        assert block[0].setting == settings[(index % 3 + index // 3) % len(settings)]  # rotated by example and repeat


def test_resume_runs_nothing_twice_and_ends_like_a_complete_run(decoder_pair, tmp_path):
    small = {"families": "speculative", "gammas": "2", "max_new_tokens": 10}
    complete = bench(decoder_pair, tmp_path / "complete", tasks=("translation",), **small)

    out = tmp_path / "resumed"
    first = []

    def interrupt_after_three(record):
        first.append(record)
        if len(first) == 3:
            raise KeyboardInterrupt

    options = resolve_options("translation", quick=True, out_dir=str(out), **small)
    examples = {"translation": toy_examples(2)}
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(
            decoder_pair,
            examples,
            options,
            prompt_builder=source_as_prompt,
            progress=False,
            on_record=interrupt_after_three,
        )
    assert len((out / "records.jsonl").read_text().splitlines()) == 3
    with (out / "records.jsonl").open("a") as file:
        file.write('{"task": "translation", "example_id": "toy-1", "setting"')  # a record cut short by a kill

    second = []
    resumed = run_benchmark(
        decoder_pair, examples, options, prompt_builder=source_as_prompt, progress=False, on_record=second.append
    )

    def key(record):
        return record["example_id"], record["setting"]["label"], record["repeat"]

    assert not {key(r) for r in first} & {key(r) for r in second}
    lines = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    complete_lines = [json.loads(line) for line in (tmp_path / "complete" / "records.jsonl").read_text().splitlines()]
    assert len(lines) == len({key(r) for r in lines}) == len(complete_lines) == 3 + len(second)
    assert {key(r): r["token_ids"] for r in lines} == {key(r): r["token_ids"] for r in complete_lines}
    assert [row["label"] for row in resumed["aggregates"]] == [row["label"] for row in complete["aggregates"]]

    with pytest.raises(BigLittleError, match="max_new_tokens {.translation.: 10, .* -> {.translation.: 11"):
        run_benchmark(
            decoder_pair,
            examples,
            resolve_options("translation", quick=True, out_dir=str(out), **{**small, "max_new_tokens": 11}),
            prompt_builder=source_as_prompt,
            progress=False,
        )


BAD_ARGUMENTS = {
    "unknown task": (["--task", "poetry"], "unknown task 'poetry'"),
    "gamma zero": (["--gammas", "0,2"], "--gammas: '0'"),
    "gamma not a number": (["--gammas", "two"], "--gammas: 'two'"),
    "grid without colon": (["--bild-grid", "0.6-5"], "is not FALLBACK:ROLLBACK"),
    "grid fallback above one": (["--bild-grid", "1.5:3"], "fallback threshold in [0, 1]"),
    "unknown family": (["--families", "speculative,magic"], "--families: unknown magic"),
    "extra draft without label": (["--extra-draft", "early-exit:2"], "write LABEL=SPEC"),
    "extra draft bad early exit": (["--extra-draft", "x=early-exit:zero"], "early-exit:L with L a number"),
    "zero repeats": (["--repeats", "0"], "--repeats must be at least 1"),
    "unknown other precision": (["--also-precision", "int5"], "--also-precision: unknown precision 'int5'"),
    "other precision is the precision": (["--also-precision", "int4,fp32"], "that is --precision's already"),
    "zero examples": (["--n", "0"], "--n must be at least 1"),
    "new tokens for an unknown task": (["--max-new-tokens", "poetry=3"], "unknown task 'poetry'"),
    "new tokens not a number": (["--max-new-tokens", "code=many"], "'code=many' is not N or TASK=N"),
    "zero new tokens": (["--max-new-tokens", "code=0"], "--max-new-tokens must be at least 1"),
}


def test_new_tokens_per_task_and_for_every_task():
    assert resolve_options("all", quick=True, max_new_tokens="code=7").max_new_tokens == {
        "translation": 32,
        "summarization": 32,
        "code": 7,
    }
    assert set(resolve_options("all", max_new_tokens="5,code=9").max_new_tokens.values()) == {5, 9}
    assert set(resolve_options("all", max_new_tokens=5).max_new_tokens.values()) == {5}


def test_a_list_of_tasks():
    assert resolve_options("code,translation").tasks == ("code", "translation")
    with pytest.raises(BigLittleError, match="unknown task 'poetry'"):
        resolve_options("translation,poetry")


def test_also_precision_runs_the_pair_again_in_it_compared_with_its_own_big_model(decoder_pair, tmp_path):
    """int4 rows beside fp32's: exactness is judged against int4's own big model, speed against fp32's."""
    out = tmp_path / "bench"
    results = bench(decoder_pair, out, tasks=("translation",), families="small", also_precision="int4")
    rows = by_label(results, "translation")
    assert list(rows) == [
        "Vanilla (large)",
        "Vanilla (small)",
        "int4: Vanilla (large)",
        "int4: ngram γ=auto",
        "int4: speculative γ=auto T=0",
        "int4 little: speculative γ=auto T=0",
        "int4 little: hybrid γ=auto",
    ]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for row in rows.values():
        if row["setting"]["method"] == "speculative":
            assert row["agreement"]["exact_match"] == 1.0, row["label"]
    # The tiny target's tokens survive 4 bits; make int4's differ, as a real model's do, to see whose they are held to.
    for record in records:
        if record["setting"]["model"] == "int4":
            record["token_ids"] = [*record["token_ids"], 0]
    settings = build_settings(resolve_options("translation", quick=True, families="small", also_precision="int4"))
    agreed = {row["label"]: row["agreement"]["exact_match"] for row in aggregate(records, settings)}
    assert agreed["int4: ngram γ=auto"] == agreed["int4: speculative γ=auto T=0"] == 1.0  # with int4's big model
    assert agreed["int4: Vanilla (large)"] == 0.0  # int4's big model itself: with fp32's
    for row in ("int4 little: speculative γ=auto T=0", "int4 little: hybrid γ=auto"):
        assert agreed[row] == 1.0  # drafts for fp32's big model, so held to its tokens
    assert results["metadata"]["also_precisions"] == ["int4"]
    profiles = results["cost_profiles"]  # weights read per pass say which precision each pair's models are in
    assert profiles["int4"]["target_weight_bytes"] < profiles["main"]["target_weight_bytes"] / 4
    assert profiles["int4 little"]["target_weight_bytes"] == profiles["main"]["target_weight_bytes"]
    assert profiles["int4 little"]["draft_weight_bytes"] == profiles["int4"]["draft_weight_bytes"]
    assert profiles["int4"]["draft_weight_bytes"] < profiles["main"]["draft_weight_bytes"] / 4
    assert "Also in int4 (--also-precision)" in (out / "report.md").read_text()


def test_only_keeps_the_big_model_of_each_other_precision_whose_rows_it_keeps():
    def labels(only):
        return [s.label for s in build_settings(resolve_options("code", also_precision="int4", only=only))]

    assert labels("int4: ngram*") == ["Vanilla (large)", "int4: Vanilla (large)", "int4: ngram γ=auto"]
    assert labels("int4 little: s*") == ["Vanilla (large)", "int4 little: speculative γ=auto T=0"]


def test_only_keeps_the_baseline_and_the_matching_settings():
    settings = build_settings(resolve_options("all", quick=True, only="tree auto (l*,hybrid γ=2"))
    assert settings[0].label == "Vanilla (large)"
    assert sorted(s.label for s in settings[1:]) == ["hybrid γ=2", "tree auto (little model)", "tree auto (lookup)"]
    with pytest.raises(BigLittleError, match="matches no setting"):
        build_settings(resolve_options("all", quick=True, only="nothing like it*"))


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS), ids=list(BAD_ARGUMENTS))
def test_cli_rejects_bad_arguments_in_one_line(capsys, tiny_models, tmp_path, case):
    extra, message = BAD_ARGUMENTS[case]
    code = main(
        [
            "bench",
            "--target",
            tiny_models["llama_target"],
            "--draft",
            tiny_models["gpt2_draft"],
            "--out",
            str(tmp_path / "out"),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("biglittle: error: ") and message in err, err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_cli_says_how_to_fetch_missing_data(capsys, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr("biglittle.data.sources.SYSTEM_DING", tmp_path / "no-system-copy")
    code = main(
        [
            "bench",
            "--task",
            "translation",
            "--cache-dir",
            str(tmp_path / "empty"),
            "--target",
            tiny_models["llama_target"],
            "--draft",
            tiny_models["gpt2_draft"],
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "biglittle data fetch" in err, err


def test_cli_end_to_end_on_task_data(capsys, tiny_models, tmp_path):
    ding = tmp_path / "cache" / "data" / "trans-de-en" / "de-en"
    ding.parent.mkdir(parents=True)
    ding.write_text(
        "".join(f"Der Hund sieht den Ball Nummer {i}. :: the dog sees the ball number {i}.\n" for i in range(12))
    )
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "--task",
            "translation",
            "--quick",
            "--n",
            "2",
            "--max-new-tokens",
            "6",
            "--families",
            "bild",
            "--bild-grid",
            "0.6:5",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--target",
            tiny_models["llama_target"],
            "--draft",
            tiny_models["gpt2_draft"],
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"report: {out / 'report.md'}" in captured.out
    results = json.loads((out / "results.json").read_text())
    assert [row["label"] for row in results["aggregates"]] == ["Vanilla (large)", "BiLD 0.6/5"]
    assert all(row["examples"] == 2 for row in results["aggregates"])


def _row(label, model, method, quality, speedup, family=None):
    return {
        "label": label,
        "family": family or ("extra" if model != "main" else method),
        "setting": {"model": model, "method": method, "drafter": "model", "temperature": 0},
        "quality": quality,
        "speedup": {"total": speedup},
    }


def test_summary_picks_the_fastest_bild_within_one_point_for_each_draft():
    rows = [
        _row("Vanilla (large)", "main", "ar", 20.0, 1.0),
        _row("BiLD 0.6/5", "main", "bild", 19.5, 1.1),
        _row("BiLD 0.4/3", "main", "bild", 19.2, 1.4),
        _row("BiLD 0.2/9", "main", "bild", 18.9, 2.0),  # fastest, but 1.1 points below: not "degraded"
        _row("aligned: BiLD 0.6/5", "aligned", "bild", 20.1, 1.2),
        _row("aligned: BiLD 0.4/3", "aligned", "bild", 19.0, 1.6),
    ]
    picks = {name: row["label"] for name, row in summary_rows(rows)}
    assert picks["BiLD"] == "BiLD 0.6/5" and picks["BiLD degraded"] == "BiLD 0.4/3"
    assert (
        picks["BiLD (aligned)"] == "aligned: BiLD 0.6/5" and picks["BiLD (aligned) degraded"] == "aligned: BiLD 0.4/3"
    )


def test_summary_keeps_chains_and_trees_of_one_drafter_apart():
    chain, tree = (
        _row("hybrid γ=4", "main", "speculative", 20.0, 1.2, "ngram"),
        _row("tree auto (merged)", "main", "speculative", 20.0, 1.4, "trees"),
    )
    chain["setting"]["drafter"] = tree["setting"]["drafter"] = "hybrid"
    tree["setting"]["tree"] = "auto"
    picks = {
        name: row["label"]
        for name, row in summary_rows([_row("Vanilla (large)", "main", "ar", 20.0, 1.0), chain, tree])
    }
    assert picks["Hybrid (best)"] == "hybrid γ=4" and picks["Tree (best)"] == "tree auto (merged)"


def test_a_resumed_run_refuses_another_commit_unless_told_and_another_draft_vocabulary(
    decoder_pair, tmp_path, monkeypatch
):
    small = {"families": "speculative", "gammas": "2", "max_new_tokens": 6}
    monkeypatch.setattr("biglittle.bench.harness.code_version", lambda: "abc123")
    bench(decoder_pair, tmp_path, tasks=("translation",), **small)
    monkeypatch.setattr("biglittle.bench.harness.code_version", lambda: "def456")
    with pytest.raises(BigLittleError, match="code at abc123, this is def456; pass --allow-other-commit"):
        bench(decoder_pair, tmp_path, tasks=("translation",), **small)
    results = bench(decoder_pair, tmp_path, tasks=("translation",), allow_other_commit=True, **small)
    assert results["metadata"]["commit"] == "def456" and results["metadata"]["record_commits"] == ["abc123"]
    assert {json.loads(line)["commit"] for line in (tmp_path / "records.jsonl").read_text().splitlines()} == {"abc123"}

    monkeypatch.setattr("biglittle.bench.harness.logit_rows", lambda model: 7)  # as with --draft-vocab
    with pytest.raises(BigLittleError, match="draft_vocab 32 -> 7"):
        bench(decoder_pair, tmp_path, tasks=("translation",), allow_other_commit=True, **small)


def test_a_run_names_the_little_models_own_precision_and_is_not_resumed_with_another(decoder_pair, tmp_path):
    small = {"families": "speculative", "gammas": "2", "max_new_tokens": 6, "tasks": ("translation",)}
    bench(decoder_pair, tmp_path, precision="fp32", **small)
    with pytest.raises(BigLittleError, match="draft_precision None -> 'int4'"):
        bench(decoder_pair, tmp_path, precision="fp32", draft_precision="int4", **small)
    results = bench(decoder_pair, tmp_path / "mixed", precision="fp32", draft_precision="int4", **small)
    assert "precision fp32 (the draft's int4)" in (tmp_path / "mixed" / "report.md").read_text()
    assert results["metadata"]["draft_precision"] == "int4"
