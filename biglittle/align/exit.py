"""Train the exit of an early-exit draft (the target's first L layers) on calibration data.

Only an ExitHead (low-rank correction + own norm, see biglittle/runtime/early_exit/head.py) is trained; the L
layers below it are the target's and stay frozen. So the layer-L hidden states of every
calibration example are computed once (no gradients, saved to OUT/features.pt as they come, so
an interrupted run keeps them), and training then costs one pass through the head and the
output layer per example. The loss is align train's: cross-entropy on the target's output
tokens, optionally plus a KL term to its stored top-K distribution.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import BigLittleError
from ..runtime.early_exit import early_exit_model, layer_stack
from ..runtime.early_exit.head import META, ExitHead, final_norm, save_exit_head
from ..runtime.models import LoadedModel
from .records import read_calibration, tokenizer_fingerprint
from .train import TrainSettings, alignment_loss, check_calibration, schedule_steps

FEATURES = "features.pt"
DEFAULT_LR = 1e-3  # a small head trained from zero takes a larger step than LoRA inside a model


def train_exit(
    target: LoadedModel, layers: int, data_dir, out_dir, settings: TrainSettings, *, progress: bool = True
) -> dict:
    """Train an exit head after the target's first `layers` layers; OUT becomes an exit-head directory."""
    settings.validate()
    meta, records = read_calibration(data_dir)
    out_dir = Path(out_dir).expanduser()
    _check_inputs(target, meta, records, settings, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target.model.requires_grad_(False)  # frozen: only the head learns
    exit_model = early_exit_model(target.model, layers)
    identity = {"target": target.name, "layers": layers, "calibration": meta, "examples": len(records)}
    features = _layer_features(exit_model, records, out_dir / FEATURES, identity, progress)
    torch.manual_seed(settings.seed)
    head = ExitHead(final_norm(target.model.base_model), target.model.config.hidden_size, settings.lora_rank)
    output_layer = target.model.get_output_embeddings()
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr or DEFAULT_LR, weight_decay=0.0)
    schedule = schedule_steps(len(records), settings)
    started, losses = time.perf_counter(), []
    for batch in tqdm(schedule, desc="exit", unit="step", disable=not progress):
        optimizer.zero_grad(set_to_none=True)
        loss = sum(
            alignment_loss(output_layer(head(features[i])), records[i], settings.kl_weight) for i in batch
        ) / len(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    summary = {
        "target": target.name,
        "layers": layers,
        "rank": settings.lora_rank,
        "tokenizer": tokenizer_fingerprint(target.tokenizer),
        "data": str(Path(data_dir).expanduser().resolve()),
        "calibration": meta,
        "settings": asdict(settings),
        "steps": len(schedule),
        "train_seconds": time.perf_counter() - started,
        "first_loss": _mean(losses[:20]),
        "final_loss": _mean(losses[-20:]),
    }
    save_exit_head(head.requires_grad_(False), out_dir, summary)
    (out_dir / FEATURES).unlink(missing_ok=True)
    return summary


def _check_inputs(target: LoadedModel, meta: dict, records: list[dict], settings: TrainSettings, out_dir: Path) -> None:
    if settings.full:
        raise BigLittleError("--full does not apply to an early-exit draft: its layers are the target's own")
    check_calibration(target, "target", meta, records, settings)
    if (out_dir / META).exists():
        raise BigLittleError(f"{out_dir} already holds a trained exit; choose another --out")


@torch.no_grad()  # not inference_mode: the features become inputs of the head's training graph
def _layer_features(exit_model, records: list[dict], path: Path, identity: dict, progress: bool) -> list[torch.Tensor]:
    """Layer L's hidden states [len(output_ids), d] at the positions that predict each record's output tokens."""
    key = json.dumps(identity, sort_keys=True)
    saved = torch.load(path, weights_only=True) if path.is_file() else {"identity": key, "features": []}
    if saved["identity"] != key:
        raise BigLittleError(f"{path} was computed for other settings or data; choose another --out")
    features = saved["features"]
    captured = {}
    last_layer = layer_stack(exit_model.base_model)[1][-1]
    hook = last_layer.register_forward_hook(
        lambda module, args, out: captured.update(h=out[0] if isinstance(out, tuple) else out)
    )
    try:
        for index in tqdm(range(len(features), len(records)), desc="layer-L states", unit="ex", disable=not progress):
            record = records[index]
            tokens = record["prompt_ids"] + record["output_ids"][:-1]
            exit_model.base_model(input_ids=torch.tensor([tokens], device=exit_model.device))
            features.append(captured["h"][0, -len(record["output_ids"]) :].clone())
            if len(features) % 25 == 0 or len(features) == len(records):
                torch.save({"identity": key, "features": features}, path)
    finally:
        hook.remove()
    return features


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
