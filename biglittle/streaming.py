"""Streaming a generation: each round's final tokens as text, with where each token came from.

The decoding loop reports every round through `on_commit`; `ChunkMaker` turns those reports into `StreamChunk`s
(text decoded incrementally, so a multi-byte character split across tokens never comes out broken), and
`stream_generation` runs a generation in a thread and yields its chunks as they come: `ModelPair.stream`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .decoding.detokenize import IncrementalDetokenizer
from .decoding.loop import Commit

if TYPE_CHECKING:
    from .api import GenerationResult


class GenerationCancelled(Exception):
    """Raised from an `on_commit` callback to end a generation after the current round (its reader went away)."""


@dataclass(frozen=True)
class StreamChunk:
    """What one round made final, as text; the last chunk of a stream also carries the whole result."""

    text: str  # new text ('' while the end of it could still change: an unfinished character, a stop string)
    token_ids: list[int]  # the round's new tokens
    sources: list[str]  # where each came from: "draft" (accepted), "target" or "unverified" (BiLD's little alone)
    token_texts: list[str]  # the text each token released; they join to `text`
    discarded: list[int]  # drafted tokens the big model turned down this round (rejected, or rolled back by BiLD)
    discarded_text: str  # their text
    rolled_back: bool  # BiLD: the big model replaced a little token this round
    total: int  # new tokens so far
    result: GenerationResult | None = None  # the last chunk only: the text, token ids and statistics

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "tokens": [
                {"id": token, "text": text, "source": source}
                for token, text, source in zip(self.token_ids, self.token_texts, self.sources)
            ],
            "discarded": self.discarded,
            "discarded_text": self.discarded_text,
            "rolled_back": self.rolled_back,
            "total": self.total,
        }


class ChunkMaker:
    """Commits -> StreamChunks for one generation (it keeps that generation's text so far)."""

    def __init__(self, decode: Callable[[list[int]], str], stops: tuple[str, ...] = (), include_stop: bool = True):
        self.decode = decode
        self.detokenizer = IncrementalDetokenizer(decode, stops, include_stop)

    def chunk(self, commit: Commit) -> StreamChunk:
        # Token by token, so that each token's text can be shown with its source.
        texts = [self.detokenizer.add([token]) for token in commit.tokens]
        return StreamChunk(
            "".join(texts),
            list(commit.tokens),
            list(commit.sources),
            texts,
            list(commit.discarded),
            self.decode(commit.discarded) if commit.discarded else "",
            commit.rolled_back,
            commit.total,
        )

    def last(self, result: GenerationResult) -> StreamChunk:
        return StreamChunk(self.detokenizer.finish(), [], [], [], [], "", False, len(result.token_ids), result)

    @property
    def stopped(self) -> bool:
        """Whether a stop string ended the text."""
        return self.detokenizer.stopped


_END = object()


def stream_generation(
    run: Callable[[Callable[[Commit], None]], GenerationResult], chunks: ChunkMaker
) -> Iterator[StreamChunk]:
    """Run `run(on_commit)` in a thread and yield its chunks as each round commits them, the result last.

    Leaving the iteration early (break, close, an exception) stops the generation after its current round; an error
    in the generation is raised here.
    """
    events: queue.Queue = queue.Queue()
    cancelled = threading.Event()

    def on_commit(commit: Commit) -> None:
        if cancelled.is_set():
            raise GenerationCancelled
        events.put(chunks.chunk(commit))

    def work() -> None:
        try:
            events.put(chunks.last(run(on_commit)))
        except GenerationCancelled:
            pass
        except BaseException as error:  # handed to the reader, who raises it
            events.put(error)
        events.put(_END)

    thread = threading.Thread(target=work, name="biglittle-stream", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not _END:
            if isinstance(event, BaseException):
                raise event
            yield event
    finally:
        cancelled.set()
        thread.join()
