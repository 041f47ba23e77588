"""Which tokens a restricted draft vocabulary keeps: the most frequent in a broad corpus of code and text.

The K lowest ids of a byte-level BPE vocabulary follow merge order, i.e. the frequency of tokens in the tokenizer's
own training corpus, which is not the text a coder pair writes (a 32k set of the standard library's most frequent
tokens covers 93.8% of the big model's choices on third-party code). So the ranking counts tokens in what this
machine has at hand and the tasks read: Python's standard library (code, comments and docstrings), and the task
data's training splits (English and German prose) when fetched. It is built once per tokenizer (a minute or two)
and kept under the cache; `coverage` measures a ranking's top K on held-out text.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

from ..files import CACHE_REMEDY, cache_dir, check_writable, read_json, write_text_atomically

CODE_BYTES = 24_000_000  # of the standard library's source, sampled evenly over its files
TEXT_EXAMPLES = 20_000  # per task, from its training split
VERSION = 1


def stdlib_sources(limit_bytes: int = CODE_BYTES) -> list[Path]:
    """Python files of the standard library (not site-packages), every n-th one so that `limit_bytes` spans it all."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    total = sum(p.stat().st_size for p in files)
    step = max(1, round(total / limit_bytes))
    return files[::step]


def task_texts(cache=None, limit: int = TEXT_EXAMPLES) -> Iterator[str]:
    """The training splits' texts of the tasks whose data is fetched (nothing when none is)."""
    from ..data import load_task
    from ..errors import BigLittleError

    for task in ("translation", "summarization"):
        try:
            examples = load_task(task, "train", limit=limit, cache=cache)
        except BigLittleError:
            continue
        for example in examples:
            yield example.source
            yield example.reference


def count_tokens(tokenizer, texts: Iterable[str], progress: bool = False) -> Counter:
    counts: Counter = Counter()
    for text in tqdm(texts, desc="counting tokens", unit="text", disable=not progress, leave=False):
        counts.update(tokenizer(text, add_special_tokens=False).input_ids)
    return counts


def ranking_from_counts(counts: Counter) -> list[int]:
    """Token ids by count, most frequent first; ties (and tokens never seen) by id, i.e. by merge order."""
    return sorted(counts, key=lambda token: (-counts[token], token))


def tokenizer_key(tokenizer) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.sha256(vocab.encode()).hexdigest()[:16]


def corpus_ranking(tokenizer, cache=None, progress: bool = True) -> list[int]:
    """The ranking of `tokenizer`'s tokens by frequency in the corpus above, built on first use and kept."""
    path = cache_dir(cache) / "vocab-ranking" / f"v{VERSION}-{tokenizer_key(tokenizer)}.json"
    stored = read_json(path, "delete it to build it again")
    if stored is not None:
        return stored["ranking"]
    check_writable(path.parent, CACHE_REMEDY)  # before the counting, not after it
    code = (p.read_text(encoding="utf-8", errors="replace") for p in stdlib_sources())
    counts = count_tokens(tokenizer, code, progress) + count_tokens(tokenizer, task_texts(cache), progress)
    ranking = ranking_from_counts(counts)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps({"ranking": ranking, "tokens_counted": sum(counts.values())}))
    return ranking


def coverage(ranking: list[int], k: int, token_ids: Iterable[int], always: Iterable[int] = ()) -> float:
    """The share of `token_ids` among the ranking's first k tokens (plus `always`: special tokens)."""
    kept = set(ranking[:k]) | set(always)
    tokens = list(token_ids)
    return sum(token in kept for token in tokens) / len(tokens) if tokens else 1.0
