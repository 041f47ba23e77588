"""The text a unigram or bigram draft is estimated from (--draft-text), counted once and kept under the cache.

A task's train split gives the texts the target is asked to write there: its references, each followed
by the target's end token (so the model learns where answers end). A text file gives its lines. The
counts (decoding/trivial_drafts.py) are kept under `<cache>/drafts/`, one file per tokenizer and text,
like the cost profiles; smoothing is applied when they are used, so changing k needs no recount.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

from tqdm.auto import tqdm

from .config import TASKS
from .decoding.trivial_drafts import NgramTable
from .errors import BigLittleError
from .files import cache_dir, os_error

FORMAT = "ngram-v1"
BATCH = 512


def ngram_table(
    tokenizer,
    vocab_size: int,
    end_token: int | None,
    source: str,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
) -> NgramTable:
    """The counts of `source` (a task name or a text file) in `tokenizer`'s tokens: from the cache, else counted."""
    texts, ends = source_texts(source, cache)
    identity = [FORMAT, tokenizer_fingerprint(tokenizer), str(vocab_size), str(end_token if ends else None)]
    identity.append(hashlib.sha256("\n".join(texts).encode()).hexdigest())
    path = cache_dir(cache) / "drafts" / f"{hashlib.sha256('|'.join(identity).encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            return NgramTable.load(path)
        except (OSError, RuntimeError, EOFError, ValueError, TypeError, KeyError, pickle.UnpicklingError):
            pass  # damaged (the file is written atomically, so by something else): count again
    bar = tqdm(total=len(texts), desc=f"counting tokens of {source}", unit="text", disable=not progress or None)
    with bar:
        table = NgramTable.count(_tokenized(tokenizer, texts, end_token if ends else None, bar), vocab_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.save(path)
    except OSError as exc:
        raise os_error(exc, path.parent) from exc
    return table


def source_texts(source: str, cache: str | os.PathLike | None = None) -> tuple[list[str], bool]:
    """(texts, whether each ends a text): a task's train references, or the non-empty lines of a text file."""
    if source in TASKS:
        from .data import load_task

        return [example.reference for example in load_task(source, "train", cache=cache)], True
    path = Path(source).expanduser()
    if not path.is_file():
        raise BigLittleError(f"--draft-text {source!r} is neither a task ({', '.join(TASKS)}) nor a text file")
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BigLittleError(f"cannot read --draft-text {source} ({exc})") from exc
    if not lines:
        raise BigLittleError(f"--draft-text {source} holds no text")
    return lines, False


def tokenizer_fingerprint(tokenizer) -> str:
    """What the counts depend on in a tokenizer: its class and its token -> id map."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps([type(tokenizer).__name__, vocab], ensure_ascii=False).encode()).hexdigest()


def _tokenized(tokenizer, texts: list[str], end_token: int | None, bar):
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        for ids in tokenizer(batch, add_special_tokens=False).input_ids:
            yield ids + ([end_token] if end_token is not None else [])
        bar.update(len(batch))
