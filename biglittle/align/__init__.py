"""Prediction alignment (BiLD): fine-tune the little model on the big model's own outputs.

calib.py     the target's outputs for a task's training prompts, as resumable JSONL
records.py   reading and writing that calibration data
train.py     fine-tune the draft on it (LoRA by default), with checkpoints, then merge
evaluate.py  teacher-forced agreement and speculative acceptance, draft before vs after
teacher.py   one teacher-forced forward: a model's logits over a given output
"""

from .calib import CalibSettings, generate_calibration
from .evaluate import evaluate_drafts, format_evaluation
from .records import read_calibration
from .train import TrainSettings, train_draft

__all__ = [
    "CalibSettings",
    "TrainSettings",
    "evaluate_drafts",
    "format_evaluation",
    "generate_calibration",
    "read_calibration",
    "train_draft",
]
