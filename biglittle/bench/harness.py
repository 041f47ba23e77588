"""One benchmark from start to end: the models each setting needs, the run, results.json, the report, the plots."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch
import transformers

from ..api import ModelPair, load_pair
from ..data import Example, build_prompt
from ..data.code import CodeJudge
from ..errors import BigLittleError
from ..files import write_text_atomically
from ..runtime.models import logit_rows
from ..sandbox import guards as sandbox_guards
from .aggregate import aggregate
from .llamacpp import LlamaCppPeer
from .options import BenchOptions
from .plots import write_plots
from .report import render
from .run import Executor, plan_jobs, prompt_encoder, run_jobs
from .settings import build_settings, precision_pairs
from .store import RecordStore

RESULTS, REPORT = "results.json", "report.md"


def run_benchmark(
    pair: ModelPair,
    examples_by_task: dict[str, list[Example]],
    options: BenchOptions,
    *,
    prompt_builder: Callable = build_prompt,
    command: str = "",
    on_record=None,
    progress: bool = True,
    llamacpp: LlamaCppPeer | None = None,
) -> dict:
    """Runs (or resumes) the benchmark into options.out_dir and returns what results.json holds.

    `prompt_builder(task, source, tokenizer)` makes each example's prompt text (chat template
    included), fed as is; tests pass their own for toy data. `llamacpp`: the llama.cpp peer (default: the
    installed one, for the built-in pair); without it the llamacpp family's settings are left out.
    """
    if pair.draft is None:
        raise BigLittleError("bench compares a big and a little model: pass --draft as well as --target")
    commit = code_version()  # of the code that runs, even if the checkout moves on during a long run
    pairs = model_pairs(pair, options.extra_drafts, options.precision, options.also_precisions)
    profiles = {name: _profile(p, progress) for name, p in pairs.items() if name != "small"}
    settings = build_settings(options, frozenset(label for label, p in pairs.items() if p.bridge is not None))
    if llamacpp is None and any(setting.family == "llamacpp" for setting in settings):  # --families, --only
        llamacpp = find_llamacpp(pair, options.out_dir)
    if llamacpp is not None and llamacpp.unavailable:
        settings = [setting for setting in settings if setting.family != "llamacpp"]
    out_dir = options.out_dir
    store = RecordStore(out_dir, fingerprint(pair, options, commit), options.allow_other_commit)
    jobs = plan_jobs(examples_by_task, settings, options.repeats)
    prompt_ids = prompt_encoder(pair, prompt_builder)
    judge = code_judge(store.records.values()) if "code" in examples_by_task else None
    executor = Executor(pairs, options.max_new_tokens, llamacpp)
    try:
        run_jobs(jobs, executor, store, prompt_ids, on_record, progress, commit=commit, judge=judge)
    finally:
        if llamacpp is not None:
            llamacpp.close()
    records = [store.records[job.key] for job in jobs if job.key in store]  # this run's, not an earlier, larger run's
    meta = metadata(pair, options, examples_by_task, command, commit)
    meta["record_commits"] = sorted({str(record.get("commit")) for record in records})  # several: a resumed run
    if llamacpp is not None:
        meta["peers"] = {"llama.cpp": llamacpp.report()}
    results = {"metadata": meta, "cost_profiles": profiles, "aggregates": aggregate(records, settings)}
    write_text_atomically(out_dir / RESULTS, json.dumps(results, indent=1, ensure_ascii=False))
    plots = write_plots(results["aggregates"], out_dir)
    write_text_atomically(out_dir / REPORT, render(results, plots))
    return results


def find_llamacpp(pair: ModelPair, log_dir: Path) -> LlamaCppPeer:
    """The installed llama.cpp peer, which runs the built-in pair's GGUF files: with other models it is absent."""
    if not pair.builtin:
        return LlamaCppPeer.absent(
            "llama.cpp: runs the built-in pair only (its GGUF files); this bench's pair is another"
        )
    return LlamaCppPeer.find(pair.cache, torch.get_num_threads(), log_dir)


def code_judge(records) -> Callable[[str, Example, str], dict | None]:
    """judge(task, example, text) for run_jobs: the code task's answers run in the sandbox, each distinct
    program once, programs already judged in earlier records (a resumed run) not again."""
    judge = CodeJudge(known=(record["execution"] for record in records if "execution" in record))
    return lambda task, example, text: judge(example, text) if task == "code" else None


def model_pairs(
    pair: ModelPair, extra_drafts: dict[str, str], precision: str, also_precisions: tuple[str, ...] = ()
) -> dict[str, ModelPair]:
    """The pair, the little model alone ("small"), the target with each extra draft (which may have its own
    tokenizer), and for each of `also_precisions` both models in it and the target with its little model in it
    (settings.precision_pairs); no model is loaded twice. All keep their measurements in the pair's cache."""
    pairs = {"main": pair, "small": ModelPair(pair.draft, cache=pair.cache)}
    device = str(pair.target_runner.device)
    for label, spec in extra_drafts.items():
        pairs[label] = load_pair(
            pair.target, spec, dtype=precision, device=device, cache=pair.cache, cross_tokenizer=True
        )
    for other in also_precisions:
        both, little = precision_pairs(other)
        pairs[both] = load_pair(
            pair.target.name, pair.draft.name, dtype=other, device=device, cache=pair.cache, builtin=pair.builtin
        )
        pairs[little] = ModelPair(pair.target, pairs[both].draft, cache=pair.cache, builtin=pair.builtin)
    return pairs


def _profile(pair: ModelPair, progress: bool = True) -> dict:
    """The pair's cost profile, measured (minutes for real models, with a progress bar) where none is kept."""
    profile = pair.cost_profile_with_bar("cost profile", leave=False, disable=None if progress else True)
    return {**asdict(profile), "draft_cost": profile.draft_cost}


def fingerprint(pair: ModelPair, options: BenchOptions, commit: str | None) -> dict:
    """What every record depends on besides its setting; a resumed run must match it (the code's commit too,
    unless told otherwise: RecordStore)."""
    return {
        "target": pair.target.name,
        "draft": pair.draft.name,
        "precision": options.precision,
        **({"draft_precision": options.draft_precision} if options.draft_precision else {}),
        "device": str(pair.target_runner.device),
        "cpu": cpu(),  # timings of other machines never mix into one run's tables
        "max_new_tokens": options.max_new_tokens,
        "draft_vocab": logit_rows(pair.draft),
        "commit": commit,
    }


def metadata(pair: ModelPair, options: BenchOptions, examples_by_task: dict, command: str, commit: str | None) -> dict:
    return {
        **fingerprint(pair, options, commit),
        "dtype": str(pair.target.model.dtype),
        "tasks": list(examples_by_task),
        "examples_per_task": max((len(examples) for examples in examples_by_task.values()), default=0),
        "repeats": options.repeats,
        "gammas": list(options.gammas),
        "bild_grid": [list(thresholds) for thresholds in options.bild_grid],
        "families": list(options.families),
        "only": list(options.only),
        "extra_drafts": options.extra_drafts,
        "also_precisions": list(options.also_precisions),
        "draft_text": options.draft_text,
        "machine": machine(pair),
        "sandbox": sandbox_guards() if "code" in examples_by_task else None,
        "commit": commit,
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# The CPU flags that decide which kernels run (x86: AVX2, AVX-512, VNNI, AMX; Arm: NEON/ASIMD, SVE, dot products).
ISA_FLAGS = re.compile(r"^(avx\w*|fma|f16c|amx\w*|\w*vnni\w*|asimd\w*|sve\w*|i8mm|bf16|neon)$")


def cpu(cpuinfo: str | None = None) -> dict:
    """{"model", "flags"}: the CPU's model name and its instruction-set flags that matter for kernels, from
    /proc/cpuinfo (elsewhere: platform.processor() and no flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields.setdefault(name.strip().lower(), value.strip())  # the first processor's
    model = fields.get("model name") or fields.get("hardware") or platform.processor() or platform.machine()
    flags = (fields.get("flags") or fields.get("features") or "").split()
    return {"model": model, "flags": sorted(flag for flag in set(flags) if ISA_FLAGS.match(flag))}


def machine(pair: ModelPair) -> dict:
    device = pair.target_runner.device
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def code_version() -> str:
    """The commit of the biglittle checkout that runs ('-dirty' when tracked files differ from it), else its version."""

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        return f"biglittle {version('biglittle')}"
    clean = git("diff", "--quiet", "HEAD")
    return head.stdout.strip() + ("" if clean is not None and clean.returncode == 0 else "-dirty")
