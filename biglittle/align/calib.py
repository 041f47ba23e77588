"""Calibration data: the target's own outputs for a task's prompts (BiLD's prediction alignment).

Generation goes through the ordinary API (the target alone, method `ar`); the optional top-K
log-probabilities come from one extra forward of the target over the output, reusing the
generation's cache of the prompt, so the decoding loop stays the only one. Lines are appended and
flushed one example at a time, so an interrupted run loses at most the example in progress and a
rerun skips the ids done.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..api import GenerationConfig, ModelPair
from ..config import require_tuning_task
from ..errors import BigLittleError
from ..files import append_jsonl
from .records import LINES, load_lines, read_meta, tokenizer_fingerprint, write_meta


@dataclass(frozen=True)
class CalibSettings:
    task: str
    split: str = "train"
    temperature: float = 0.0  # 0 = the target's greedy outputs (BiLD); > 0 samples
    seed: int = 0  # sampling: each example's seed derives from it and the example's id
    top_k_logits: int = 0  # store the target's K most likely tokens per position (for a KL term); 0 = off
    max_new_tokens: int = 128

    def validate(self) -> None:
        require_tuning_task(self.task, "align calib")  # drafts are never trained on a test set (HumanEval)
        if self.top_k_logits < 0:
            raise BigLittleError(f"top-k-logits must be >= 0 (0 = off), got {self.top_k_logits}")
        self.generation_config(self.seed).validate()  # each example's seed derives from it; its range is every seed's

    def generation_config(self, seed: int) -> GenerationConfig:
        return GenerationConfig(
            method="ar", temperature=self.temperature, seed=seed, max_new_tokens=self.max_new_tokens, chat=False
        )


def generate_calibration(
    pair: ModelPair, examples: list[tuple[str, str]], out_dir, settings: CalibSettings, progress: bool = True
) -> dict:
    """Write the target's outputs for `examples` [(id, prompt text)] to out_dir; resumes a previous run.

    Returns {"done": examples in the file, "new": written by this call}.
    """
    settings.validate()
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_or_write_meta(out_dir, pair, settings)
    done = {record["id"] for record in load_lines(out_dir)}
    todo = [(example_id, prompt) for example_id, prompt in examples if example_id not in done]
    with tqdm(
        total=len(examples), initial=len(examples) - len(todo), desc="calibration", unit="ex", disable=not progress
    ) as bar:
        for example_id, prompt in todo:
            # One complete line per finished example: what a rerun may skip.
            append_jsonl(out_dir / LINES, calibration_record(pair, example_id, prompt, settings))
            bar.update(1)
    return {"done": len(done) + len(todo), "new": len(todo)}


def calibration_record(pair: ModelPair, example_id: str, prompt: str, settings: CalibSettings) -> dict:
    prompt_ids = pair.encode(prompt)
    result = pair.generate(prompt_ids, settings.generation_config(_example_seed(settings.seed, example_id)))
    record = {
        "id": example_id,
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "output": result.text,
        "output_ids": result.token_ids,
    }
    if settings.top_k_logits and result.token_ids:
        record["top_ids"], record["top_logprobs"] = _top_logprobs(
            pair, prompt_ids, result.token_ids, settings.top_k_logits
        )
    return record


def _top_logprobs(pair: ModelPair, prompt_ids, output_ids, k: int) -> tuple[list, list]:
    """The target's top-K log-probabilities at each output position, from the generation's own KV cache:
    only the output tokens are fed again (a prompt's prefill costs as much as a dozen decoding steps)."""
    runner = pair.target_runner
    start = [runner.model.config.decoder_start_token_id] if runner.is_encoder_decoder else list(prompt_ids)
    runner.crop(len(start) - 1)  # keep the cached prompt (the decoder's start token, encoder-decoder)
    logits = runner.forward(start + list(output_ids[:-1]), num_logits=len(output_ids))
    top = torch.log_softmax(logits.float(), dim=-1).topk(min(k, logits.shape[-1]))
    return top.indices.tolist(), [[round(value, 4) for value in row] for row in top.values.tolist()]


def _example_seed(seed: int, example_id: str) -> int:
    """A seed per example that does not depend on the order of the run (so a resumed run matches)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{example_id}".encode()).digest()[:4], "big")


def _check_or_write_meta(out_dir: Path, pair: ModelPair, settings: CalibSettings) -> None:
    meta = {"target": pair.target.name, "tokenizer": tokenizer_fingerprint(pair.tokenizer), **asdict(settings)}
    existing = read_meta(out_dir)
    if existing is None:
        write_meta(out_dir, meta)
        return
    differ = sorted(key for key in meta if existing.get(key) != meta[key])
    if differ:
        raise BigLittleError(
            f"{out_dir} holds calibration data made with other settings "
            f"({', '.join(f'{k}: {existing.get(k)!r}' for k in differ)}); use another --out"
        )
