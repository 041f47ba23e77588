"""Calibration data on disk: DIR/meta.json (how it was made) and DIR/calib.jsonl (one example a line).

Each line: id, prompt (text), prompt_ids, output (text), output_ids (the target's tokens, EOS
included when it stopped), and with top-K logits also top_ids / top_logprobs [position][K]: the
target's K most likely tokens and their log-probabilities at each output position.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import BigLittleError
from ..files import read_json, read_jsonl, write_text_atomically

META = "meta.json"
LINES = "calib.jsonl"


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the token -> id map: calibration ids only make sense with the same tokenizer."""
    items = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def read_meta(directory: Path) -> dict | None:
    return read_json(Path(directory) / META)


def write_meta(directory: Path, meta: dict) -> None:
    write_text_atomically(Path(directory) / META, json.dumps(meta, indent=2) + "\n")


def load_lines(directory: Path) -> list[dict]:
    """The complete lines of calib.jsonl; a last line cut off by a crash is dropped from the file."""
    return read_jsonl(Path(directory) / LINES, required=("id",), remedy="move it away and rerun")


def read_calibration(directory) -> tuple[dict, list[dict]]:
    """(meta, records) of a calibration directory, or a one-line error saying what is wrong."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise BigLittleError(f"calibration data not found: {directory} (make it with `biglittle align calib`)")
    meta = read_meta(directory)
    if meta is None:
        raise BigLittleError(
            f"{directory} holds no calibration data ({META} missing; make it with `biglittle align calib`)"
        )
    records = [r for r in load_lines(directory) if r.get("output_ids")]
    if not records:
        raise BigLittleError(f"{directory / LINES} holds no examples; run `biglittle align calib` (again)")
    return meta, records
