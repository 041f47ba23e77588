"""The command line: output formats, and one-line errors with a non-zero exit for bad input."""

import io
import json
import subprocess
import sys

import pytest

from biglittle.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_has_the_promised_keys(capsys, tiny_models):
    code, out, err = run_cli(
        capsys,
        "generate",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        "--method",
        "speculative",
        "--gamma",
        "3",
        "--json",
        "the cat",
    )
    assert code == 0
    record = json.loads(out)  # exactly one JSON object
    assert set(record) == {"text", "token_ids", "stats"}
    for key in (
        "new_tokens",
        "target_calls",
        "draft_calls",
        "proposed",
        "accepted",
        "acceptance_rate",
        "fallbacks",
        "rollbacks",
        "wall_time_s",
        "tokens_per_s",
    ):
        assert key in record["stats"]
    assert record["stats"]["new_tokens"] == len(record["token_ids"]) > 0


def test_text_output_and_compare_ar(capsys, tiny_models):
    code, out, err = run_cli(
        capsys,
        "generate",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        "--compare-ar",
        "--max-new-tokens",
        "20",
        "the dog",
    )
    assert code == 0 and out.strip()
    assert "[speculative]" in err and "vs ar:" in err and "predicted" in err and "same output as ar: yes" in err


def test_bild_from_the_command_line(capsys, tiny_models):
    code, out, err = run_cli(
        capsys,
        "generate",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        "--method",
        "bild",
        "--fallback-threshold",
        "0.5",
        "--rollback-threshold",
        "1",
        "--json",
        "a bird",
    )
    assert code == 0
    stats = json.loads(out)["stats"]
    assert stats["method"] == "bild" and stats["fallbacks"] >= 1


BAD_INPUTS = {
    "missing model path": (["--target", "/nonexistent/model"], "model path not found"),
    "gamma below one": (["--gamma", "0"], "gamma must be at least 1"),
    "fallback threshold above one": (
        ["--method", "bild", "--fallback-threshold", "1.5"],
        "fallback-threshold must be in [0, 1]",
    ),
    "negative rollback threshold": (
        ["--method", "bild", "--rollback-threshold", "-1"],
        "rollback-threshold must be >= 0",
    ),
    "negative temperature": (["--temperature", "-0.5"], "temperature must be >= 0"),
    "top-p zero": (["--top-p", "0"], "top-p must be in (0, 1]"),
    "top-p above one": (["--top-p", "1.5"], "top-p must be in (0, 1]"),
    "max new tokens zero": (["--max-new-tokens", "0"], "max-new-tokens must be at least 1"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_gives_a_one_line_error(capsys, tiny_models, case):
    extra, message = BAD_INPUTS[case]
    argv = [
        "generate",
        "--target",
        tiny_models["llama_target"],
        "--draft",
        tiny_models["gpt2_draft"],
        *extra,
        "the cat",
    ]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("biglittle: error: ") and message in err, err


def test_incompatible_tokenizers_are_refused_naming_the_difference(capsys, tiny_models, other_vocab_model):
    code, _, err = run_cli(
        capsys, "generate", "--target", tiny_models["llama_target"], "--draft", other_vocab_model, "the cat"
    )
    assert code == 2 and err.count("\n") == 1
    assert "do not share a tokenizer" in err and "'a': 5 vs 4" in err


def test_empty_prompt(capsys, tiny_models):
    code, _, err = run_cli(capsys, "generate", "--target", tiny_models["llama_target"], "  ")
    assert code == 2 and "the prompt is empty" in err


def test_prompt_longer_than_the_context(capsys, tiny_models):
    code, _, err = run_cli(capsys, "generate", "--target", tiny_models["llama_target"], " ".join(["cat"] * 200))
    assert code == 2 and "the prompt has 201 tokens but the models' context is 128" in err


def test_method_that_needs_a_draft(capsys, tiny_models):
    code, _, err = run_cli(capsys, "generate", "--target", tiny_models["llama_target"], "--method", "bild", "the cat")
    assert code == 2 and "needs a draft" in err


def test_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--gamma", "many", "x"])
    assert exit_info.value.code == 2


def test_installed_command_exits_non_zero_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "biglittle.cli", "generate", "--target", str(tmp_path / "missing"), "hello"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"biglittle: error: model path not found: {tmp_path / 'missing'}"


def test_help_explains_the_methods():
    result = subprocess.run(
        [sys.executable, "-m", "biglittle.cli", "generate", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for word in ("--method", "speculative", "bild", "--fallback-threshold", "--compare-ar", "--json"):
        assert word in result.stdout


def test_missing_gguf_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "generate", "--target", str(tmp_path / "model.gguf"), "hello")
    assert code == 2 and "GGUF file not found" in err


def test_gamma_auto_and_ngram_drafter_from_the_command_line(capsys, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    code, out, _ = run_cli(
        capsys,
        "generate",
        "--target",
        tiny_models["llama_target"],
        "--drafter",
        "ngram",
        "--gamma",
        "auto",
        "--json",
        "the cat sees a fish . the cat",
    )
    assert code == 0 and json.loads(out)["stats"]["method"] == "speculative"
    assert list((tmp_path / "profiles").glob("*.json"))  # the profile was measured and kept


def test_profile_prints_both_cost_curves_and_the_overhead(capsys, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    code, out, _ = run_cli(
        capsys, "profile", "--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"]
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("T(1) = ") and ", c = " in lines[0]
    assert lines[1].startswith("  target step ") and lines[2].startswith("  draft step ")
    assert all("x the floor" in line and "of weights at" in line for line in lines[1:3])
    assert all(line.endswith(" ms fixed (its layers with tiny matrices)") for line in lines[1:3])
    curves = lines.index(next(line for line in lines if line.startswith("T(k)/T(1)")))
    assert [line.split()[0] for line in lines[curves + 1 : curves + 3]] == ["target", "draft"]
    assert all(len(line.split()) == 17 for line in lines[curves + 1 : curves + 3])  # name + k = 1..16
    assert "time outside model forwards: ar " in out and "speculative " in out
    assert "lookups (ngram) cost none" in out and out.count("--tree auto: ") == 3  # a tree plan per acceptance


def test_the_default_pair_runs_with_cost_aware_gamma(capsys, tiny_models, tmp_path, monkeypatch):
    import biglittle.runtime.fetch

    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    import biglittle.api

    monkeypatch.setattr(
        biglittle.runtime.fetch,
        "default_pair_dirs",
        lambda cache=None: (tiny_models["llama_target"], tiny_models["gpt2_draft"]),
    )
    precisions = []
    load_pair = biglittle.api.load_pair
    monkeypatch.setattr(biglittle.api, "load_pair", lambda *a, **k: precisions.append(k["dtype"]) or load_pair(*a, **k))
    code, out, _ = run_cli(capsys, "generate", "--no-chat", "--json", "the cat")  # tiny models have no chat template
    assert code == 0 and json.loads(out)["stats"]["method"] == "speculative"
    assert precisions == ["auto"]  # the fastest precision measured here
    run_cli(capsys, "generate", "--target", tiny_models["llama_target"], "--json", "the cat")
    assert precisions == ["auto", "fp32"]  # a named model keeps its weights' precision unless asked
    assert list((tmp_path / "profiles").glob("*.json"))  # gamma auto measured the pair's costs


def test_without_the_default_pair_generate_says_how_to_get_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    code, _, err = run_cli(capsys, "generate", "hello")
    assert code == 2 and "biglittle models fetch" in err and len(err.strip().splitlines()) == 1


class RecordingStdout(io.StringIO):
    """Standard output that keeps each write apart and says it is (not) a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.writes: list[str] = []
        self.tty = tty

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_stream_prints_the_text_as_it_is_written(capsys, monkeypatch, tiny_models, tty):
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"], "--max-new-tokens", "20"]
    assert main(["generate", *models, "--json", "the old man wants some bread . and"]) == 0
    expected = json.loads(capsys.readouterr().out)["text"]
    for flag, streams in (([], tty), (["--stream"], True), (["--no-stream"], False)):
        stdout = RecordingStdout(tty)
        monkeypatch.setattr(sys, "stdout", stdout)
        assert main(["generate", *models, *flag, "the old man wants some bread . and"]) == 0
        assert stdout.getvalue() == expected + "\n"
        pieces = [text for text in stdout.writes if text.strip()]
        assert (len(pieces) > 1) == streams, (flag, stdout.writes)  # one piece per round, or the whole text at once


def test_stream_and_json_do_not_mix(capsys, tiny_models):
    code, _, err = run_cli(capsys, "generate", "--target", tiny_models["llama_target"], "--json", "--stream", "the cat")
    assert code == 2 and "cannot be combined with --stream" in err


def test_warnings_reach_the_user_as_one_line(monkeypatch):
    """Not Python's default: the file, line number and source line of the code that warned."""
    import warnings

    from biglittle import cli

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    cli._quiet_libraries()
    line = warnings.formatwarning("the GGUF is not kept", UserWarning, "models.py", 86, "gguf = source_gguf(spec)")
    assert line == "biglittle: warning: the GGUF is not kept\n"
