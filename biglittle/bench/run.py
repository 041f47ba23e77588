"""The benchmark loop: every setting on every example, interleaved, each generation saved as it ends.

For each example every setting runs once before the next example starts, in an order rotated by
one place per example, so that slow drift of the machine (heat, other jobs) hits every setting
alike instead of whichever happened to run last.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..api import ModelPair
from ..data import Example
from .peers import peer_generate
from .settings import Setting
from .store import RecordStore, record_key

WARMUP_TOKENS = 2
WARMUP_PROMPT_TOKENS = 8  # enough to initialise every code path; a full prompt's prefill would cost seconds each


@dataclass(frozen=True)
class Job:
    task: str
    example: Example
    repeat: int
    setting: Setting

    @property
    def key(self) -> str:
        return record_key(self.task, self.example.id, self.repeat, self.setting.params())

    @property
    def seed(self) -> int:
        """Fixed per example and repeat, so a resumed run samples what the complete run would."""
        return zlib.crc32(f"{self.task}:{self.example.id}:{self.repeat}".encode())


def plan_jobs(examples_by_task: dict[str, list[Example]], settings: list[Setting], repeats: int) -> list[Job]:
    jobs = []
    for task, examples in examples_by_task.items():
        settings_here = [setting for setting in settings if setting.runs_on(task)]
        for repeat in range(repeats):
            for index, example in enumerate(examples):
                shift = (index + repeat) % len(settings_here)
                jobs += [
                    Job(task, example, repeat, setting) for setting in settings_here[shift:] + settings_here[:shift]
                ]
    return jobs


class Executor:
    """Runs one setting on one prompt with the pair it names, timed the same way for every engine."""

    def __init__(self, pairs: dict[str, ModelPair], max_new_tokens: dict[str, int]):
        self.pairs, self.max_new_tokens = pairs, max_new_tokens  # new tokens per task

    def run(self, setting: Setting, prompt_ids: list[int], seed: int, budget: int, task: str = "") -> dict:
        """`task`: whose train split a unigram or bigram draft is estimated from (unless the setting names a text)."""
        pair = self.pairs[setting.model]
        self._synchronize(pair)
        started = time.perf_counter()
        if setting.engine == "biglittle":
            result = pair.generate(prompt_ids, setting.config(budget, seed, task))
            token_ids, text, stats = result.token_ids, result.text, result.stats
        else:
            token_ids = peer_generate(pair, prompt_ids, setting.engine, budget)
            text, stats = pair.tokenizer.decode(token_ids, skip_special_tokens=True), None
        self._synchronize(pair)
        seconds = time.perf_counter() - started
        return {"prompt_tokens": len(prompt_ids), **_outcome(text, token_ids, seconds, stats, setting.engine)}

    @staticmethod
    def _synchronize(pair: ModelPair) -> None:
        device = pair.target_runner.device
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def _outcome(text: str, token_ids: list[int], seconds: float, stats, engine: str) -> dict:
    """The generation's part of a record; a peer has no counters beyond its tokens and time."""
    outcome = {"text": text, "token_ids": token_ids, "wall_time_s": seconds, "new_tokens": len(token_ids)}
    if stats is None:
        outcome["stats"] = {
            "method": engine,
            "new_tokens": len(token_ids),
            "wall_time_s": seconds,
            "tokens_per_s": len(token_ids) / seconds if seconds > 0 else 0.0,
        }
        return {**outcome, "positions": {"proposed": [], "accepted": []}, "target_call_log": [], "draft_call_log": []}
    positions = range(max(stats.proposed_by_position, default=-1) + 1)
    return {
        **outcome,
        "stats": stats.to_dict(),
        "positions": {
            "proposed": [stats.proposed_by_position[p] for p in positions],
            "accepted": [stats.accepted_by_position[p] for p in positions],
        },
        "target_call_log": [list(call) for call in stats.target_call_log],
        "draft_call_log": [list(call) for call in stats.draft_call_log],
    }


def prompt_encoder(pair: ModelPair, prompt_builder: Callable) -> Callable[[str, Example], list[int]]:
    """prompt_ids(task, example): the example's prompt (`prompt_builder(task, source, tokenizer)`), encoded once."""
    encoded = {}

    def prompt_ids(task: str, example: Example) -> list[int]:
        if (task, example.id) not in encoded:
            encoded[task, example.id] = pair.encode(prompt_builder(task, example.source, pair.tokenizer))
        return encoded[task, example.id]

    return prompt_ids


def run_jobs(
    jobs: list[Job],
    executor: Executor,
    store: RecordStore,
    prompt_ids: Callable[[str, Example], list[int]],
    on_record: Callable[[dict], None] | None = None,
    progress: bool = True,
    desc: str = "bench",
    commit: str | None = None,
    judge: Callable[[str, Example, str], dict | None] | None = None,
) -> None:
    """Runs the jobs not yet in `store`, appending each record, with the `commit` of the code, as soon as it is done.

    `judge(task, example, text)`, where given, scores an answer by running it (the code task's tests): its
    verdict goes into the record as "execution", measured after the generation's timing has stopped.
    """
    pending = [job for job in jobs if job.key not in store]
    if pending:
        _warm_up(pending, executor, prompt_ids)
    with tqdm(
        total=len(jobs),
        initial=len(jobs) - len(pending),
        unit="gen",
        desc=desc,
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for job in pending:
            bar.set_postfix_str(f"{job.task}: {job.setting.label}", refresh=False)
            budget = executor.max_new_tokens[job.task]
            outcome = executor.run(job.setting, prompt_ids(job.task, job.example), job.seed, budget, task=job.task)
            execution = judge(job.task, job.example, outcome["text"]) if judge is not None else None
            record = {
                "task": job.task,
                "example_id": job.example.id,
                "reference": job.example.reference,
                "repeat": job.repeat,
                "setting": job.setting.params(),
                "max_new_tokens": budget,
                "commit": commit,
                **outcome,
                **({"execution": execution} if execution is not None else {}),
            }
            store.add(record)
            bar.update()
            if on_record is not None:
                on_record(record)


def _warm_up(pending: list[Job], executor: Executor, prompt_ids) -> None:
    """One short untimed generation per kind of run, so first-call costs (allocations, lazy
    initialisation) are not charged to whichever setting happens to come first."""
    first = pending[0]
    ids = prompt_ids(first.task, first.example)[:WARMUP_PROMPT_TOKENS]
    kinds: dict[tuple, Job] = {}
    for job in pending:
        setting = job.setting
        kinds.setdefault((setting.engine, setting.model, setting.method, setting.drafter), job)
    for job in kinds.values():
        executor.run(job.setting, ids, seed=0, budget=WARMUP_TOKENS, task=job.task)
