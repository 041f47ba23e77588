"""Task datasets (real text, obtainable offline from Debian) behind one interface.

    from biglittle.data import load_task, build_prompt
    examples = load_task("translation", "test", limit=50)   # list[Example(id, source, reference)]
    prompt = build_prompt("translation", examples[0].source, tokenizer)

Tasks: ``translation`` (German→English example sentences of the Ding dictionary),
``summarization`` (Debian package description → its one-line synopsis) and ``code`` (HumanEval's
164 Python problems, scored by running their tests: code.py). Translation and summarization are
split deterministically: every example's place is decided by a hash of its id and a fixed seed, so
the split does not depend on file order; ``test`` and ``dev`` hold 300 examples each (a fifth of
the data each for tiny files) and ``train`` the rest. HumanEval is a test set: all of it is
``test``, and asking for another split is an error. The examples of a split come in that hashed
order, so ``limit=N`` takes a fixed pseudo-random sample of N.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from ..config import SPLITS, TASKS, TEST_ONLY_TASKS
from ..errors import BigLittleError
from .code import CodeExample, read_problems
from .prompts import build_prompt
from .sources import data_dir, data_status, description_files, fetch_data, translation_file
from .summarization import parse_descriptions, read_index
from .translation import parse_ding
from .types import Example

SEED = 20230601
EVAL_SIZE = 300

__all__ = [
    "CodeExample",
    "EVAL_SIZE",
    "Example",
    "SEED",
    "SPLITS",
    "TASKS",
    "build_prompt",
    "data_dir",
    "data_status",
    "fetch_data",
    "load_task",
    "split_examples",
]


def hashed_order(examples: Sequence[Example], seed: int = SEED) -> list[Example]:
    """The examples ordered by sha256(seed:id): a fixed shuffle that does not depend on file order."""
    return sorted(examples, key=lambda e: hashlib.sha256(f"{seed}:{e.id}".encode()).digest())


def split_examples(
    examples: Sequence[Example], seed: int = SEED, eval_size: int = EVAL_SIZE
) -> dict[str, list[Example]]:
    """{'test', 'dev', 'train'}: in hashed order, the first k are test, the next k dev."""
    ordered = hashed_order(examples, seed)
    k = min(eval_size, len(ordered) // 5)
    return {"test": ordered[:k], "dev": ordered[k : 2 * k], "train": ordered[2 * k :]}


def _files(task: str, path, cache) -> tuple[Path, ...]:
    if task == "translation":
        return (translation_file(path, cache),)
    return tuple(description_files(path, cache))


@lru_cache(maxsize=8)
def _splits(task: str, files: tuple[Path, ...], stamps: tuple[tuple[int, int], ...]) -> dict[str, tuple[Example, ...]]:
    if task == "translation":
        try:
            with open(files[0], encoding="utf-8", errors="replace") as fh:
                examples = parse_ding(fh)
        except OSError as exc:
            raise BigLittleError(f"cannot read {files[0]} ({exc.strerror}); run `biglittle data fetch` again") from exc
    else:
        examples = parse_descriptions(read_index(f) for f in files)
    if not examples:
        raise BigLittleError(
            f"no {task} examples found in {', '.join(map(str, files))}; is it the right file? "
            "run `biglittle data fetch` again"
        )
    return {name: tuple(part) for name, part in split_examples(examples).items()}


def load_task(
    name: str,
    split: str = "test",
    path: str | os.PathLike | None = None,
    limit: int | None = None,
    *,
    cache: str | os.PathLike | None = None,
) -> list[Example]:
    """Examples of task `name` ("translation" | "summarization" | "code") in `split` ("train" | "dev" |
    "test"; code: "test" only). `path` points at a copy of the raw source instead of the cache (code: a
    HumanEval .jsonl(.gz) instead of the installed package's); `limit` keeps the first N. Raises
    BigLittleError (with what to do) when the data is missing or unreadable."""
    if name not in TASKS:
        raise BigLittleError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise BigLittleError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise BigLittleError(f"limit must be at least 0, got {limit}")
    if name in TEST_ONLY_TASKS:
        if split != "test":
            raise BigLittleError(f"the {name} task has only a test split ({TEST_ONLY_TASKS[name]}), not {split!r}")
        problems: list[Example] = hashed_order(read_problems(path))
        return problems if limit is None else problems[:limit]
    files = tuple(p.resolve() for p in _files(name, path, cache))
    try:
        stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    except OSError as exc:
        raise BigLittleError(f"cannot read {exc.filename} ({exc.strerror}); run `biglittle data fetch` again") from exc
    examples = list(_splits(name, files, stamps)[split])
    return examples if limit is None else examples[:limit]
