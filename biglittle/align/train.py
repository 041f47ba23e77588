"""Fine-tune the draft on calibration data: cross-entropy on the target's output tokens (the prompt
is context only), plus optionally a KL term to the target's stored top-K distribution.

LoRA adapters (peft) on every linear projection except the output layer by default, so that a
0.5B model trains on a CPU; `full=True` trains every weight. The run is a fixed schedule of
steps (example order drawn from the seed per epoch), checkpointed every `save_every` steps
(trainable weights, optimizer, step, random state) to OUT/checkpoint.pt, so a rerun with the
same settings continues from the last checkpoint and ends with the same weights. At the end
the adapters are merged and OUT becomes a model directory (save_pretrained + tokenizer).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers.pytorch_utils import Conv1D

from ..config import seed_check
from ..errors import BigLittleError
from ..runtime.models import LoadedModel
from .records import read_calibration, tokenizer_fingerprint
from .teacher import output_logits

CHECKPOINT = "checkpoint.pt"
SUMMARY = "align.json"  # written last: its presence means OUT holds a finished aligned model


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 2
    lr: float | None = None  # None: 2e-4 with LoRA, 2e-5 for full fine-tuning
    lora_rank: int = 16
    full: bool = False
    kl_weight: float = 0.0  # weight of KL(target top-K || draft); needs calibration data with top-K logits
    max_steps: int | None = None  # stop after this many optimizer steps (a budget; overrides epochs)
    grad_accum: int = 1  # examples per optimizer step (one at a time: no padding)
    save_every: int = 20  # optimizer steps between checkpoints
    seed: int = 0

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-5 if self.full else 2e-4)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.learning_rate > 0 and math.isfinite(self.learning_rate), f"lr must be > 0, got {self.lr}"),
            (self.lora_rank >= 1, f"lora-rank must be at least 1, got {self.lora_rank}"),
            (self.kl_weight >= 0 and math.isfinite(self.kl_weight), f"kl-weight must be >= 0, got {self.kl_weight}"),
            (self.max_steps is None or self.max_steps >= 1, f"max-steps must be at least 1, got {self.max_steps}"),
            (self.grad_accum >= 1, f"grad-accum must be at least 1, got {self.grad_accum}"),
            (self.save_every >= 1, f"save-every must be at least 1, got {self.save_every}"),
            seed_check(self.seed),
        ]
        for ok, message in checks:
            if not ok:
                raise BigLittleError(message)

    def run_identity(self) -> dict:
        """What must not change between an interrupted run and its resumption."""
        identity = asdict(self)
        del identity["max_steps"], identity["save_every"]
        return identity


def train_draft(
    draft: LoadedModel, data_dir, out_dir, settings: TrainSettings, *, on_step=None, progress: bool = True
) -> dict:
    """Align `draft` to the calibration data in data_dir; OUT becomes a model directory. Returns a summary.

    `on_step(step, loss)` is called after every optimizer step (and after its checkpoint). The
    draft's model is changed in place (adapters merged into it).
    """
    settings.validate()
    meta, records = read_calibration(data_dir)
    out_dir = Path(out_dir).expanduser()
    _check_inputs(draft, meta, records, settings, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model = _trainable(draft.model, settings)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate, weight_decay=0.0
    )
    schedule = schedule_steps(len(records), settings)
    identity = {"settings": settings.run_identity(), "calibration": meta, "examples": len(records)}
    start = _resume(out_dir / CHECKPOINT, model, optimizer, identity)
    started, recent = time.perf_counter(), deque(maxlen=20)
    model.train()
    with tqdm(total=len(schedule), initial=start, desc="align", unit="step", disable=not progress) as bar:
        for step in range(start, len(schedule)):
            recent.append(_train_step(model, optimizer, [records[i] for i in schedule[step]], settings.kl_weight))
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")
            bar.update(1)
            if (step + 1) % settings.save_every == 0 and step + 1 < len(schedule):
                _save_checkpoint(out_dir / CHECKPOINT, model, optimizer, step + 1, identity)
            if on_step is not None:
                on_step(step + 1, recent[-1])
    summary = {
        "draft": draft.name,
        "data": str(Path(data_dir).expanduser().resolve()),
        "calibration": meta,
        "settings": asdict(settings),
        "mode": "full" if settings.full else "lora",
        "steps": len(schedule),
        "resumed_from_step": start,
        "train_seconds": time.perf_counter() - started,
        "final_loss": sum(recent) / len(recent) if recent else None,
    }
    _write_model(model, draft, out_dir, settings, summary)
    return summary


def alignment_loss(logits: torch.Tensor, record: dict, kl_weight: float) -> torch.Tensor:
    """Cross-entropy on the target's output tokens, plus kl_weight * KL(target's top-K, renormalised || draft)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    loss = F.nll_loss(logprobs, torch.tensor(record["output_ids"], device=logits.device))
    if kl_weight:
        top_ids = torch.tensor(record["top_ids"], device=logits.device)
        target = torch.softmax(
            torch.tensor(record["top_logprobs"], device=logits.device), dim=-1
        )  # renormalised over K
        kl = (target * (target.clamp_min(1e-12).log() - logprobs.gather(1, top_ids))).sum(-1).mean()
        loss = loss + kl_weight * kl
    return loss


def projection_modules(model) -> list[str]:
    """Every linear projection (nn.Linear, or GPT-2's Conv1D) except the output layer: LoRA's targets."""
    output = model.get_output_embeddings()
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not output
    ]


def check_calibration(model: LoadedModel, role: str, meta: dict, records: list[dict], settings: TrainSettings) -> None:
    """The calibration data fits `model` (the draft, or the target of an early exit) and the settings."""
    if meta.get("tokenizer") != tokenizer_fingerprint(model.tokenizer):
        raise BigLittleError(
            f"the {role} {model.name} does not share the tokenizer of the calibration data's target "
            f"({meta.get('target')})"
        )
    if settings.kl_weight and not all("top_ids" in record for record in records):
        raise BigLittleError(
            "--kl-weight needs the target's top-K logits in the calibration data "
            "(make it with `biglittle align calib --top-k-logits K`)"
        )


def _check_inputs(draft: LoadedModel, meta: dict, records: list[dict], settings: TrainSettings, out_dir: Path) -> None:
    check_calibration(draft, "draft", meta, records, settings)
    if (out_dir / SUMMARY).exists():
        raise BigLittleError(f"{out_dir} already holds an aligned model; choose another --out")


def _trainable(model, settings: TrainSettings):
    if settings.full:
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    targets = projection_modules(model)
    if not targets:
        raise BigLittleError("the draft has no linear projections for LoRA; use --full")
    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=2 * settings.lora_rank,
        lora_dropout=0.0,
        target_modules=targets,
        fan_in_fan_out=isinstance(model.get_submodule(targets[0]), Conv1D),  # Conv1D stores weights transposed
        task_type="SEQ_2_SEQ_LM" if model.config.is_encoder_decoder else "CAUSAL_LM",
    )
    return get_peft_model(model, config)


def schedule_steps(num_examples: int, settings: TrainSettings) -> list[list[int]]:
    """The run's optimizer steps, each a list of example indices: every epoch in its own seeded order."""
    order = []
    for epoch in range(settings.epochs):
        permutation = list(range(num_examples))
        random.Random(f"{settings.seed}:{epoch}").shuffle(permutation)
        order += permutation
    steps = [order[i : i + settings.grad_accum] for i in range(0, len(order), settings.grad_accum)]
    return steps[: settings.max_steps] if settings.max_steps is not None else steps


def _train_step(model, optimizer, batch: list[dict], kl_weight: float) -> float:
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for record in batch:
        logits = output_logits(model, record["prompt_ids"], record["output_ids"])
        loss = alignment_loss(logits, record, kl_weight) / len(batch)
        loss.backward()
        total += loss.item()
    optimizer.step()
    return total


def _trainable_state(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(path: Path, model, optimizer, step: int, identity: dict) -> None:
    state = {
        "step": step,
        "identity": json.dumps(identity, sort_keys=True),
        "trainable": _trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    }
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)  # atomic: a crash leaves the previous checkpoint whole


def _resume(path: Path, model, optimizer, identity: dict) -> int:
    """The step to start from: 0, or the checkpoint's (its weights, optimizer and random state restored)."""
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    if state["identity"] != json.dumps(identity, sort_keys=True):
        raise BigLittleError(
            f"{path} is from a run with other settings or data; rerun with those, or choose another --out"
        )
    unexpected = model.load_state_dict(state["trainable"], strict=False).unexpected_keys
    if unexpected:
        raise BigLittleError(f"{path} does not fit this draft (e.g. {unexpected[0]}); choose another --out")
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return state["step"]


def _write_model(model, draft: LoadedModel, out_dir: Path, settings: TrainSettings, summary: dict) -> None:
    model.eval()
    merged = model if settings.full else model.merge_and_unload()
    merged.requires_grad_(False)
    merged.save_pretrained(out_dir)
    draft.tokenizer.save_pretrained(out_dir)
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
