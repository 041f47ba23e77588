"""The trainable exit of an early-exit draft.

An untrained early exit reads the target's layer-L hidden state through the final norm and
output layer that were trained for layer N, and agrees with the target poorly. An ExitHead
puts a low-rank residual correction and its own copy of the final norm in front of the shared
output layer: logits = output_layer(norm'(h + up(down(h)))). `up` starts at zero and norm' as
the target's norm, so an untrained ExitHead is the plain exit. Only its 2·d·r + d weights are
trained (`biglittle align train --draft early-exit:L`) and saved; the target's own weights are
neither changed nor copied, so the target's output stays exactly what it was.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from ...config import EXIT_HEAD_META
from ...errors import BigLittleError
from ...files import read_json, write_text_atomically

WEIGHTS = "exit_head.pt"
META = EXIT_HEAD_META  # written last: its presence means the directory holds a finished exit head


class ExitHead(nn.Module):
    def __init__(self, norm: nn.Module, hidden_size: int, rank: int):
        super().__init__()
        self.norm = copy.deepcopy(norm)  # a copy of d weights: training it leaves the target's norm alone
        self.down = nn.Linear(hidden_size, rank, bias=False)
        self.up = nn.Linear(rank, hidden_size, bias=False)
        nn.init.zeros_(self.up.weight)  # starts as the plain exit

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(hidden + self.up(self.down(hidden)))


def final_norm_name(base: nn.Module) -> str:
    """The attribute of a base model holding the norm before the output layer (Llama / Qwen2, GPT-2, OPT)."""
    for name in ("norm", "ln_f", "final_layer_norm"):
        if isinstance(getattr(base, name, None), nn.Module):
            return name
    raise BigLittleError(f"cannot find the final norm of {type(base).__name__} for an exit head")


def final_norm(base: nn.Module) -> nn.Module:
    return getattr(base, final_norm_name(base))


def read_exit_meta(directory) -> dict:
    meta = read_json(Path(directory).expanduser() / META)
    if meta is None:
        raise BigLittleError(f"{directory} holds no trained exit ({META} missing)")
    return meta


def save_exit_head(head: ExitHead, directory, meta: dict) -> None:
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), directory / WEIGHTS)
    write_text_atomically(directory / META, json.dumps(meta, indent=2) + "\n")


def load_exit_head(directory, norm: nn.Module, hidden_size: int) -> tuple[int, ExitHead]:
    """(L, the trained head) from a directory written by save_exit_head; the head is built around `norm`."""
    meta = read_exit_meta(directory)
    head = ExitHead(norm, hidden_size, meta["rank"])
    try:
        head.load_state_dict(torch.load(Path(directory).expanduser() / WEIGHTS, weights_only=True))
    except (OSError, RuntimeError) as error:
        reason = str(error).splitlines()[0]
        raise BigLittleError(f"{directory} does not hold an exit head for this target: {reason}") from error
    head.requires_grad_(False)
    weight = next(norm.parameters())
    return meta["layers"], head.to(device=weight.device, dtype=weight.dtype)
